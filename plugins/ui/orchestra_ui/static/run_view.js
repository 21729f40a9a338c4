/* The run page: one run's header, counts, totals, attention list, graph, timeline, tasks and
 * breakers, following its events (step events reach the DOM at once; the RunView is fetched
 * again at most once a second while events arrive). */
import { api } from './api.js';
import {
  ATTENTION_MAX, ATTENTION_ORDER, ENDED_RUN_STATES, ENDED_STEP_STATES, REFETCH_MS, RUN_STATES,
  STEP_STATES,
} from './constants.js';
import { badge, button, el, setText, th } from './dom.js';
import { clamp, fmt, runSeconds } from './format.js';
import { Graph } from './graph.js';
import { EventFollower } from './live.js';
import { markRendered, setCrumbs } from './page.js';
import { link } from './routes.js';
import { TaskTable } from './tasks_table.js';
import { Throttle, debounce } from './throttle.js';
import { Timeline } from './timeline.js';

export class RunView {
  constructor(root, runId) {
    this.root = root;
    this.runId = runId;
    this.stopped = false;
    this.data = null;
    this.follower = null;
    this.recent = [];
    this.refetch = new Throttle(() => this.reload(), REFETCH_MS);
    this.attentionTimer = null;
    this.ticker = null;
  }

  async start() {
    document.title = `${this.runId} · orchestra`;
    setCrumbs([{ text: 'Runs', href: link.runs() }, { text: this.runId, className: 'run-id' }]);
    let data;
    try {
      data = await api.run(this.runId);
    } catch (error) {
      if (this.stopped) return;
      this.root.append(el('h1', { text: this.runId }), el('p', { class: 'error', role: 'alert' }, error.message),
        el('p', null, el('a', { href: link.runs() }, 'Back to the runs')));
      markRendered('run');
      return;
    }
    if (this.stopped) return;
    this.index(data);
    this.build();
    this.renderAll(true);
    markRendered('run');
    this.follower = new EventFollower(this.runId, data.last_seq ?? 0, (events) => this.onEvents(events),
      () => !ENDED_RUN_STATES.has(this.data.run.state));
    this.ticker = setInterval(() => this.tick(), 1000);
    this.onResize = debounce(() => {
      this.graph.applyZoom();
      this.timeline.render();
    }, 150);
    window.addEventListener('resize', this.onResize);
  }

  stop() {
    this.stopped = true;
    if (this.follower) this.follower.close();
    this.refetch.cancel();
    clearInterval(this.ticker);
    clearTimeout(this.attentionTimer);
    if (this.onResize) window.removeEventListener('resize', this.onResize);
    if (this.timeline) this.timeline.stop();
  }

  /** Take a RunView in: tasks by id, counts by state, overall and per wave. */
  index(data) {
    this.data = data;
    this.tasks = Array.isArray(data.tasks) ? data.tasks : [];
    this.taskById = new Map(this.tasks.map((task) => [task.id, task]));
    this.waves = Array.isArray(data.waves) ? data.waves : [];
    this.countStates();
  }

  countStates() {
    this.counts = Object.fromEntries(STEP_STATES.map((state) => [state, 0]));
    this.waveCounts = this.waves.map(() => ({}));
    for (const task of this.tasks) {
      this.counts[task.state] = (this.counts[task.state] || 0) + 1;
      const wave = this.waveCounts[task.wave];
      if (wave) wave[task.state] = (wave[task.state] || 0) + 1;
    }
  }

