/* Zoom and pan of the graph's SVG: the viewBox is the window onto the drawing. The wheel
 * zooms around the pointer, a drag pans, and a drag that ends on a node is not a click on it. */
import { clamp } from './format.js';

export class Viewport {
  /** Listen to the pointer on `svg`; `onMove` is called each time the window is applied. */
  constructor(svg, onMove) {
    this.svg = svg;
    this.onMove = onMove;
    this.zoom = { x: 0, y: 0, scale: 1 };
    this.drag = null;
    this.justDragged = false;
    this.bindPointer();
  }

  /** Choose the window showing the whole drawing of `size`, at most at `maxScale` (1.5). */
  fit(size, maxScale) {
    const width = this.svg.clientWidth || 1000;
    const height = this.svg.clientHeight || 300;
    const scale = clamp(Math.min(width / size.width, height / size.height), 0.02, maxScale || 1.5);
    this.zoom = {
      scale,
      x: Math.min(0, -(width / scale - size.width) / 2),
      y: Math.min(0, -(height / scale - size.height) / 2),
    };
  }

  /** Show the chosen window (the element's size may have changed since). */
  apply() {
    const width = this.svg.clientWidth || 1000;
    const height = this.svg.clientHeight || 300;
    const { x, y, scale } = this.zoom;
    this.svg.setAttribute('viewBox', `${x.toFixed(1)} ${y.toFixed(1)} ${(width / scale).toFixed(1)} ${(height / scale).toFixed(1)}`);
    this.svg.dataset.scale = scale.toFixed(3);
    this.onMove();
  }

  /** Zoom by `factor` around the point (px, py) of the element (its centre by default). */
  zoomBy(factor, px, py) {
    const width = this.svg.clientWidth || 1000;
    const height = this.svg.clientHeight || 300;
    const cx = px === undefined ? width / 2 : px;
    const cy = py === undefined ? height / 2 : py;
    const { x, y, scale } = this.zoom;
    const next = clamp(scale * factor, 0.02, 4);
    const contentX = x + cx / scale;
    const contentY = y + cy / scale;
    this.zoom = { scale: next, x: contentX - cx / next, y: contentY - cy / next };
    this.apply();
  }

  bindPointer() {
    this.svg.addEventListener('wheel', (event) => {
      event.preventDefault();
      const box = this.svg.getBoundingClientRect();
      const delta = event.deltaMode === 1 ? event.deltaY * 16 : event.deltaY;
      this.zoomBy(Math.exp(-delta * 0.0015), event.clientX - box.left, event.clientY - box.top);
    }, { passive: false });
    this.svg.addEventListener('pointerdown', (event) => {
      if (event.button !== 0) return;
      this.drag = { x: event.clientX, y: event.clientY, zoom: { ...this.zoom }, moved: false, id: event.pointerId };
    });
    this.svg.addEventListener('pointermove', (event) => {
      const drag = this.drag;
      if (!drag || drag.id !== event.pointerId) return;
      const dx = event.clientX - drag.x;
      const dy = event.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < 4) return;
      if (!drag.moved) {
        drag.moved = true;
        this.svg.setPointerCapture(event.pointerId);
        this.svg.classList.add('dragging');
      }
      this.zoom = { scale: drag.zoom.scale, x: drag.zoom.x - dx / drag.zoom.scale, y: drag.zoom.y - dy / drag.zoom.scale };
      this.apply();
    });
    const end = (event) => {
      if (!this.drag || this.drag.id !== event.pointerId) return;
      this.svg.classList.remove('dragging');
      if (this.drag.moved) {
        this.justDragged = true;
        setTimeout(() => { this.justDragged = false; }, 0);
      }
      this.drag = null;
    };
    this.svg.addEventListener('pointerup', end);
    this.svg.addEventListener('pointercancel', end);
    // a drag that ends on a node is not a click on it
    this.svg.addEventListener('click', (event) => {
      if (this.justDragged) {
        event.preventDefault();
        event.stopPropagation();
      }
    }, true);
  }
}
