/* The page's frame around the views: breadcrumbs, the live indicator, and the signal that a
 * view has been drawn. */
import { el, setText } from './dom.js';

let renderCount = 0;

/** Tell the tests (and anyone watching) that view `name` has just been drawn. */
export function markRendered(name) {
  document.body.dataset.view = name;
  renderCount += 1;
  document.body.dataset.rendered = String(renderCount);
}

export function setCrumbs(items) {
  const nav = document.getElementById('crumbs');
  nav.replaceChildren();
  items.forEach((item, index) => {
    if (index > 0) nav.appendChild(el('span', { class: 'sep', 'aria-hidden': 'true' }, '/'));
    if (item.href) nav.appendChild(el('a', { href: item.href, class: item.className }, item.text));
    else nav.appendChild(el('span', { class: item.className, 'aria-current': 'page' }, item.text));
  });
}

export function setLive(text, state) {
  const live = document.getElementById('live');
  if (!live) return;
  setText(live, text);
  live.dataset.state = state || '';
}
