/* The page's constants: states and their order, thresholds, periods, and a safe lookup table. */

/** Return `entries` as an object without a prototype (a lookup by a server's string is safe). */
export function dict(entries) {
  return Object.assign(Object.create(null), entries);
}

export const SVG_NS = 'http://www.w3.org/2000/svg';
/** Step states in the order the page counts them (as `orchestra report` does). */
export const STEP_STATES = [
  'succeeded', 'failed', 'quarantined', 'skipped', 'canceled',
  'running', 'retrying', 'ready', 'pending',
];
export const ENDED_STEP_STATES = new Set(['succeeded', 'failed', 'skipped', 'canceled', 'quarantined']);
export const RUN_STATES = ['pending', 'running', 'succeeded', 'failed', 'canceled', 'interrupted'];
export const ENDED_RUN_STATES = new Set(['succeeded', 'failed', 'canceled', 'interrupted']);
/** The states the attention list shows, in its order: failures first, then work under way. */
export const ATTENTION_ORDER = dict({ failed: 0, quarantined: 1, running: 2, retrying: 3 });
export const ATTENTION_MAX = 200;
/** Above this many tasks the graph starts with its quiet waves collapsed. */
export const COLLAPSE_ABOVE = 500;
/** Above this many attempts the timeline is drawn on a canvas, without an element per bar. */
export const CANVAS_ABOVE = 2000;
export const TASK_PAGE = 200;
export const REFETCH_MS = 1000;
export const RUNS_REFRESH_MS = 2000;
export const LOG_POLL_MS = 500;
export const LATENCIES_KEPT = 10000;
/** A small mark per state beside its colour, for those who do not tell colours apart. */
export const STATE_GLYPH = dict({
  succeeded: '✓', failed: '✗', quarantined: '⊘', skipped: '↷', canceled: '–',
  running: '▶', retrying: '↻', ready: '○', pending: '·',
});
