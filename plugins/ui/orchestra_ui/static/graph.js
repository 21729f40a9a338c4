/* The dependency graph of the run page: columns by wave, a node per task of an open wave, a
 * summary per collapsed wave, edges from a dependency to its task; zoom, pan, and culling of
 * a very big open graph to what is in sight. */
import { ATTENTION_ORDER, COLLAPSE_ABOVE, STATE_GLYPH, STEP_STATES } from './constants.js';
import { button, el, svgEl } from './dom.js';
import { clamp, fmt } from './format.js';
import {
  NODE_H, NODE_W, ROW_H, SUMMARY_LINE, TOP, columnX, layOut, orderColumns,
} from './graph_layout.js';
import { Viewport } from './graph_viewport.js';
import { markRendered } from './page.js';
import { link } from './routes.js';

/** Above this many tasks in open waves, only the nodes in and near the view are drawn. */
const CULL_ABOVE = 1500;
/** At most this many nodes drawn at once when culling (the nearest to the view's centre). */
const CULL_MAX = 2000;

export class Graph {
  constructor(view) {
    this.view = view;
    this.collapsed = new Set();
    this.nodes = new Map();
    this.summaries = new Map();
    this.toggles = new Map();
    this.edgesOf = new Map();
    this.dirtyWaves = new Set();
    this.size = { width: 0, height: 0 };
  }

  build() {
    this.svg = svgEl('svg', {
      id: 'graph', class: 'graph', role: 'group',
      'aria-label': 'Dependency graph: columns are waves, arrows go from a dependency to its task',
      height: 300,
    });
    this.edgeLayer = svgEl('g', { class: 'edges' });
    this.labelLayer = svgEl('g', { class: 'wave-labels' });
    this.nodeLayer = svgEl('g', { class: 'nodes' });
    this.svg.append(this.labelLayer, this.edgeLayer, this.nodeLayer);
    this.wavesBar = el('div', { id: 'waves', class: 'waves', role: 'group', 'aria-label': 'Waves' });
    this.viewport = new Viewport(this.svg, () => this.scheduleCull());
    this.bindHover();
    const legend = el('div', { class: 'legend', 'aria-hidden': 'true' }, STEP_STATES.map((state) =>
      el('span', null, el('span', { class: 'swatch', 'data-state': state }), state)));
    return el('section', { class: 'panel', 'aria-labelledby': 'graph-title' },
      el('div', { class: 'panel-head' },
        el('h2', { id: 'graph-title', text: 'Dependency graph' }),
        el('div', { class: 'toolbar' },
          button('zoom-in', '+', () => this.viewport.zoomBy(1.25), { title: 'Zoom in', 'aria-label': 'Zoom in' }),
          button('zoom-out', '−', () => this.viewport.zoomBy(0.8), { title: 'Zoom out', 'aria-label': 'Zoom out' }),
          button('zoom-fit', 'Fit', () => { this.viewport.fit(this.size); this.viewport.apply(); }, { title: 'Fit the graph in view' }),
          button('expand-all', 'Expand all', () => this.setAll(false)),
          button('collapse-all', 'Collapse all', () => this.setAll(true)))),
      this.wavesBar,
      el('div', { class: 'graph-box' }, this.svg),
      legend);
  }

  /** First layout: above 500 tasks only the waves with failed or running tasks are open. */
  initialize() {
    this.order();
    if (this.view.tasks.length > COLLAPSE_ABOVE) {
      this.view.waves.forEach((wave, index) => {
        const counts = this.view.waveCounts[index] || {};
        const busy = Object.keys(ATTENTION_ORDER).some((state) => counts[state] > 0);
        if (!busy) this.collapsed.add(index);
      });
    }
    this.buildToggles();
    this.relayout(false);
    this.frame();
  }

  /** Size the drawing to its content and choose a legible view of it: the whole graph
   * when it fits at 55 % or more, else its width at no less than 55 %, showing the first
   * failed or running task when there is one. */
  frame() {
    const width = this.svg.clientWidth || 1000;
    const whole = Math.min(width / this.size.width, 560 / this.size.height);
    const scale = whole >= 0.55 ? Math.min(whole, 1) : clamp(width / this.size.width, 0.55, 1);
    this.svg.setAttribute('height', String(Math.round(clamp(this.size.height * scale + 4, 160, 600))));
    if (whole >= 0.55) this.viewport.fit(this.size, 1);
    else {
      this.viewport.zoom = { scale, x: Math.min(0, -(width / scale - this.size.width) / 2), y: 0 };
      const focus = this.view.tasks.find((task) => task.state in ATTENTION_ORDER && this.places.has(task.id));
      if (focus) this.reveal(focus.id);
    }
    this.viewport.apply();
    if (this.culled) this.cull(); // now, not at the next frame: the first render is whole
  }

