/* Live events: one EventSource per shown run; every event's delay is kept for the benchmark
 * (in window.orchestraLatencies, which the benchmark may replace with a fresh array). */
import { api } from './api.js';
import { LATENCIES_KEPT } from './constants.js';
import { setLive } from './page.js';

window.orchestraLatencies = [];

function recordLatency(seconds) {
  const kept = window.orchestraLatencies;
  kept.push(seconds);
  if (kept.length > LATENCIES_KEPT) kept.splice(0, kept.length - LATENCIES_KEPT);
}

/** Follows `/api/runs/<run>/events` from seq `after`, handing each new event list on;
 * the header says "live" while `active()` (the run has not ended). */
export class EventFollower {
  constructor(runId, after, onEvents, active) {
    this.runId = runId;
    this.after = after;
    this.onEvents = onEvents;
    this.active = active || (() => true);
    this.source = null;
    this.retry = null;
    this.open();
  }

  open() {
    const source = new EventSource(api.eventsUrl(this.runId, this.after));
    this.source = source;
    source.addEventListener('change', (message) => this.receive(message.data, false));
    source.addEventListener('batch', (message) => this.receive(message.data, true));
    source.addEventListener('open', () => this.showStatus());
    source.addEventListener('error', () => {
      if (this.source !== source) return;
      if (source.readyState === EventSource.CLOSED) {
        // the server refused the stream: try again later from where it stopped
        setLive('disconnected', 'down');
        source.close();
        this.source = null;
        this.retry = setTimeout(() => this.open(), 3000);
      } else {
        setLive('reconnecting…', 'down');
      }
    });
  }

  showStatus() {
    const open = this.source && this.source.readyState === EventSource.OPEN;
    if (open) setLive(this.active() ? 'live' : '', this.active() ? 'live' : '');
  }

  receive(data, isBatch) {
    let parsed;
    try {
      parsed = JSON.parse(data);
    } catch (error) {
      return;
    }
    const events = isBatch ? (Array.isArray(parsed) ? parsed : []) : [parsed];
    const now = Date.now() / 1000;
    const fresh = [];
    for (const event of events) {
      if (!event || typeof event !== 'object') continue;
      if (typeof event.at === 'number') recordLatency(now - event.at);
      if (typeof event.seq !== 'number' || event.seq <= this.after) continue;
      this.after = event.seq;
      fresh.push(event);
    }
    if (fresh.length) this.onEvents(fresh);
    this.showStatus();
  }

  close() {
    clearTimeout(this.retry);
    if (this.source) this.source.close();
    this.source = null;
    setLive('', '');
  }
}