  build() {
    const run = this.data.run;
    this.stateBadge = el('span', { id: 'run-state', class: 'badge big', 'data-state': run.state, text: run.state });
    this.meta = el('p', { class: 'run-meta muted' });
    this.runError = el('p', { class: 'error', hidden: true });
    this.cancelButton = button('cancel', 'Cancel run', () => this.act('cancel'), { class: 'danger', hidden: true });
    this.resumeButton = button('resume', 'Resume run', () => this.act('resume'), { class: 'primary', hidden: true });
    this.actionResult = el('span', { id: 'action-result', role: 'status', 'aria-live': 'polite' });
    const head = el('section', { class: 'run-head' },
      el('div', { class: 'title-line' },
        el('h1', null, el('span', { class: 'run-id', text: run.id })),
        this.stateBadge,
        el('span', { class: 'workstream', text: run.workstream || '' }),
        el('span', { class: 'spacer' }),
        el('div', { class: 'actions' }, this.cancelButton, this.resumeButton, this.actionResult)),
      this.meta, this.runError);

    this.countsBox = el('div', { id: 'counts', class: 'counts', role: 'list', 'aria-label': 'Tasks by state' });
    this.countCells = {};
    for (const state of STEP_STATES) {
      const number = el('strong', { 'data-count': state, text: '0' });
      this.countCells[state] = number;
      this.countsBox.appendChild(el('div', { class: 'count-chip', role: 'listitem', 'data-state': state },
        el('span', { class: 'swatch', 'data-state': state, 'aria-hidden': 'true' }),
        number, el('span', { class: 'label', text: state })));
    }
    this.totalCells = {};
    const total = (name, label) => {
      const value = el('dd', { 'data-total': name, text: '—' });
      this.totalCells[name] = value;
      return el('div', { class: 'total' }, el('dt', { text: label }), value);
    };
    this.budgetMeter = el('span', { class: 'meter-fill' });
    const totals = el('dl', { id: 'totals', class: 'totals' },
      total('progress', 'Done'), total('duration', 'Duration'), total('attempts', 'Attempts'),
      total('tokens', 'Tokens'), total('cost', 'Cost'), total('budget', 'Budget left'));
    this.totalCells.budget.after(el('div', { class: 'meter', 'aria-hidden': 'true' }, this.budgetMeter));

    this.graphNote = el('p', { class: 'note', hidden: true });
    this.attentionList = el('ul', { id: 'attention', class: 'attention' });
    this.attentionNote = el('p', { class: 'muted small' });

    this.graph = new Graph(this);
    this.timeline = new Timeline(this);
    this.breakers = el('tbody');
    this.taskTable = new TaskTable(this);

    this.root.append(
      head,
      el('section', { class: 'figures' }, this.countsBox, totals),
      this.graphNote,
      el('section', { class: 'panel', 'aria-labelledby': 'attention-title' },
        el('h2', { id: 'attention-title', text: 'Failed and running' }),
        this.attentionList, this.attentionNote),
      this.graph.build(),
      el('section', { class: 'panel', 'aria-labelledby': 'timeline-title' },
        el('h2', { id: 'timeline-title', text: 'Timeline of attempts by worker' }),
        this.timeline.build()),
      this.taskTable.build(),
      el('section', { class: 'panel', 'aria-labelledby': 'breakers-title' },
        el('h2', { id: 'breakers-title', text: 'Circuit breakers' }),
        el('div', { class: 'table-wrap' },
          el('table', { id: 'breakers', class: 'grid' },
            el('thead', null, el('tr', null, th('Tool'), th('State'), th('Failures', 'num'),
              th('Open until'), th('Last error class'))),
            this.breakers))));
  }

  /** Draw every part from `this.data` (`first`: the graph gets its initial layout). */
  renderAll(first) {
    this.renderHead();
    this.renderCounts();
    this.renderTotals();
    this.renderAttention();
    const note = this.data.graph_note;
    this.graphNote.hidden = !note;
    setText(this.graphNote, note || '');
    if (first) this.graph.initialize();
    else this.graph.sync();
    this.timeline.render();
    this.renderBreakers();
    this.taskTable.render();
  }

  renderHead() {
    const run = this.data.run;
    this.stateBadge.dataset.state = run.state;
    setText(this.stateBadge, run.state);
    const parts = [];
    if (run.file) parts.push(run.file);
    parts.push('created ' + fmt.time(run.created_at));
    if (run.started_at) parts.push('started ' + fmt.time(run.started_at));
    if (run.ended_at) parts.push('ended ' + fmt.time(run.ended_at));
    setText(this.meta, parts.join(' · '));
    this.runError.hidden = !run.error;
    setText(this.runError, run.error || '');
    this.cancelButton.hidden = !(run.state === 'running' || run.state === 'pending');
    this.resumeButton.hidden = !(run.state === 'interrupted' || run.state === 'canceled');
    document.title = `${run.id} · ${run.state} · orchestra`;
  }

  renderCounts() {
    for (const state of STEP_STATES) {
      const value = this.counts[state] || 0;
      setText(this.countCells[state], String(value));
      this.countCells[state].parentNode.dataset.zero = value === 0 ? 'true' : 'false';
    }
  }

