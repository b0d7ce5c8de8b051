/**
 * A rate limiter for log lines (docs/COMPATIBILITY.md#trace-and-log): per key (the source of a
 * message, e.g. `readCmd`), the first `burst` lines of an interval pass, the rest are suppressed
 * and counted; the first line of a key after an interval with suppressed lines is preceded by a
 * summary `<first suppressed line> ... repeated N times`, and {@link LogRateLimiter.flush} emits
 * the summaries of intervals that ended without a later line. Pure: time comes in as an argument.
 * The number of keys is bounded too: beyond `maxKeys` every new key shares one overflow key.
 * @module
 */

/** Limits of a {@link LogRateLimiter}. */
export interface RateLimitOptions {
  /** Lines per key and interval that pass (default 10). */
  readonly burst?: number;
  /** Interval length in ms (default 5000). */
  readonly intervalMs?: number;
  /** Distinct keys tracked (default 256); further keys share one. */
  readonly maxKeys?: number;
}

interface KeyState {
  start: number;
  passed: number;
  suppressed: number;
  first: string;
}

/** The key all keys beyond `maxKeys` share. */
const OVERFLOW_KEY = "\u0000overflow";

/** Per-key "first N lines per interval" limiter with `... repeated N times` summaries. */
export class LogRateLimiter {
  readonly #burst: number;
  readonly #interval: number;
  readonly #maxKeys: number;
  readonly #keys = new Map<string, KeyState>();

  constructor(opts: RateLimitOptions = {}) {
    this.#burst = opts.burst ?? 10;
    this.#interval = opts.intervalMs ?? 5000;
    this.#maxKeys = opts.maxKeys ?? 256;
  }

  /**
   * Offer `line` from source `key` at time `now` (ms). Returns the lines to write now, in order
   * (possibly none): a pending summary of the key's previous interval, then `line` if it passes.
   */
  offer(key: string, line: string, now: number): string[] {
    let st = this.#keys.get(key);
    if (st === undefined) {
      if (this.#keys.size >= this.#maxKeys) {
        key = OVERFLOW_KEY;
        st = this.#keys.get(key);
      }
      if (st === undefined) {
        st = { start: now, passed: 0, suppressed: 0, first: "" };
        this.#keys.set(key, st);
      }
    }
    const out: string[] = [];
    if (now - st.start >= this.#interval) {
      if (st.suppressed > 0) out.push(summary(st));
      st.start = now;
      st.passed = 0;
      st.suppressed = 0;
    }
    if (st.passed < this.#burst) {
      st.passed++;
      out.push(line);
    } else {
      if (st.suppressed === 0) st.first = line;
      st.suppressed++;
    }
    return out;
  }

  /** Summaries of every interval that ended by `now` with suppressed lines; forgets idle keys. */
  flush(now: number): string[] {
    const out: string[] = [];
    for (const [key, st] of this.#keys) {
      if (now - st.start < this.#interval) continue;
      if (st.suppressed > 0) out.push(summary(st));
      this.#keys.delete(key);
    }
    return out;
  }
}

function summary(st: KeyState): string {
  return `${st.first} ... repeated ${st.suppressed} times`;
}