  /** Move the view so that task `id`'s node is in sight (zoom unchanged). */
  reveal(id) {
    const place = this.places.get(id);
    if (!place) return;
    const zoom = this.viewport.zoom;
    const width = (this.svg.clientWidth || 1000) / zoom.scale;
    const height = (this.svg.clientHeight || 300) / zoom.scale;
    const inside = place.x >= zoom.x && place.x + NODE_W <= zoom.x + width &&
      place.y >= zoom.y && place.y + NODE_H <= zoom.y + height;
    if (inside) return;
    zoom.x = Math.max(Math.min(0, zoom.x), place.x + NODE_W / 2 - width / 2);
    zoom.y = Math.max(0, place.y - height / 3);
  }

  /** Order each wave's tasks by where their dependencies sit, so that edges cross less. */
  order() {
    const view = this.view;
    this.columns = orderColumns(view.waves, view.taskById, view.tasks.length > COLLAPSE_ABOVE);
  }

  buildToggles() {
    this.toggles.clear();
    this.wavesBar.replaceChildren(el('span', { class: 'muted small', text: 'Waves' }));
    this.view.waves.forEach((wave, index) => {
      const toggle = el('button', { type: 'button', class: 'wave-toggle', 'data-wave': index },
        el('span', { class: 'n', text: String(index + 1) }),
        el('small', { text: String(wave.length) }));
      toggle.addEventListener('click', () => this.toggle(index));
      this.toggles.set(index, toggle);
      this.wavesBar.appendChild(toggle);
    });
    this.syncToggles();
  }

  syncToggles() {
    for (const [index, toggle] of this.toggles) {
      const counts = this.view.waveCounts[index] || {};
      const open = !this.collapsed.has(index);
      toggle.setAttribute('aria-expanded', String(open));
      const tasks = (this.view.waves[index] || []).length;
      toggle.setAttribute('aria-label',
        `wave ${index + 1}, ${tasks} tasks, ${open ? 'shown' : 'collapsed'}`);
      toggle.dataset.failed = counts.failed > 0 || counts.quarantined > 0 ? 'true' : 'false';
      toggle.dataset.running = counts.running > 0 || counts.retrying > 0 ? 'true' : 'false';
    }
  }

  toggle(index) {
    if (this.collapsed.has(index)) this.collapsed.delete(index);
    else this.collapsed.add(index);
    this.syncToggles();
    this.relayout(false);
    markRendered('run');
  }

  setAll(collapsed) {
    this.collapsed = new Set(collapsed ? this.view.waves.map((wave, index) => index) : []);
    this.syncToggles();
    this.relayout(false);
    this.frame();
    markRendered('run');
  }

  /** Lay the columns out again and rebuild the drawing (`reorder`: the waves changed). */
  relayout(reorder) {
    if (reorder) {
      this.order();
      this.buildToggles();
    }
    const columns = this.columns;
    const { places, boxes, size } = layOut(columns, this.collapsed, this.view.waveCounts);
    this.size = size;
    this.places = places;
    this.boxes = boxes;
    const labels = columns.map((ids, index) => svgEl('text', { class: 'wave-label', x: columnX(index), y: 18 },
      `wave ${index + 1} · ${ids.length}`));

    // a very big open graph draws only what is in sight (see cull), over a band per column
    this.culled = places.size > CULL_ABOVE;
    if (this.culled) {
      columns.forEach((ids, index) => {
        if (this.collapsed.has(index) || ids.length === 0) return;
        labels.push(svgEl('rect', {
          class: 'column', x: columnX(index) - 6, y: TOP - 6, rx: 8,
          width: NODE_W + 12, height: (ids.length - 1) * ROW_H + NODE_H + 12,
        }));
      });
    }
    this.labelLayer.replaceChildren(...labels);
    this.nodes.clear();
    this.summaries.clear();
    const nodes = document.createDocumentFragment();
    if (!this.culled) {
      const template = this.nodeTemplate();
      for (const [id, place] of places) {
        const task = this.view.taskById.get(id);
        if (task) nodes.appendChild(this.makeNode(template, task, place));
      }
    }
    for (const [index, box] of boxes) nodes.appendChild(this.makeSummary(index, box));
    this.nodeLayer.replaceChildren(nodes);
    if (this.culled) this.cull();
    else this.drawEdges();
  }

