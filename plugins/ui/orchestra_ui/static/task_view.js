/* The task page: a task's facts, checks and attempts, and the log of the selected attempt,
 * followed by the run's events while the task can still change. */
import { api } from './api.js';
import { renderAttempt } from './attempt.js';
import { ENDED_STEP_STATES, REFETCH_MS } from './constants.js';
import { el, setText } from './dom.js';
import { fmt } from './format.js';
import { EventFollower } from './live.js';
import { LogFollower } from './log_follower.js';
import { markRendered, setCrumbs } from './page.js';
import { link } from './routes.js';
import { Throttle } from './throttle.js';

export class TaskView {
  constructor(root, runId, taskId) {
    this.root = root;
    this.runId = runId;
    this.taskId = taskId;
    this.stopped = false;
    this.data = null;
    this.sections = new Map();
    this.signatures = new Map();
    this.selected = null;
    this.chosenByUser = false;
    this.logFollower = null;
    this.poller = null;
    this.follower = null;
    this.refetch = new Throttle(() => this.reload(), REFETCH_MS);
  }

  async start() {
    document.title = `${this.taskId} · ${this.runId} · orchestra`;
    setCrumbs([
      { text: 'Runs', href: link.runs() },
      { text: this.runId, href: link.run(this.runId), className: 'run-id' },
      { text: this.taskId },
    ]);
    let data;
    try {
      data = await api.task(this.runId, this.taskId);
    } catch (error) {
      if (this.stopped) return;
      this.root.append(el('h1', { id: 'task-title', text: this.taskId }),
        el('p', { class: 'error', role: 'alert' }, error.message),
        el('p', null, el('a', { href: link.run(this.runId) }, 'Back to the run')));
      markRendered('task');
      return;
    }
    if (this.stopped) return;
    this.data = data;
    this.build();
    this.render();
    this.selectDefault();
    markRendered('task');
    this.follow();
  }

  stop() {
    this.stopped = true;
    if (this.logFollower) this.logFollower.stop();
    if (this.follower) this.follower.close();
    clearTimeout(this.poller);
    this.refetch.cancel();
  }

  build() {
    this.title = el('h1', { id: 'task-title' });
    this.stateBadge = el('span', { id: 'task-state', class: 'badge big' });
    this.idLine = el('code', { class: 'task-id' });
    this.facts = el('dl', { class: 'facts' });
    this.checks = el('ul', { id: 'checks', class: 'checks' });
    this.checksNote = el('p', { class: 'muted small' });
    this.attempts = el('div', { id: 'attempts' });
    this.logTitle = el('h2', { id: 'log-title', text: 'Log' });
    this.logStatus = el('span', { class: 'muted small log-status', role: 'status' });
    this.log = el('pre', { id: 'log', class: 'log', tabindex: 0, 'aria-labelledby': 'log-title' });
    this.root.append(
      el('section', { class: 'task-head' },
        el('div', { class: 'title-line' }, this.title, this.stateBadge),
        this.idLine, this.facts),
      el('section', { class: 'panel', 'aria-labelledby': 'checks-title' },
        el('h2', { id: 'checks-title', text: 'Checks' }), this.checks, this.checksNote),
      el('section', { class: 'panel', 'aria-labelledby': 'attempts-title' },
        el('h2', { id: 'attempts-title', text: 'Attempts' }), this.attempts),
      el('section', { class: 'panel log-panel', 'aria-labelledby': 'log-title' },
        el('div', { class: 'panel-head' }, this.logTitle, this.logStatus), this.log));
  }

  render() {
    const task = this.data.task || {};
    setText(this.title, task.title || task.id || this.taskId);
    setText(this.idLine, task.title ? task.id : '');
    this.idLine.hidden = !task.title;
    this.stateBadge.dataset.state = task.state;
    setText(this.stateBadge, task.state);
    const depends = Array.isArray(task.depends_on) ? task.depends_on : [];
    const rows = [
      ['Run', el('a', { href: link.run(this.runId) }, this.runId)],
      ['Wave', String((task.wave ?? 0) + 1)],
      ['Depends on', depends.length
        ? depends.map((id, at) => [at ? ', ' : '', el('a', { href: link.task(this.runId, id) }, id)])
        : 'nothing'],
      ['Reason', task.reason || '—'],
      ['Tool', task.tool || '—'],
      ['Routing', task.route_reason || '—'],
      ['Attempts', String(task.attempts ?? 0)],
      ['Tokens', fmt.int(task.tokens ?? 0)],
      ['Cost', fmt.cost(task.cost_usd ?? 0)],
    ];
    this.facts.replaceChildren(...rows.map(([label, value]) =>
      el('div', null, el('dt', { text: label }), el('dd', null, value))));
    const checks = Array.isArray(task.checks) ? task.checks : [];
    this.checks.replaceChildren(...checks.map((check) => el('li', null, el('code', { text: check }))));
    setText(this.checksNote, checks.length
      ? 'Their output is in the log of each attempt.'
      : 'No checks: the task passes on its command alone.');
    this.renderAttempts();
  }