  renderTotals() {
    const run = this.data.run;
    const done = STEP_STATES.filter((s) => ENDED_STEP_STATES.has(s))
      .reduce((sum, s) => sum + (this.counts[s] || 0), 0);
    setText(this.totalCells.progress, `${done}/${this.tasks.length}`);
    setText(this.totalCells.duration, fmt.duration(runSeconds(run)));
    const bars = Array.isArray(this.data.attempts) ? this.data.attempts : [];
    // an attempt whose change a second tool reviewed (docs/reviews.md) is counted apart
    const reviewed = bars.filter((bar) => bar.review).length;
    setText(this.totalCells.attempts, reviewed
      ? `${fmt.int(bars.length)} · ${fmt.int(reviewed)} reviewed`
      : fmt.int(bars.length));
    const tokens = run.tokens ?? 0;
    const cost = run.cost_usd ?? 0;
    setText(this.totalCells.tokens, fmt.int(tokens));
    this.totalCells.tokens.dataset.value = String(tokens);
    setText(this.totalCells.cost, fmt.cost(cost));
    this.totalCells.cost.dataset.value = String(cost);
    const budget = this.data.budget || {};
    const left = [];
    let used = null;
    if (budget.tokens !== null && budget.tokens !== undefined) {
      left.push(`${fmt.int(budget.tokens - tokens)} tokens`);
      used = budget.tokens > 0 ? tokens / budget.tokens : 1;
    }
    if (budget.cost_usd !== null && budget.cost_usd !== undefined) {
      left.push(fmt.cost(budget.cost_usd - cost));
      const share = budget.cost_usd > 0 ? cost / budget.cost_usd : 1;
      used = used === null ? share : Math.max(used, share);
    }
    setText(this.totalCells.budget, left.length ? left.join(' · ') : 'no budget');
    this.budgetMeter.parentNode.hidden = used === null;
    if (used !== null) {
      this.budgetMeter.style.width = `${clamp(used * 100, 0, 100).toFixed(1)}%`;
      this.budgetMeter.dataset.level = used >= 1 ? 'over' : used >= 0.8 ? 'high' : 'ok';
    }
  }

  renderAttention() {
    const items = this.tasks.filter((task) => task.state in ATTENTION_ORDER);
    items.sort((a, b) => ATTENTION_ORDER[a.state] - ATTENTION_ORDER[b.state]);
    const shown = items.slice(0, ATTENTION_MAX);
    this.attentionList.replaceChildren(...shown.map((task) => el('li', {
      'data-task-id': task.id, 'data-state': task.state,
    },
    badge(task.state),
    el('a', { href: link.task(this.runId, task.id), class: 'task-id' }, task.id),
    task.title ? el('span', { class: 'title', text: task.title }) : null,
    task.reason ? el('span', { class: 'reason muted', text: task.reason }) : null)));
    if (items.length === 0) setText(this.attentionNote, 'Nothing has failed and nothing is running.');
    else if (items.length > shown.length) {
      setText(this.attentionNote, `${items.length - shown.length} more: filter the tasks table below.`);
    } else setText(this.attentionNote, '');
  }

  renderBreakers() {
    const breakers = Array.isArray(this.data.breakers) ? this.data.breakers : [];
    if (breakers.length === 0) {
      this.breakers.replaceChildren(el('tr', { class: 'empty' },
        el('td', { colspan: 5, class: 'muted', text: 'No tool has tripped a breaker.' })));
      return;
    }
    this.breakers.replaceChildren(...breakers.map((breaker) => el('tr', { 'data-tool': breaker.tool },
      el('td', { class: 'tool', text: breaker.tool }),
      el('td', { class: 'state' }, el('span', { class: 'badge', 'data-breaker': breaker.state, text: breaker.state })),
      el('td', { class: 'num', text: fmt.int(breaker.failures) }),
      el('td', { text: breaker.open_until ? fmt.time(breaker.open_until) : '—' }),
      el('td', { class: 'error-class', text: breaker.last_error_class || '—' }))));
  }

  // -- actions ----------------------------------------------------------------------

  async act(action) {
    const target = action === 'cancel' ? this.cancelButton : this.resumeButton;
    target.disabled = true;
    this.actionResult.dataset.kind = '';
    setText(this.actionResult, action === 'cancel' ? 'canceling…' : 'resuming…');
    try {
      const answer = await api[action](this.runId);
      this.actionResult.dataset.kind = 'ok';
      setText(this.actionResult, (answer && answer.message) || 'done');
    } catch (error) {
      this.actionResult.dataset.kind = 'error';
      setText(this.actionResult, error.message);
    } finally {
      target.disabled = false;
    }
    if (this.stopped) return;
    markRendered('run');
    this.refetch.request();
  }

