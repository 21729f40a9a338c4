/* router: shows the view of the address's hash route (#/ runs, #/runs/<run> a run,
 * #/runs/<run>/tasks/<task> a task), stopping the one shown before. */
import { el } from './dom.js';
import { markRendered, setCrumbs, setLive } from './page.js';
import { link, parseRoute } from './routes.js';
import { RunView } from './run_view.js';
import { RunsView } from './runs_view.js';
import { TaskView } from './task_view.js';

let currentView = null;

class MissingView {
  constructor(root) {
    this.root = root;
  }

  start() {
    setCrumbs([{ text: 'Runs', href: link.runs() }]);
    this.root.append(el('h1', { text: 'No such page' }),
      el('p', null, el('a', { href: link.runs() }, 'Back to the runs')));
    markRendered('missing');
  }

  stop() {}
}

/** Replace the shown view with the one `location.hash` names. */
export function route() {
  const target = parseRoute(location.hash);
  if (currentView) currentView.stop();
  setLive('', '');
  const main = document.getElementById('main');
  main.replaceChildren();
  window.scrollTo(0, 0);
  if (target.name === 'runs') currentView = new RunsView(main, target.state);
  else if (target.name === 'run') currentView = new RunView(main, target.runId);
  else if (target.name === 'task') currentView = new TaskView(main, target.runId, target.taskId);
  else currentView = new MissingView(main);
  currentView.start();
}
