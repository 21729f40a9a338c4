/* Log follower: reads the selected attempt's log by offsets every 0.5 s until it ends,
 * scrolling along unless the reader scrolled up, and keeping the page light on huge logs. */
import { api } from './api.js';
import { LOG_POLL_MS } from './constants.js';
import { el, isAtBottom, setText } from './dom.js';
import { fmt } from './format.js';
import { markRendered } from './page.js';

const LOG_KEPT_CHARS = 2 * 1024 * 1024;
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07/g;

export class LogFollower {
  constructor(view, number) {
    this.view = view;
    this.number = number;
    this.offset = -1;
    this.timer = null;
    this.stopped = false;
    this.follow = true;
    this.chars = 0;
    this.onScroll = () => { this.follow = isAtBottom(this.view.log); };
  }

  start() {
    this.view.log.addEventListener('scroll', this.onScroll);
    setText(this.view.logStatus, 'loading…');
    this.poll();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.view.log.removeEventListener('scroll', this.onScroll);
  }

  async poll() {
    if (this.stopped) return;
    const first = this.offset === -1;
    let body;
    try {
      body = await api.log(this.view.runId, this.view.taskId, this.number, this.offset);
    } catch (error) {
      if (this.stopped) return;
      setText(this.view.logStatus, `cannot read the log: ${error.message}`);
      if (error.status !== 404) this.timer = setTimeout(() => this.poll(), 2000);
      return;
    }
    if (this.stopped) return;
    const text = typeof body.text === 'string' ? body.text : '';
    const size = body.size ?? 0;
    const next = typeof body.offset === 'number' ? body.offset : this.offset;
    if (first && next > 0 && size > new Blob([text]).size) {
      this.view.log.appendChild(el('span', { class: 'log-cut', text: `… the first ${fmt.int(size - new Blob([text]).size)} bytes are not shown\n` }));
    }
    this.append(text);
    this.offset = next;
    const behind = this.offset < size;
    if (behind) {
      this.timer = setTimeout(() => this.poll(), 0);
    } else if (!body.ended) {
      setText(this.view.logStatus, `following · ${fmt.int(size)} bytes`);
      this.timer = setTimeout(() => this.poll(), LOG_POLL_MS);
    } else {
      setText(this.view.logStatus, size ? `${fmt.int(size)} bytes · attempt ended` : 'empty log · attempt ended');
    }
    markRendered('task');
  }

  append(text) {
    if (!text) return;
    const log = this.view.log;
    const follow = this.follow;
    log.appendChild(document.createTextNode(text.replace(ANSI, '')));
    this.chars += text.length;
    if (this.chars > LOG_KEPT_CHARS) this.trim();
    if (follow) log.scrollTop = log.scrollHeight;
  }

  /** Keep the page light on a huge log: drop its oldest text. */
  trim() {
    const log = this.view.log;
    while (this.chars > LOG_KEPT_CHARS / 2 && log.firstChild) {
      this.chars -= (log.firstChild.textContent || '').length;
      log.removeChild(log.firstChild);
    }
    if (!log.firstChild || !log.firstChild.classList || !log.firstChild.classList.contains('log-cut')) {
      log.insertBefore(el('span', { class: 'log-cut', text: '… earlier lines dropped from the page\n' }), log.firstChild);
    }
  }
}