  /** Draw the nodes in and around the view (and every failed or running one), drop the
   * others: a graph of thousands of open tasks stays light to lay out and to paint. */
  cull() {
    this.cullFrame = null;
    if (!this.culled) return;
    const { x, y, scale } = this.viewport.zoom;
    const width = (this.svg.clientWidth || 1000) / scale;
    const height = (this.svg.clientHeight || 300) / scale;
    const left = x - width / 2;
    const right = x + width * 1.5;
    const top = y - height / 2;
    const bottom = y + height * 1.5;
    const wanted = new Set();
    const near = [];
    for (const [id, place] of this.places) {
      const task = this.view.taskById.get(id);
      if (task && task.state in ATTENTION_ORDER) wanted.add(id);
      else if (place.x + NODE_W >= left && place.x <= right && place.y + NODE_H >= top && place.y <= bottom) {
        near.push([Math.hypot(place.x - (x + width / 2), place.y - (y + height / 2)), id]);
      }
    }
    if (near.length > CULL_MAX) near.sort((a, b) => a[0] - b[0]).length = CULL_MAX;
    for (const [, id] of near) wanted.add(id);
    let changed = false;
    for (const [id, node] of this.nodes) {
      if (!wanted.has(id)) {
        node.remove();
        this.nodes.delete(id);
        changed = true;
      }
    }
    const added = document.createDocumentFragment();
    const template = this.nodeTemplate();
    for (const id of wanted) {
      const task = this.view.taskById.get(id);
      if (task && !this.nodes.has(id)) {
        added.appendChild(this.makeNode(template, task, this.places.get(id)));
        changed = true;
      }
    }
    this.nodeLayer.appendChild(added);
    if (changed || !this.edgeLayer.firstChild) this.drawEdges();
  }

  nodeTemplate() {
    const group = svgEl('g', { class: 'node' });
    const anchor = svgEl('a', {});
    anchor.append(
      svgEl('rect', { width: NODE_W, height: NODE_H, rx: 6 }),
      svgEl('text', { class: 'label', x: 10, y: 19 }),
      svgEl('text', { class: 'glyph', x: NODE_W - 10, y: 19 }),
      svgEl('title'));
    group.appendChild(anchor);
    return group;
  }

  makeNode(template, task, place) {
    const node = template.cloneNode(true);
    node.setAttribute('data-task-id', task.id);
    node.setAttribute('data-state', task.state);
    node.setAttribute('transform', `translate(${place.x},${place.y})`);
    const anchor = node.firstChild;
    anchor.setAttribute('href', link.task(this.view.runId, task.id));
    anchor.childNodes[1].textContent = fmt.short(task.id, 23);
    this.describe(node, task);
    this.nodes.set(task.id, node);
    return node;
  }

  describe(node, task) {
    const anchor = node.firstChild;
    anchor.childNodes[2].textContent = STATE_GLYPH[task.state] || '';
    anchor.childNodes[3].textContent =
      `${task.id}: ${task.state}${task.title ? ' — ' + task.title : ''}${task.reason ? ' (' + task.reason + ')' : ''}`;
  }

