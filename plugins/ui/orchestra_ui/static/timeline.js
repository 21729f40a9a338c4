/* The timeline of the run page: a row per worker lane, a bar per attempt (a canvas above
 * 2,000 attempts), growing with the clock while attempts run. */
import { CANVAS_ABOVE, ENDED_RUN_STATES } from './constants.js';
import { el, setText, svgEl } from './dom.js';
import { fmt } from './format.js';
import { link } from './routes.js';

const LANE_LABEL = 84;
const AXIS_H = 24;

/** Tick spacing in seconds giving about `count` ticks over `span` seconds. */
function tickStep(span, count) {
  const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
  return steps.find((step) => span / step <= count) || 86400 * Math.ceil(span / (86400 * count));
}

function tickLabel(seconds) {
  if (seconds === 0) return '0';
  if (seconds < 1) return `${seconds.toFixed(1)}s`;
  if (seconds < 60) return `${Math.round(seconds * 10) / 10}s`;
  if (seconds < 3600) return seconds % 60 ? `${Math.floor(seconds / 60)}m${seconds % 60}s` : `${seconds / 60}m`;
  const minutes = Math.round(seconds / 60);
  return minutes % 60 ? `${Math.floor(minutes / 60)}h${minutes % 60}m` : `${minutes / 60}h`;
}

export class Timeline {
  constructor(view) {
    this.view = view;
    this.box = null;
    this.tip = null;
  }

  build() {
    this.box = el('div', { class: 'timeline-box' });
    this.tip = el('div', { class: 'tip', role: 'tooltip', hidden: true });
    this.box.addEventListener('click', (event) => {
      const bar = event.target.closest ? event.target.closest('rect.bar[data-task-id]') : null;
      if (bar) location.hash = link.task(this.view.runId, bar.getAttribute('data-task-id'));
    });
    return this.box;
  }

  stop() {}

  /** While attempts run, their bars grow with the clock. */
  tick() {
    const bars = this.view.data.attempts || [];
    this.ticks = (this.ticks || 0) + 1;
    if (this.ticks % 2 === 0 && bars.some((bar) => bar.ended_at === null || bar.ended_at === undefined)) {
      this.render();
    }
  }

  geometry(bars) {
    const now = Date.now() / 1000;
    const run = this.view.data.run;
    let start = Infinity;
    let end = -Infinity;
    for (const bar of bars) {
      start = Math.min(start, bar.started_at);
      end = Math.max(end, bar.ended_at ?? (ENDED_RUN_STATES.has(run.state) ? run.ended_at ?? bar.started_at : now));
    }
    if (!Number.isFinite(start)) {
      start = run.started_at ?? run.created_at ?? now;
      end = now;
    }
    if (run.ended_at) end = Math.max(end, Math.min(run.ended_at, end + 1));
    let lanes = Math.max(1, this.view.data.lanes || 0);
    for (const bar of bars) lanes = Math.max(lanes, (bar.lane ?? 0) + 1);
    const width = Math.max(480, this.box.clientWidth || 1000);
    const row = lanes > 30 ? 12 : 22;
    const span = Math.max(end - start, 0.5);
    const scale = (width - LANE_LABEL - 12) / span;
    return { now, start, end, span, lanes, width, row, height: AXIS_H + lanes * row + 4, scale,
      x: (at) => LANE_LABEL + (at - start) * scale };
  }

  render() {
    if (!this.box) return;
    const bars = Array.isArray(this.view.data.attempts) ? this.view.data.attempts : [];
    const g = this.geometry(bars);
    if (bars.length > CANVAS_ABOVE) this.renderCanvas(bars, g);
    else this.renderSvg(bars, g);
  }

  renderSvg(bars, g) {
    const drawing = svgEl('svg', {
      id: 'timeline', class: 'timeline', width: g.width, height: g.height,
      viewBox: `0 0 ${g.width} ${g.height}`, role: 'group',
      'aria-label': `Timeline: ${bars.length} attempts on ${g.lanes} workers`,
    });
    for (let lane = 0; lane < g.lanes; lane += 1) {
      const y = AXIS_H + lane * g.row;
      if (lane % 2 === 1) drawing.appendChild(svgEl('rect', { class: 'stripe', x: 0, y, width: g.width, height: g.row }));
      if (g.row >= 16 || lane % 5 === 0) {
        drawing.appendChild(svgEl('text', { class: 'lane-label', x: LANE_LABEL - 8, y: y + g.row / 2 + 4 },
          `worker ${lane + 1}`));
      }
    }
    const step = tickStep(g.span, Math.max(2, Math.floor((g.width - LANE_LABEL) / 90)));
    for (let index = 0; index * step <= g.span; index += 1) {
      const t = index * step;
      const x = g.x(g.start + t);
      drawing.appendChild(svgEl('line', { class: 'tick', x1: x, y1: AXIS_H - 6, x2: x, y2: g.height }));
      if (x + 34 < g.width) {
        drawing.appendChild(svgEl('text', { class: 'tick-label', x: x + 3, y: AXIS_H - 10 }, tickLabel(t)));
      }
    }
    if (bars.length === 0) {
      drawing.appendChild(svgEl('text', { class: 'empty', x: LANE_LABEL + 8, y: AXIS_H + 15 }, 'No attempt yet.'));
    }
    for (const bar of bars) {
      const { ended, outcome } = this.ending(bar, g);
      const x = g.x(bar.started_at);
      const rect = svgEl('rect', {
        class: 'bar', 'data-task-id': bar.task, 'data-attempt': bar.number, 'data-outcome': outcome,
        'data-review': bar.review || null,
        x: x.toFixed(1), y: AXIS_H + (bar.lane ?? 0) * g.row + 3,
        width: Math.max(2, g.x(ended) - x).toFixed(1), height: g.row - 6, rx: 2,
      });
      rect.appendChild(svgEl('title', null, this.describe(bar, outcome, ended)));
      drawing.appendChild(rect);
    }
    this.box.replaceChildren(drawing);
  }

