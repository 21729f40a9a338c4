/* Diff highlighter: a unified diff as a span per line (add del hunk meta ctx), code tokens
 * inside classed kw str com num by the file's extension (py, js/ts, sh, toml/json, md).
 * Safe: it builds text nodes and classed spans, never markup. */
import { dict } from './constants.js';
import { el } from './dom.js';

const DIFF_LINES_SHOWN = 4000;

const words = (text) => new Set(text.split(/\s+/));
/** Per language: a sticky pattern whose groups are comment, string, number, word. */
const LANGUAGES = dict({
  py: {
    pattern: /(#.*)|([rRbBuUfF]{0,2}(?:"""|'''|"(?:\\.|[^"\\])*"?|'(?:\\.|[^'\\])*'?))|(\b(?:0[xob][\da-fA-F_]+|\d[\d_]*\.?[\d_]*(?:[eE][+-]?\d+)?j?)\b)|([A-Za-z_]\w*)/y,
    keywords: words('False None True and as assert async await break class continue def del elif else except finally for from global if import in is lambda match case nonlocal not or pass raise return self try while with yield'),
  },
  js: {
    pattern: /(\/\/.*|\/\*.*?(?:\*\/|$))|("(?:\\.|[^"\\])*"?|'(?:\\.|[^'\\])*'?|`(?:\\.|[^`\\])*`?)|(\b(?:0[xob][\da-fA-F_]+|\d[\d_]*\.?[\d_]*(?:[eE][+-]?\d+)?n?)\b)|([A-Za-z_$][\w$]*)/y,
    keywords: words('async await break case catch class const continue debugger default delete do else export extends false finally for function if import in instanceof interface let new null of return static super switch this throw true try type typeof undefined var void while with yield enum implements private protected public readonly as from'),
  },
  sh: {
    pattern: /((?:^|(?<=\s))#.*)|("(?:\\.|[^"\\])*"?|'[^']*'?)|(\b\d+\b)|([A-Za-z_][\w-]*)/y,
    keywords: words('if then else elif fi for while until do done case esac function in return export local set unset shift exit source readonly declare'),
  },
  toml: {
    pattern: /(#.*)|("""|'''|"(?:\\.|[^"\\])*"?|'[^']*'?)|(\b-?\d[\d_:.\-TZ+]*\b)|([A-Za-z_][\w-]*)/y,
    keywords: words('true false null'),
  },
  md: {
    pattern: /(<!--.*?(?:-->|$))|(`[^`]*`?)|(^\s*(?:[-*+]|\d+\.)\s)|(^#{1,6}\s.*)/y,
    keywords: null,
  },
});
const EXTENSIONS = dict({
  py: 'py', pyi: 'py', js: 'js', mjs: 'js', cjs: 'js', jsx: 'js', ts: 'js', tsx: 'js',
  sh: 'sh', bash: 'sh', zsh: 'sh', toml: 'toml', json: 'toml', yaml: 'toml', yml: 'toml',
  ini: 'toml', cfg: 'toml', md: 'md', markdown: 'md',
});

function languageOf(path) {
  const match = /\.([A-Za-z0-9]+)$/.exec(path || '');
  return match ? LANGUAGES[EXTENSIONS[match[1].toLowerCase()]] || null : null;
}

/** Append `code` to `parent` as text, its tokens of `language` wrapped in classed spans. */
function highlight(parent, code, language) {
  if (!language || code.length > 2000) {
    parent.appendChild(document.createTextNode(code));
    return;
  }
  const pattern = language.pattern;
  let plain = '';
  let at = 0;
  const flush = () => {
    if (plain) parent.appendChild(document.createTextNode(plain));
    plain = '';
  };
  const token = (className, text) => {
    flush();
    parent.appendChild(el('span', { class: className, text }));
  };
  while (at < code.length) {
    pattern.lastIndex = at;
    const match = pattern.exec(code);
    if (!match || match[0].length === 0) {
      plain += code[at];
      at += 1;
      continue;
    }
    const [text, comment, string, number, word] = match;
    if (language === LANGUAGES.md) {
      if (comment) token('com', text);
      else if (string) token('str', text);
      else if (number) token('num', text);
      else token('kw', text);
    } else if (comment) token('com', text);
    else if (string) token('str', text);
    else if (number) token('num', text);
    else if (word && language.keywords.has(word)) token('kw', text);
    else plain += text;
    at += text.length;
  }
  flush();
}

function diffClass(line) {
  if (line.startsWith('@@')) return 'hunk';
  if (line.startsWith('diff --git') || line.startsWith('index ') || line.startsWith('--- ') ||
    line.startsWith('+++ ') || line.startsWith('new file mode') || line.startsWith('deleted file mode') ||
    line.startsWith('old mode') || line.startsWith('new mode') || line.startsWith('similarity index') ||
    line.startsWith('rename from') || line.startsWith('rename to') || line.startsWith('Binary files')) {
    return 'meta';
  }
  if (line.startsWith('+')) return 'add';
  if (line.startsWith('-')) return 'del';
  return 'ctx';
}

function pathOfDiffHeader(line) {
  if (line.startsWith('+++ ')) {
    const path = line.slice(4).replace(/\t.*$/, '').replace(/^"|"$/g, '');
    return path === '/dev/null' ? null : path.replace(/^b\//, '');
  }
  const match = /^diff --git "?a\/.* "?b\/(.*?)"?$/.exec(line);
  return match ? match[1] : null;
}

/** Return a `pre.diff` of a unified diff: one classed span per line, code highlighted. */
export function renderDiff(diff, limit) {
  const pre = el('pre', { class: 'diff' });
  const lines = diff.replace(/\n$/, '').split('\n');
  const shown = limit === Infinity ? lines.length : Math.min(lines.length, limit || DIFF_LINES_SHOWN);
  let language = null;
  let inHunk = false;
  const fragment = document.createDocumentFragment();
  for (let index = 0; index < shown; index += 1) {
    const line = lines[index];
    let kind = diffClass(line);
    if (inHunk && kind === 'meta' && !line.startsWith('diff --git') && !line.startsWith('Binary files')) {
      kind = line.startsWith('+') ? 'add' : line.startsWith('-') ? 'del' : 'ctx';
    }
    if (line.startsWith('diff --git')) {
      inHunk = false;
      language = languageOf(pathOfDiffHeader(line));
    } else if (kind === 'meta' && line.startsWith('+++ ')) {
      const path = pathOfDiffHeader(line);
      if (path) language = languageOf(path);
    } else if (kind === 'hunk') inHunk = true;
    const span = el('span', { class: kind });
    if (kind === 'add' || kind === 'del' || (kind === 'ctx' && line.startsWith(' '))) {
      span.appendChild(el('span', { class: 'sign', text: line[0] }));
      highlight(span, line.slice(1), language);
    } else {
      span.textContent = line;
    }
    fragment.appendChild(span);
    fragment.appendChild(document.createTextNode('\n'));
  }
  pre.appendChild(fragment);
  if (shown < lines.length) {
    const more = el('button', { type: 'button', class: 'more' },
      `Show all ${lines.length} lines (${lines.length - shown} more)`);
    more.addEventListener('click', () => pre.replaceWith(renderDiff(diff, Infinity)));
    pre.appendChild(more);
  }
  return pre;
}