  makeSummary(index, box) {
    const counts = this.view.waveCounts[index] || {};
    const total = (this.view.waves[index] || []).length;
    const states = STEP_STATES.filter((state) => counts[state] > 0);
    const group = svgEl('g', {
      class: 'wave-summary', 'data-wave': index, transform: `translate(${box.x},${box.y})`,
      role: 'button', tabindex: 0,
      'aria-label': `wave ${index + 1}, ${total} tasks, collapsed: show its tasks`,
    });
    group.appendChild(svgEl('rect', { class: 'frame', width: NODE_W, height: box.h, rx: 6 }));
    group.appendChild(svgEl('text', { class: 'head', x: 10, y: 18 }, `${total} tasks`));
    group.appendChild(svgEl('text', { class: 'hint', x: NODE_W - 10, y: 18 }, 'show'));
    let x = 10;
    const barWidth = NODE_W - 20;
    for (const state of states) {
      const width = (barWidth * counts[state]) / Math.max(1, total);
      group.appendChild(svgEl('rect', { class: 'seg', 'data-state': state, x, y: 26, width, height: 6 }));
      x += width;
    }
    states.forEach((state, at) => {
      const y = 50 + at * SUMMARY_LINE;
      group.appendChild(svgEl('circle', { class: 'dot', 'data-state': state, cx: 14, cy: y - 4, r: 4 }));
      group.appendChild(svgEl('text', { class: 'count', 'data-state': state, x: 24, y },
        `${counts[state]} ${state}`));
    });
    group.addEventListener('click', () => this.toggle(index));
    group.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        this.toggle(index);
      }
    });
    this.summaries.set(index, group);
    return group;
  }

  drawEdges() {
    const wavesOf = this.view.taskById;
    const out = (id) => {
      const place = this.places.get(id);
      if (place) return { key: id, x: place.x + NODE_W, y: place.y + NODE_H / 2 };
      const task = wavesOf.get(id);
      const box = task ? this.boxes.get(task.wave) : null;
      return box ? { key: 'wave:' + task.wave, x: box.x + NODE_W, y: box.y + 15 } : null;
    };
    const into = (id) => {
      const place = this.places.get(id);
      if (place) return { key: id, x: place.x, y: place.y + NODE_H / 2 };
      const task = wavesOf.get(id);
      const box = task ? this.boxes.get(task.wave) : null;
      return box ? { key: 'wave:' + task.wave, x: box.x, y: box.y + 15 } : null;
    };
    const seen = new Set();
    const paths = document.createDocumentFragment();
    this.edgesOf.clear();
    for (const task of this.view.tasks) {
      if (!Array.isArray(task.depends_on) || task.depends_on.length === 0) continue;
      const end = into(task.id);
      if (!end) continue;
      for (const dep of task.depends_on) {
        const start = out(dep);
        if (!start) continue;
        if (this.culled && !this.nodes.has(start.key) && !this.nodes.has(end.key) &&
          !(start.key.startsWith('wave:') && end.key.startsWith('wave:'))) continue;
        const key = start.key + '\u0000' + end.key;
        if (seen.has(key)) continue;
        seen.add(key);
        const bend = Math.max(24, (end.x - start.x) / 2);
        const path = svgEl('path', {
          class: start.key.startsWith('wave:') || end.key.startsWith('wave:') ? 'edge summary' : 'edge',
          d: `M${start.x},${start.y} C${start.x + bend},${start.y} ${end.x - bend},${end.y} ${end.x},${end.y}`,
        });
        for (const id of [start.key, end.key]) {
          if (!this.edgesOf.has(id)) this.edgesOf.set(id, []);
          this.edgesOf.get(id).push(path);
        }
        paths.appendChild(path);
      }
    }
    this.edgeLayer.replaceChildren(paths);
  }

  /** A task changed state: recolour its node, or redraw its wave's summary soon. */
  setState(task) {
    const node = this.nodes.get(task.id);
    if (node) {
      node.setAttribute('data-state', task.state);
      this.describe(node, task);
    } else if (this.summaries.has(task.wave)) {
      this.dirtyWaves.add(task.wave);
    } else {
      this.scheduleCull();
    }
    const toggle = this.toggles.get(task.wave);
    if (toggle) this.syncToggle = true;
  }

  /** Redraw the summaries whose counts changed since the last call. */
  flushSummaries() {
    if (this.syncToggle) {
      this.syncToggle = false;
      this.syncToggles();
    }
    if (this.dirtyWaves.size === 0) return;
    let grew = false;
    for (const index of this.dirtyWaves) {
      const old = this.summaries.get(index);
      const box = this.boxes.get(index);
      if (!old || !box) continue;
      const counts = this.view.waveCounts[index] || {};
      const states = STEP_STATES.filter((state) => counts[state] > 0);
      if (states.join() !== box.states) {
        grew = true;
        break;
      }
      old.replaceWith(this.makeSummary(index, box));
    }
    this.dirtyWaves.clear();
    if (grew) this.relayout(false);
  }

  /** The RunView was fetched again: bring every node and summary to its state. */
  sync() {
    for (const [id, node] of this.nodes) {
      const task = this.view.taskById.get(id);
      if (!task) continue;
      if (node.getAttribute('data-state') !== task.state) node.setAttribute('data-state', task.state);
      this.describe(node, task);
    }
    for (const index of this.summaries.keys()) this.dirtyWaves.add(index);
    this.syncToggle = true;
    this.flushSummaries();
  }

  // -- zoom and pan (graph_viewport.js) ------------------------------------------------

  /** Show the chosen window again (the element's size may have changed). */
  applyZoom() {
    this.viewport.apply();
  }

  /** Cull at the next frame, when the drawing is culled and no cull is pending. */
  scheduleCull() {
    if (this.culled && !this.cullFrame) this.cullFrame = requestAnimationFrame(() => this.cull());
  }

  /** Light up a node's edges while the pointer is on it. */
  bindHover() {
    const hot = (event, on) => {
      const node = event.target.closest ? event.target.closest('g.node') : null;
      if (!node) return;
      for (const path of this.edgesOf.get(node.getAttribute('data-task-id')) || []) {
        path.classList.toggle('hot', on);
      }
    };
    this.svg.addEventListener('mouseover', (event) => hot(event, true));
    this.svg.addEventListener('mouseout', (event) => hot(event, false));
  }
}
