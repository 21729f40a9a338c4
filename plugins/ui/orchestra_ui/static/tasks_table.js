/* The tasks table of the run page: the run's tasks with their routing reason, 200 a page,
 * with a filter box. */
import { TASK_PAGE } from './constants.js';
import { badge, button, el, setText, th } from './dom.js';
import { clamp, fmt } from './format.js';
import { markRendered } from './page.js';
import { link } from './routes.js';
import { debounce } from './throttle.js';

export class TaskTable {
  constructor(view) {
    this.view = view;
    this.page = 0;
    this.query = '';
    this.rows = new Map();
  }

  build() {
    this.filter = el('input', {
      id: 'task-filter', type: 'search', placeholder: 'Filter by id, title, state, tool…',
      'aria-label': 'Filter the tasks', autocomplete: 'off',
    });
    this.filter.addEventListener('input', debounce(() => {
      this.query = this.filter.value.trim().toLowerCase();
      this.page = 0;
      this.render();
      markRendered('run');
    }, 150));
    this.prev = button('tasks-prev', '‹ Previous', () => this.turn(-1));
    this.next = button('tasks-next', 'Next ›', () => this.turn(1));
    this.range = el('span', { id: 'tasks-range', class: 'muted small', 'aria-live': 'polite' });
    this.tbody = el('tbody');
    this.tbody.addEventListener('click', (event) => {
      if (event.target.closest('a')) return;
      const row = event.target.closest('tr[data-task-id]');
      if (row) location.hash = link.task(this.view.runId, row.getAttribute('data-task-id'));
    });
    return el('section', { class: 'panel', 'aria-labelledby': 'tasks-title' },
      el('div', { class: 'panel-head' },
        el('h2', { id: 'tasks-title', text: 'Tasks and their routing' }),
        el('div', { class: 'toolbar' }, this.filter, this.prev, this.range, this.next)),
      el('div', { class: 'table-wrap' },
        el('table', { id: 'tasks', class: 'grid clickable' },
          el('thead', null, el('tr', null,
            th('Task'), th('State'), th('Wave', 'num'), th('Tool'), th('Attempts', 'num'),
            th('Tokens', 'num'), th('Cost', 'num'), th('Routing'), th('Reason'))),
          this.tbody)));
  }

  matching() {
    if (!this.query) return this.view.tasks;
    const query = this.query;
    return this.view.tasks.filter((task) =>
      [task.id, task.title, task.state, task.tool, task.route_reason, task.reason]
        .some((value) => value && String(value).toLowerCase().includes(query)));
  }

  turn(delta) {
    this.page += delta;
    this.render();
    markRendered('run');
  }

  render() {
    const tasks = this.matching();
    const pages = Math.max(1, Math.ceil(tasks.length / TASK_PAGE));
    this.page = clamp(this.page, 0, pages - 1);
    const first = this.page * TASK_PAGE;
    const shown = tasks.slice(first, first + TASK_PAGE);
    this.rows.clear();
    const rows = shown.map((task) => this.makeRow(task));
    if (rows.length === 0) {
      rows.push(el('tr', { class: 'empty' }, el('td', { colspan: 9, class: 'muted', text: 'No task matches.' })));
    }
    this.tbody.replaceChildren(...rows);
    setText(this.range, tasks.length
      ? `${first + 1}–${first + shown.length} of ${tasks.length}`
      : '0 of 0');
    this.prev.disabled = this.page === 0;
    this.next.disabled = this.page >= pages - 1;
  }

  makeRow(task) {
    const row = el('tr', { 'data-task-id': task.id, 'data-state': task.state },
      el('td', { class: 'id' }, el('a', { href: link.task(this.view.runId, task.id) }, task.id),
        task.title ? el('div', { class: 'title muted', text: task.title }) : null),
      el('td', { class: 'state' }, badge(task.state)),
      el('td', { class: 'wave num', text: String((task.wave ?? 0) + 1) }),
      el('td', { class: 'tool' }, task.tool || '—',
        task.review ? el('span', { class: 'review-mark', 'data-review-state': task.review,
          title: `last review: ${task.review}`, text: ` · review ${task.review}` }) : null),
      el('td', { class: 'attempts num', text: String(task.attempts ?? 0) }),
      el('td', { class: 'tokens num', text: fmt.int(task.tokens ?? 0) }),
      el('td', { class: 'cost num', text: fmt.cost(task.cost_usd ?? 0) }),
      el('td', { class: 'route', text: task.route_reason || '—' }),
      el('td', { class: 'reason muted', text: task.reason || '' }));
    this.rows.set(task.id, row);
    return row;
  }

  setState(task) {
    const row = this.rows.get(task.id);
    if (!row) return;
    row.setAttribute('data-state', task.state);
    const stateBadge = row.querySelector('td.state .badge');
    stateBadge.dataset.state = task.state;
    setText(stateBadge, task.state);
    setText(row.querySelector('td.reason'), task.reason || '');
  }
}
