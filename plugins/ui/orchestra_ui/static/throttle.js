/* Rate limits on work the page repeats: debounce (wait for a pause) and Throttle (at most
 * once per period, one call at a time). */

/** Return `fn` delayed until `ms` have passed without another call. */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** Calls `fn` at most once per `ms`, and once more after the last request in a burst. */
export class Throttle {
  constructor(fn, ms) {
    this.fn = fn;
    this.ms = ms;
    this.last = 0;
    this.timer = null;
    this.running = false;
    this.again = false;
  }

  request() {
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer) return;
    const wait = Math.max(0, this.last + this.ms - Date.now());
    this.timer = setTimeout(() => this.fire(), wait);
  }

  async fire() {
    this.timer = null;
    this.running = true;
    this.last = Date.now();
    try {
      await this.fn();
    } finally {
      this.running = false;
      if (this.again) {
        this.again = false;
        this.request();
      }
    }
  }

  cancel() {
    clearTimeout(this.timer);
    this.timer = null;
    this.again = false;
  }
}