  // -- live updates -----------------------------------------------------------------

  onEvents(events) {
    if (this.stopped) return;
    let changed = false;
    for (const event of events) {
      if (this.applyEvent(event)) {
        changed = true;
        this.recent.push(event);
      }
    }
    if (this.recent.length > 20000) this.recent.splice(0, this.recent.length - 10000);
    if (changed) {
      this.renderHead();
      this.renderCounts();
      this.renderTotals();
      this.graph.flushSummaries();
      this.scheduleAttention();
    }
    if (this.barsChanged) {
      this.barsChanged = false;
      this.timeline.render();
    }
    markRendered('run');
    this.refetch.request();
  }

  /** Apply one step or run event to the model and the DOM; return whether it changed them. */
  applyEvent(event) {
    const type = typeof event.type === 'string' ? event.type : '';
    if (type.startsWith('step.') && event.task_id !== null && event.task_id !== undefined) {
      const state = type.slice(5);
      if (!STEP_STATES.includes(state)) return false;
      const reason = event.payload && typeof event.payload === 'object' ? event.payload.reason : undefined;
      return this.setTaskState(String(event.task_id), state, reason);
    }
    if (type === 'attempt.finished') return this.finishBar(event);
    if (type.startsWith('run.')) {
      const state = type.slice(4);
      if (!RUN_STATES.includes(state)) return false;
      const run = this.data.run;
      run.state = state;
      if (state === 'running' && !run.started_at && event.at) run.started_at = event.at;
      if (ENDED_RUN_STATES.has(state) && event.at) run.ended_at = event.at;
      return true;
    }
    return false;
  }

  /** An attempt ended: end its bar now rather than at the next fetch. */
  finishBar(event) {
    const bars = Array.isArray(this.data.attempts) ? this.data.attempts : [];
    const bar = bars.find((item) => item.task === event.task_id && item.number === event.attempt);
    if (!bar || (bar.ended_at !== null && bar.ended_at !== undefined)) return false;
    const payload = event.payload && typeof event.payload === 'object' ? event.payload : {};
    bar.ended_at = event.at;
    bar.outcome = payload.outcome ?? null;
    bar.error_class = payload.error_class ?? null;
    this.barsChanged = true;
    return false;
  }

  setTaskState(taskId, state, reason) {
    const task = this.taskById.get(taskId);
    if (!task || task.state === state) return false;
    const before = task.state;
    this.counts[before] = Math.max(0, (this.counts[before] || 0) - 1);
    this.counts[state] = (this.counts[state] || 0) + 1;
    const wave = this.waveCounts[task.wave];
    if (wave) {
      wave[before] = Math.max(0, (wave[before] || 0) - 1);
      wave[state] = (wave[state] || 0) + 1;
    }
    task.state = state;
    task.reason = reason === undefined ? null : reason;
    this.graph.setState(task);
    this.taskTable.setState(task);
    return true;
  }

  scheduleAttention() {
    if (this.attentionTimer) return;
    this.attentionTimer = setTimeout(() => {
      this.attentionTimer = null;
      if (!this.stopped) this.renderAttention();
    }, 100);
  }

  /** Fetch the RunView again and redraw, replaying the events it does not hold yet. */
  async reload() {
    if (this.stopped) return;
    let data;
    try {
      data = await api.run(this.runId);
    } catch (error) {
      return; // the stream goes on; the next event asks again
    }
    if (this.stopped) return;
    const sameGraph = this.sameGraph(data);
    this.index(data);
    const seen = data.last_seq ?? 0;
    this.recent = this.recent.filter((event) => event.seq > seen);
    for (const event of this.recent) this.applyEvent(event);
    if (!sameGraph) this.graph.relayout(true);
    this.renderAll(false);
    markRendered('run');
  }

  sameGraph(data) {
    if (!Array.isArray(data.tasks) || data.tasks.length !== this.tasks.length) return false;
    if (!Array.isArray(data.waves) || data.waves.length !== this.waves.length) return false;
    return data.waves.every((wave, index) => wave.length === this.waves[index].length);
  }

  tick() {
    const run = this.data.run;
    if (ENDED_RUN_STATES.has(run.state) && run.ended_at) return;
    setText(this.totalCells.duration, fmt.duration(runSeconds(run)));
    this.timeline.tick();
  }
}
