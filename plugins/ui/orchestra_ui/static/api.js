/* api: the JSON routes of the contract, with the session token as a header. */

/** The token the server put in the page for its own requests ('' without one). */
const TOKEN = (() => {
  const meta = document.querySelector('meta[name="orchestra-token"]');
  const value = meta ? meta.getAttribute('content') || '' : '';
  return /^[\x21-\x7e]+$/.test(value) && !value.includes('{{') ? value : '';
})();

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function request(method, path) {
  const headers = { Accept: 'application/json' };
  if (TOKEN) headers['X-Orchestra-Token'] = TOKEN;
  let response;
  try {
    response = await fetch(path, { method, headers, credentials: 'same-origin', cache: 'no-store' });
  } catch (error) {
    throw new ApiError(0, 'The server does not answer: is `orchestra ui` still running?');
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (error) {
    body = null;
  }
  if (!response.ok) {
    const message = body && typeof body.error === 'string'
      ? body.error
      : `${response.status} ${response.statusText || 'error'}`;
    throw new ApiError(response.status, message);
  }
  return body;
}

const runPath = (runId) => '/api/runs/' + encodeURIComponent(runId);
const taskPath = (runId, taskId) => `${runPath(runId)}/tasks/${encodeURIComponent(taskId)}`;

export const api = {
  runs: (state) => request('GET', '/api/runs' + (state ? '?state=' + encodeURIComponent(state) : '')),
  run: (runId) => request('GET', runPath(runId)),
  task: (runId, taskId) => request('GET', taskPath(runId, taskId)),
  log: (runId, taskId, number, offset) => request(
    'GET',
    `${taskPath(runId, taskId)}/attempts/${encodeURIComponent(number)}/log?offset=${offset}`,
  ),
  cancel: (runId) => request('POST', runPath(runId) + '/cancel'),
  resume: (runId) => request('POST', runPath(runId) + '/resume'),
  eventsUrl: (runId, after) => `${runPath(runId)}/events?after=${encodeURIComponent(after)}`,
};
