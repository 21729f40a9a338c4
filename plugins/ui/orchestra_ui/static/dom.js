/* DOM helpers: elements are made with properties as attributes and children as nodes or text.
 *
 * This is where the page's safety rule lives: a value reaches the DOM as text (textContent,
 * createTextNode) or as an attribute value (setAttribute, dataset), never as markup.
 */
import { SVG_NS } from './constants.js';

function fill(node, props, children) {
  if (props) {
    for (const [name, value] of Object.entries(props)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'text') node.textContent = String(value);
      else if (name.startsWith('on') && typeof value === 'function') {
        node.addEventListener(name.slice(2), value);
      } else node.setAttribute(name, value === true ? '' : String(value));
    }
  }
  appendAll(node, children);
  return node;
}

function appendAll(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) appendAll(node, child);
    else if (child instanceof Node) node.appendChild(child);
    else node.appendChild(document.createTextNode(String(child)));
  }
}

/** Return a new HTML element `tag` with attributes `props` and `children`. */
export function el(tag, props, ...children) {
  return fill(document.createElement(tag), props, children);
}

/** Return a new SVG element `tag` with attributes `props` and `children`. */
export function svgEl(tag, props, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), props, children);
}

/** Set a node's text only when it changed (saves layout work on live updates). */
export function setText(node, value) {
  const text = value === null || value === undefined ? '' : String(value);
  if (node.textContent !== text) node.textContent = text;
}

export function badge(state, extra) {
  return el('span', { class: 'badge' + (extra ? ' ' + extra : ''), 'data-state': state, text: state });
}

export function th(text, className) {
  return el('th', { scope: 'col', class: className, text });
}

export function button(id, text, onclick, props) {
  return el('button', { type: 'button', id, ...(props || {}), onclick }, text);
}

export function showError(box, error) {
  box.hidden = false;
  setText(box, error && error.message ? error.message : String(error));
}

export function isAtBottom(node) {
  return node.scrollTop + node.clientHeight >= node.scrollHeight - 8;
}