  /** When a bar ends and how: still running, or open in a run that ended (then unknown). */
  ending(bar, g) {
    if (bar.ended_at !== null && bar.ended_at !== undefined) {
      return { ended: bar.ended_at, outcome: bar.outcome || 'unknown' };
    }
    const run = this.view.data.run;
    if (ENDED_RUN_STATES.has(run.state)) return { ended: run.ended_at ?? g.end, outcome: 'unknown' };
    return { ended: g.now, outcome: 'running' };
  }

  describe(bar, outcome, ended) {
    const error = bar.error_class ? ` (${bar.error_class})` : '';
    const review = bar.review ? ` · review ${bar.review}` : '';
    return `${bar.task} · attempt ${bar.number} · ${bar.tool} · ${outcome}${error}${review} · ${fmt.duration(ended - bar.started_at)}`;
  }

  renderCanvas(bars, g) {
    const ratio = window.devicePixelRatio || 1;
    const canvas = el('canvas', {
      id: 'timeline', class: 'timeline', role: 'img', width: Math.round(g.width * ratio),
      height: Math.round(g.height * ratio),
      'aria-label': `Timeline: ${bars.length} attempts on ${g.lanes} workers`,
    });
    canvas.style.width = `${g.width}px`;
    canvas.style.height = `${g.height}px`;
    const context = canvas.getContext('2d');
    const styles = getComputedStyle(document.documentElement);
    const colour = (name, fallback) => (styles.getPropertyValue(name) || '').trim() || fallback;
    context.scale(ratio, ratio);
    context.font = '12px system-ui, sans-serif';
    context.fillStyle = colour('--soft', '#f6f8fa');
    for (let lane = 1; lane < g.lanes; lane += 2) context.fillRect(0, AXIS_H + lane * g.row, g.width, g.row);
    context.fillStyle = colour('--muted', '#59636e');
    context.textAlign = 'right';
    for (let lane = 0; lane < g.lanes; lane += 1) {
      if (g.row >= 16 || lane % 5 === 0) context.fillText(`worker ${lane + 1}`, LANE_LABEL - 8, AXIS_H + lane * g.row + g.row / 2 + 4);
    }
    context.textAlign = 'left';
    context.strokeStyle = colour('--line', '#d1d9e0');
    const step = tickStep(g.span, Math.max(2, Math.floor((g.width - LANE_LABEL) / 90)));
    for (let index = 0; index * step <= g.span; index += 1) {
      const t = index * step;
      const x = Math.round(g.x(g.start + t)) + 0.5;
      context.beginPath();
      context.moveTo(x, AXIS_H - 6);
      context.lineTo(x, g.height);
      context.stroke();
      if (x + 34 < g.width) context.fillText(tickLabel(t), x + 3, AXIS_H - 10);
    }
    const fills = {
      succeeded: colour('--succeeded', '#2e9e5b'), failed: colour('--failed', '#d64545'),
      running: colour('--running', '#3b82f6'), timed_out: colour('--retrying', '#d98a00'),
      canceled: colour('--canceled', '#c4c9d0'), interrupted: colour('--quarantined', '#8e6cc9'),
    };
    const byLane = [];
    for (const bar of bars) {
      const { ended, outcome } = this.ending(bar, g);
      const x = g.x(bar.started_at);
      const width = Math.max(1, g.x(ended) - x);
      context.fillStyle = fills[outcome] || colour('--pending', '#8a8f98');
      context.fillRect(x, AXIS_H + (bar.lane ?? 0) * g.row + 2, width, g.row - 4);
      const lane = bar.lane ?? 0;
      (byLane[lane] = byLane[lane] || []).push({ x, width, bar, outcome, ended });
    }
    const find = (event) => {
      const box = canvas.getBoundingClientRect();
      const px = event.clientX - box.left;
      const lane = Math.floor((event.clientY - box.top - AXIS_H) / g.row);
      const list = byLane[lane] || [];
      for (let i = list.length - 1; i >= 0; i -= 1) {
        if (px >= list[i].x - 1 && px <= list[i].x + list[i].width + 1) return { hit: list[i], px, py: event.clientY - box.top };
      }
      return null;
    };
    canvas.addEventListener('mousemove', (event) => {
      const found = find(event);
      this.tip.hidden = !found;
      canvas.classList.toggle('pointing', !!found);
      if (!found) return;
      setText(this.tip, this.describe(found.hit.bar, found.hit.outcome, found.hit.ended));
      this.tip.style.left = `${Math.min(found.px + 12, g.width - 260)}px`;
      this.tip.style.top = `${found.py + 14}px`;
    });
    canvas.addEventListener('mouseleave', () => { this.tip.hidden = true; });
    canvas.addEventListener('click', (event) => {
      const found = find(event);
      if (found) location.hash = link.task(this.view.runId, found.hit.bar.task);
    });
    this.box.replaceChildren(canvas, this.tip);
  }
}
