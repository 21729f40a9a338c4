/* Where the parts of the dependency graph go: a column per wave, its tasks ordered so that
 * edges cross less, a place per node of an open wave and a box per collapsed wave's summary.
 * Geometry only: the drawing is graph.js's. */
import { ATTENTION_ORDER, STEP_STATES } from './constants.js';

export const NODE_W = 180;
export const NODE_H = 30;
export const ROW_H = 40;
const COL_W = 240;
export const TOP = 34;
const PAD = 16;
export const SUMMARY_LINE = 17;

/** Return the x of wave `index`'s column. */
export function columnX(index) {
  return PAD + index * COL_W;
}

/** Return each wave's task ids, ordered by where their dependencies sit so that edges cross
 * less (`urgentFirst`: a big run's failed and running tasks go on top of their wave). */
export function orderColumns(waves, taskById, urgentFirst) {
  const position = new Map();
  return waves.map((wave, index) => {
    let ids = wave.slice();
    if (index > 0) {
      const key = new Map();
      ids.forEach((id, at) => {
        const task = taskById.get(id);
        const deps = task && Array.isArray(task.depends_on) ? task.depends_on : [];
        let sum = 0;
        let n = 0;
        for (const dep of deps) {
          if (position.has(dep)) {
            sum += position.get(dep);
            n += 1;
          }
        }
        key.set(id, n ? sum / n : at / Math.max(1, ids.length));
      });
      ids.sort((a, b) => key.get(a) - key.get(b));
    }
    if (urgentFirst) {
      // in a big run, a wave is open for its failed and running tasks: show them on top
      const urgent = (id) => {
        const task = taskById.get(id);
        return task && task.state in ATTENTION_ORDER ? 0 : 1;
      };
      ids = ids.map((id, at) => [urgent(id), at, id]).sort((a, b) => a[0] - b[0] || a[1] - b[1])
        .map((entry) => entry[2]);
    }
    ids.forEach((id, at) => position.set(id, at / Math.max(1, ids.length)));
    return ids;
  });
}

/** Return the layout of `columns` with the waves in `collapsed` shut: `places` (task id →
 * its node's corner), `boxes` (wave → its summary's box, with the states it lists) and the
 * drawing's `size`. */
export function layOut(columns, collapsed, waveCounts) {
  const places = new Map();
  const boxes = new Map();
  let height = TOP + NODE_H;
  columns.forEach((ids, index) => {
    const x = columnX(index);
    if (collapsed.has(index)) {
      const counts = waveCounts[index] || {};
      const states = STEP_STATES.filter((state) => counts[state] > 0);
      const box = { x, y: TOP, h: 44 + states.length * SUMMARY_LINE, states: states.join() };
      boxes.set(index, box);
      height = Math.max(height, box.y + box.h);
    } else {
      ids.forEach((id, at) => places.set(id, { x, y: TOP + at * ROW_H }));
      height = Math.max(height, TOP + (ids.length - 1) * ROW_H + NODE_H);
    }
  });
  const size = { width: PAD * 2 + Math.max(1, columns.length - 1) * COL_W + NODE_W, height: height + PAD };
  return { places, boxes, size };
}
