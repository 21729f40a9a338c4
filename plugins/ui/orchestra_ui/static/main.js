/* orchestra ui: one page that shows the runs, a run and a task of a run database, live.
 * This module starts it: it draws the view of the address and follows its changes.
 *
 * The modules, by job: constants · dom (element helpers) · format · api (JSON routes) ·
 * routes (hash links) · page (crumbs, live mark, rendered signal) · throttle · live (events)
 * · router · runs_view · run_view (with graph, graph_layout, graph_viewport, timeline,
 * tasks_table) · task_view (with attempt, diff, log_follower).
 *
 * Safety: every value that comes from the server reaches the page as text (textContent,
 * createTextNode) or as an attribute value (setAttribute, dataset); the page never parses
 * a string as markup. Links are built from encodeURIComponent'ed ids behind a fixed "#/".
 */
import { route } from './router.js';

window.addEventListener('hashchange', route);
route();