  renderAttempts() {
    const attempts = Array.isArray(this.data.attempts) ? this.data.attempts : [];
    if (attempts.length === 0) {
      this.attempts.replaceChildren(el('p', { class: 'muted', text: 'No attempt yet.' }));
      this.sections.clear();
      this.signatures.clear();
      return;
    }
    if (!this.sections.size) this.attempts.replaceChildren();
    const kept = new Set();
    attempts.forEach((attempt) => {
      kept.add(attempt.number);
      const signature = JSON.stringify(attempt);
      if (this.signatures.get(attempt.number) === signature) return;
      const section = renderAttempt(attempt, this);
      const old = this.sections.get(attempt.number);
      if (old) old.replaceWith(section);
      else this.attempts.appendChild(section);
      this.sections.set(attempt.number, section);
      this.signatures.set(attempt.number, signature);
    });
    for (const [number, section] of this.sections) {
      if (!kept.has(number)) {
        section.remove();
        this.sections.delete(number);
        this.signatures.delete(number);
      }
    }
    this.markSelected();
  }

  selectDefault() {
    const attempts = Array.isArray(this.data.attempts) ? this.data.attempts : [];
    const last = attempts[attempts.length - 1];
    if (!last) {
      this.setLogPlaceholder('No attempt yet: the log shows here once one starts.');
      return;
    }
    if (this.selected !== last.number) this.select(last.number, false);
  }

  /** Show the log of attempt `number` (chosen by a person when `byUser`). */
  select(number, byUser) {
    if (byUser) this.chosenByUser = true;
    this.selected = number;
    this.markSelected();
    if (this.logFollower) this.logFollower.stop();
    this.logFollower = null;
    const attempt = (this.data.attempts || []).find((item) => item.number === number);
    setText(this.logTitle, `Log of attempt ${number}`);
    if (!attempt || !attempt.has_log) {
      this.setLogPlaceholder('This attempt recorded no log.');
      return;
    }
    this.log.replaceChildren();
    this.log.dataset.attempt = String(number);
    this.logFollower = new LogFollower(this, number);
    this.logFollower.start();
  }

  setLogPlaceholder(text) {
    this.log.replaceChildren();
    delete this.log.dataset.attempt;
    setText(this.logStatus, text);
  }

  markSelected() {
    for (const [number, section] of this.sections) {
      const selected = number === this.selected;
      section.classList.toggle('selected', selected);
      const toggle = section.querySelector('button.show-log');
      if (toggle) toggle.setAttribute('aria-pressed', String(selected));
    }
  }

  /** Follow the task while it can still change: by the run's events, or by asking again. */
  follow() {
    if (typeof this.data.last_seq === 'number') {
      this.follower = new EventFollower(this.runId, this.data.last_seq, (events) => {
        if (events.some((event) => event.task_id === this.taskId || String(event.type).startsWith('run.'))) {
          this.refetch.request();
        }
      });
      return;
    }
    // without the run's event seq, ask again: every 1.5 s, slower once nothing changes
    let quiet = 0;
    const again = () => {
      if (this.stopped) return;
      const state = this.data.task && this.data.task.state;
      const attempts = this.data.attempts || [];
      const open = attempts.some((attempt) => attempt.ended_at === null || attempt.ended_at === undefined);
      if (ENDED_STEP_STATES.has(state) && !open) return;
      this.poller = setTimeout(async () => {
        quiet = (await this.reload()) ? 0 : quiet + 1;
        again();
      }, quiet > 40 ? 5000 : 1500);
    };
    again();
  }

  async reload() {
    if (this.stopped) return;
    let data;
    try {
      data = await api.task(this.runId, this.taskId);
    } catch (error) {
      return false;
    }
    if (this.stopped) return false;
    const before = JSON.stringify(this.data);
    this.data = data;
    if (JSON.stringify(data) === before) return false;
    this.render();
    const attempts = data.attempts || [];
    const last = attempts[attempts.length - 1];
    if (last && !this.chosenByUser && last.number !== this.selected) this.select(last.number, false);
    else if (last && last.number === this.selected && last.has_log && !this.logFollower) this.select(last.number, false);
    markRendered('task');
    return true;
  }
}
