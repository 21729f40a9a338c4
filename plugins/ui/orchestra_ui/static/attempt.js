/* One attempt's section on the task page: its facts, routing, usage, what it landed, its
 * review, the feedback it left, its changed files and its diff. */
import { renderDiff } from './diff.js';
import { el } from './dom.js';
import { fmt } from './format.js';
import { renderReview } from './review.js';

/** Return the section of one attempt: its facts, its files and its diff. */
export function renderAttempt(attempt, view) {
  const running = attempt.ended_at === null || attempt.ended_at === undefined;
  const outcome = attempt.outcome || (running ? 'running' : 'unknown');
  const fact = (label, className, value) => el('div', { class: 'fact' },
    el('dt', { text: label }), el('dd', { class: className }, value));
  const dash = (value) => (value === null || value === undefined || value === '' ? '—' : String(value));

  const seconds = attempt.seconds ?? (running ? Date.now() / 1000 - attempt.started_at : null);
  const timing = [fmt.duration(seconds)];
  if (attempt.waited) timing.push(`after waiting ${fmt.duration(attempt.waited)}`);
  timing.push(`started ${fmt.time(attempt.started_at)}`);

  const usage = [];
  if (attempt.input_tokens !== null && attempt.input_tokens !== undefined) usage.push(`${fmt.int(attempt.input_tokens)} in`);
  if (attempt.output_tokens !== null && attempt.output_tokens !== undefined) usage.push(`${fmt.int(attempt.output_tokens)} out`);
  if (attempt.cost_usd !== null && attempt.cost_usd !== undefined) usage.push(fmt.cost(attempt.cost_usd));

  const passed = Array.isArray(attempt.passed_over) ? attempt.passed_over : [];
  const passedList = passed.length
    ? el('ul', { class: 'plain' }, passed.map((item) => el('li', null,
      el('strong', { text: item.tool }), ` — ${item.kind}: ${item.why}`,
      item.until ? ` (until ${fmt.time(item.until)})` : '')))
    : 'none';

  let landed = 'none';
  if (attempt.landed === 'merged') landed = 'merged';
  else if (attempt.landed === 'refused') landed = `refused: ${attempt.refused_why || 'no reason recorded'}`;
  const landedCell = el('span', { 'data-landed': attempt.landed || 'none', text: landed });

  const toolText = attempt.tool_version ? `${attempt.tool} ${attempt.tool_version}` : attempt.tool;
  const exit = attempt.exit_code === null || attempt.exit_code === undefined ? '' : `(exit ${attempt.exit_code})`;

  const logButton = attempt.has_log
    ? el('button', { type: 'button', class: 'show-log', 'aria-pressed': 'false' }, 'Show log')
    : null;
  if (logButton) {
    logButton.addEventListener('click', () => {
      view.select(attempt.number, true);
      view.log.scrollIntoView({ block: 'nearest' });
    });
  }

  const files = Array.isArray(attempt.files) ? attempt.files : [];
  const reviews = Array.isArray(attempt.reviews) ? attempt.reviews : [];
  const section = el('section', { class: 'attempt', 'data-attempt': attempt.number, 'data-outcome': outcome },
    el('div', { class: 'attempt-head' },
      el('h3', { text: `Attempt ${attempt.number}` }),
      el('span', { class: 'badge', 'data-outcome': outcome, text: outcome }),
      el('span', { class: 'spacer' }), logButton),
    el('dl', { class: 'facts attempt-facts' },
      fact('Tool', 'tool', toolText),
      fact('Outcome', 'outcome', outcome),
      fact('Error class', 'error-class', dash(attempt.error_class)),
      fact('Message', 'message', [attempt.message, exit].filter(Boolean).join(' ') || '—'),
      fact('Duration', 'duration', timing.join(', ')),
      fact('Usage', 'usage', usage.length ? usage.join(' · ') : '—'),
      fact('Routing', 'route', dash(attempt.route_reason)),
      fact('Passed over', 'passed-over', passedList),
      fact('Landed', 'landed', landedCell)),
    reviews.map((review) => renderReview(review)),
    el('div', { class: 'block' }, el('h4', { text: 'Feedback to the next attempt' }),
      el('pre', { class: 'feedback', 'data-empty': attempt.feedback ? 'false' : 'true',
        text: attempt.feedback || 'none' })),
    el('div', { class: 'block' }, el('h4', { text: `Changed files (${files.length})` }),
      el('ul', { class: 'files' }, files.map((file) => el('li', { 'data-status': file.status || '' },
        el('span', { class: 'status', text: file.status || '' }),
        el('code', { class: 'path', text: file.path }),
        el('span', { class: 'add', text: `+${file.added ?? 0}` }),
        el('span', { class: 'del', text: `−${file.removed ?? 0}` }))))),
    attempt.diff
      ? el('details', { class: 'block diff-block', open: true },
        el('summary', { text: 'Diff' }), renderDiff(attempt.diff))
      : el('p', { class: 'muted small', text: 'No diff.' }));
  return section;
}
