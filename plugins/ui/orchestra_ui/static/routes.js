/* The page's hash routes, both ways: links to build and addresses to parse.
 *
 * #/ runs, #/runs/<run> a run, #/runs/<run>/tasks/<task> a task. Links are built from
 * encodeURIComponent'ed ids behind a fixed "#/".
 */

/** Hash links of the page's routes. */
export const link = {
  runs: () => '#/',
  run: (runId) => '#/runs/' + encodeURIComponent(runId),
  task: (runId, taskId) => `#/runs/${encodeURIComponent(runId)}/tasks/${encodeURIComponent(taskId)}`,
};

/** Return the route of a location hash: its view's name and ids (or the runs' state filter). */
export function parseRoute(hash) {
  const raw = hash.replace(/^#/, '');
  const question = raw.indexOf('?');
  const path = question >= 0 ? raw.slice(0, question) : raw;
  const query = new URLSearchParams(question >= 0 ? raw.slice(question + 1) : '');
  const parts = path.split('/').filter((part) => part !== '').map((part) => {
    try {
      return decodeURIComponent(part);
    } catch (error) {
      return part;
    }
  });
  if (parts.length === 0) return { name: 'runs', state: query.get('state') || '' };
  if (parts[0] === 'runs' && parts.length === 2) return { name: 'run', runId: parts[1] };
  if (parts[0] === 'runs' && parts.length === 4 && parts[2] === 'tasks') {
    return { name: 'task', runId: parts[1], taskId: parts[3] };
  }
  return { name: 'missing' };
}
