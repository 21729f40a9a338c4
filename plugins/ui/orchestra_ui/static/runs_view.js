/* The runs page: the recorded runs, newest first, refreshed every 2 s while shown. */
import { api } from './api.js';
import { RUN_STATES, RUNS_REFRESH_MS } from './constants.js';
import { badge, el, setText, showError, th } from './dom.js';
import { fmt, runSeconds } from './format.js';
import { markRendered, setCrumbs } from './page.js';
import { link } from './routes.js';

export class RunsView {
  constructor(root, state) {
    this.root = root;
    this.state = RUN_STATES.includes(state) ? state : '';
    this.rows = new Map();
    this.timer = null;
    this.stopped = false;
    this.requestNumber = 0;
    this.inFlight = false;
  }

  start() {
    document.title = 'Runs · orchestra';
    setCrumbs([{ text: 'Runs' }]);
    this.build();
    this.refresh(true);
    this.timer = setInterval(() => {
      if (!document.hidden) this.refresh(false);
    }, RUNS_REFRESH_MS);
  }

  stop() {
    this.stopped = true;
    clearInterval(this.timer);
  }

  build() {
    this.filter = el('select', { id: 'state-filter' },
      el('option', { value: '' }, 'all states'),
      RUN_STATES.map((state) => el('option', { value: state }, state)));
    this.filter.value = this.state;
    this.filter.addEventListener('change', () => {
      this.state = this.filter.value;
      history.replaceState(null, '', this.state ? '#/?state=' + encodeURIComponent(this.state) : '#/');
      this.refresh(true);
    });
    this.errorBox = el('p', { class: 'error', role: 'alert', hidden: true });
    this.tbody = el('tbody');
    this.tbody.addEventListener('click', (event) => {
      if (event.target.closest('a')) return;
      const row = event.target.closest('tr[data-run-id]');
      if (row) location.hash = link.run(row.dataset.runId);
    });
    this.empty = el('p', { class: 'muted empty', hidden: true });
    const table = el('table', { id: 'runs', class: 'grid clickable' },
      el('caption', { class: 'visually-hidden', text: 'Recorded runs, newest first' }),
      el('thead', null, el('tr', null,
        th('State'), th('Run'), th('Workstream'), th('Progress', 'num'), th('Started'),
        th('Duration', 'num'), th('Tokens', 'num'), th('Cost', 'num'))),
      this.tbody);
    this.root.append(
      el('div', { class: 'page-head' },
        el('h1', { text: 'Runs' }),
        el('label', { class: 'filter' }, el('span', { text: 'State' }), this.filter)),
      this.errorBox,
      el('div', { class: 'table-wrap' }, table),
      this.empty);
  }

  async refresh(force) {
    if (this.inFlight && !force) return;
    const number = ++this.requestNumber;
    this.inFlight = true;
    try {
      const body = await api.runs(this.state);
      if (this.stopped || number !== this.requestNumber) return;
      this.errorBox.hidden = true;
      this.render(Array.isArray(body && body.runs) ? body.runs : []);
    } catch (error) {
      if (this.stopped || number !== this.requestNumber) return;
      showError(this.errorBox, error);
    } finally {
      if (number === this.requestNumber) this.inFlight = false;
    }
    if (!this.stopped && number === this.requestNumber) markRendered('runs');
  }

  render(runs) {
    const seen = new Set();
    let previous = null;
    for (const run of runs) {
      seen.add(run.id);
      let row = this.rows.get(run.id);
      if (!row) {
        row = this.makeRow(run.id);
        this.rows.set(run.id, row);
      }
      this.fillRow(row, run);
      const expected = previous ? previous.nextSibling : this.tbody.firstChild;
      if (expected !== row) this.tbody.insertBefore(row, expected);
      previous = row;
    }
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.remove();
        this.rows.delete(id);
      }
    }
    this.empty.hidden = runs.length > 0;
    setText(this.empty, this.state
      ? `No ${this.state} runs.`
      : 'No runs recorded yet: start one with `orchestra run WORKSTREAM`.');
  }

  makeRow(runId) {
    const row = el('tr', { 'data-run-id': runId });
    row.appendChild(el('td', { class: 'state' }, badge('pending')));
    row.appendChild(el('td', { class: 'run' }, el('a', { href: link.run(runId) }, runId)));
    for (const name of ['workstream', 'progress num', 'started', 'duration num', 'tokens num', 'cost num']) {
      row.appendChild(el('td', { class: name }));
    }
    return row;
  }

  fillRow(row, run) {
    const cell = (name) => row.querySelector('td.' + name);
    row.dataset.state = run.state;
    const state = cell('state');
    const stateBadge = state.firstChild;
    stateBadge.dataset.state = run.state;
    setText(stateBadge, run.state);
    if (run.error) state.setAttribute('title', run.error);
    else state.removeAttribute('title');
    setText(cell('workstream'), run.workstream);
    if (run.file) cell('workstream').setAttribute('title', run.file);
    setText(cell('progress'), `${run.done ?? 0}/${run.tasks ?? 0}`);
    setText(cell('started'), fmt.time(run.started_at ?? run.created_at));
    setText(cell('duration'), fmt.duration(runSeconds(run)));
    setText(cell('tokens'), fmt.int(run.tokens));
    setText(cell('cost'), fmt.cost(run.cost_usd));
  }
}
