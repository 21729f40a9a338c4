/* Formatting: numbers, costs, durations and times as the page shows them, and clamp. */
import { ENDED_RUN_STATES } from './constants.js';

export const fmt = {
  int(value) {
    return value === null || value === undefined ? '—' : Math.round(value).toLocaleString('en-US');
  },
  cost(value) {
    if (value === null || value === undefined) return '—';
    if (value === 0) return '$0.00';
    const sign = value < 0 ? '-' : '';
    const amount = Math.abs(value);
    return sign + '$' + (amount >= 1 ? amount.toFixed(2) : amount.toFixed(4));
  },
  duration(seconds) {
    if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '—';
    const s = Math.max(0, seconds);
    if (s < 10) return s.toFixed(1) + 's';
    if (s < 60) return Math.round(s) + 's';
    const whole = Math.round(s);
    if (whole < 3600) return `${Math.floor(whole / 60)}m ${String(whole % 60).padStart(2, '0')}s`;
    const minutes = Math.floor(whole / 60);
    if (whole < 86400) return `${Math.floor(minutes / 60)}h ${String(minutes % 60).padStart(2, '0')}m`;
    return `${Math.floor(whole / 86400)}d ${Math.floor((whole % 86400) / 3600)}h`;
  },
  time(at) {
    if (at === null || at === undefined) return '—';
    const d = new Date(at * 1000);
    const two = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ` +
      `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  },
  short(text, length) {
    const value = String(text);
    return value.length > length ? value.slice(0, length - 1) + '…' : value;
  },
};

/** Seconds a run has lasted (so far, while it runs). */
export function runSeconds(run) {
  if (run.started_at === null || run.started_at === undefined) return run.seconds ?? null;
  if (run.ended_at !== null && run.ended_at !== undefined) {
    return run.seconds ?? run.ended_at - run.started_at;
  }
  if (ENDED_RUN_STATES.has(run.state)) return run.seconds ?? null;
  return Date.now() / 1000 - run.started_at;
}

/** Return `value` brought within [low, high]. */
export function clamp(value, low, high) {
  return Math.min(high, Math.max(low, value));
}
