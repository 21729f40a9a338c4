/* The review of an attempt's change on the task page: a second tool's verdict, its
 * comments (always as text), what it took and cost, and what the reviewer changed, which
 * is discarded and never merged. */
import { renderDiff } from './diff.js';
import { el } from './dom.js';
import { fmt } from './format.js';

const VERDICTS = {
  approved: 'approved',
  rejected: 'requested changes',
  failed: 'failed (no verdict)',
  canceled: 'canceled',
  running: 'reviewing',
  interrupted: 'interrupted',
};

/** Return a review's verdict in words, as `orchestra show` says it. */
export function verdictText(review) {
  let words = VERDICTS[review.state] || String(review.state || 'unknown');
  if (review.landed && review.verdict === 'request_changes') words += ', landed despite the rejection';
  return words;
}

/** Return the block of one review: who, the verdict, its comments and its discarded edits. */
export function renderReview(review) {
  const fact = (label, className, value) => el('div', { class: 'fact' },
    el('dt', { text: label }), el('dd', { class: className }, value));
  const running = review.state === 'running';
  const seconds = review.seconds ?? (running && review.started_at ? Date.now() / 1000 - review.started_at : null);
  const usage = [];
  if (review.input_tokens !== null && review.input_tokens !== undefined) usage.push(`${fmt.int(review.input_tokens)} in`);
  if (review.output_tokens !== null && review.output_tokens !== undefined) usage.push(`${fmt.int(review.output_tokens)} out`);
  if (review.cost_usd !== null && review.cost_usd !== undefined) usage.push(fmt.cost(review.cost_usd));
  const error = [review.error_class, review.message].filter(Boolean).join(': ');
  const edits = Array.isArray(review.edits_discarded) ? review.edits_discarded : [];
  const toolText = review.tool_version ? `${review.tool} ${review.tool_version}` : review.tool;
  const comments = review.comments || (running ? 'The reviewer is reading the change.' : 'No comments.');
  return el('div', { class: 'block review', 'data-review-state': review.state || 'unknown', 'data-round': review.round },
    el('div', { class: 'review-head' },
      el('h4', { text: `Review by ${review.tool} (round ${review.round})` }),
      el('span', { class: 'badge', 'data-review-state': review.state || 'unknown', text: verdictText(review) })),
    el('dl', { class: 'facts attempt-facts review-facts' },
      fact('Reviewer', 'reviewer', toolText),
      fact('Duration', 'duration', fmt.duration(seconds)),
      fact('Usage', 'usage', usage.length ? usage.join(' · ') : '—'),
      fact('Routing', 'route', review.route_reason || '—'),
      error ? fact('Error', 'error', error) : null,
      fact('Edits discarded', 'edits-discarded', edits.length
        ? el('ul', { class: 'plain' }, edits.map((path) => el('li', null, el('code', { text: path }))))
        : 'none')),
    el('pre', { class: 'review-comments', 'data-empty': review.comments ? 'false' : 'true', text: comments }),
    review.edits
      ? el('details', { class: 'diff-block' },
        el('summary', { text: 'What the reviewer changed (discarded, not merged)' }), renderDiff(review.edits))
      : null);
}
