/**
 * The fast-path writer's memory of recent 5-tuples: which ones to add to
 * the kernel map now. A tuple is added once the queue has seen it
 * `minPackets` times (so a SYN flood of new tuples does not churn the map),
 * and not again while its element is still in the kernel (the queue keeps
 * offering a tuple until its element arrives). Direct-mapped and bounded:
 * a slot per hash, a newer tuple overwrites an older one (which costs at
 * most one more queued packet). The epoch of the last flush makes every
 * older slot empty at once. {@link ElementClock} counts the elements the
 * map holds (added and not yet timed out, since the last flush).
 *
 * @example
 * ```ts
 * import { Admission } from "./admission.ts";
 * const a = new Admission(1024, 2, 5000);
 * const key = new Uint8Array([10, 0, 0, 1, 10, 0, 0, 2]);
 * a.admit(key, 0, key.length, 0, 0); // false: seen once
 * a.admit(key, 0, key.length, 0, 1); // true: add it
 * a.admit(key, 0, key.length, 0, 2); // false: added, not timed out
 * ```
 * @module
 */

const EMPTY = 0, SEEN = 1, ADDED = 2;

/** 32-bit FNV-1a of `key[at, at + len)`: the slot and the fingerprint of a tuple. */
function fnv1a(key: Uint8Array, at: number, len: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < len; i++) h = Math.imul(h ^ key[at + i], 0x01000193);
  return h >>> 0;
}

/** Which offered tuples to add now. */
export class Admission {
  readonly #mask: number;
  readonly #hash: Uint32Array;
  readonly #state: Uint8Array;
  readonly #count: Uint16Array;
  readonly #epoch: Uint32Array;
  /** ms: when the slot's element times out (ADDED) or its first sighting (SEEN). */
  readonly #time: Float64Array;

  /**
   * `slots` (rounded up to a power of two) remembered tuples; a tuple is
   * added on its `minPackets`-th offer; elements live `timeoutMs`.
   */
  constructor(slots: number, readonly minPackets: number, readonly timeoutMs: number) {
    let n = 1;
    while (n < slots) n *= 2;
    this.#mask = n - 1;
    this.#hash = new Uint32Array(n);
    this.#state = new Uint8Array(n);
    this.#count = new Uint16Array(n);
    this.#epoch = new Uint32Array(n);
    this.#time = new Float64Array(n);
  }

  /**
   * The tuple `key[at, at + len)` was offered in `epoch` at `nowMs`: true
   * when it should be added now (it is then remembered as added).
   */
  admit(key: Uint8Array, at: number, len: number, epoch: number, nowMs: number): boolean {
    const h = fnv1a(key, at, len);
    const s = (h ^ (h >>> 15)) & this.#mask;
    let state = this.#state[s];
    if (state !== EMPTY && (this.#hash[s] !== h || this.#epoch[s] !== epoch)) state = EMPTY;
    // An element added long enough ago has timed out in the kernel: start over.
    if (state === ADDED && nowMs >= this.#time[s]) state = EMPTY;
    // A first sighting too old to pair with this one (a tuple seen once per timeout).
    if (state === SEEN && nowMs - this.#time[s] >= this.timeoutMs) state = EMPTY;
    if (state === ADDED) return false;
    const count = state === SEEN ? this.#count[s] + 1 : 1;
    if (count < this.minPackets) {
      this.#hash[s] = h;
      this.#epoch[s] = epoch;
      this.#state[s] = SEEN;
      this.#count[s] = count;
      if (state === EMPTY) this.#time[s] = nowMs;
      return false;
    }
    this.#hash[s] = h;
    this.#epoch[s] = epoch;
    this.#state[s] = ADDED;
    this.#time[s] = nowMs + this.timeoutMs;
    return true;
  }

  /** The tuple of an add that failed: forget it, so it is offered again. */
  forget(key: Uint8Array, at: number, len: number): void {
    const h = fnv1a(key, at, len);
    const s = (h ^ (h >>> 15)) & this.#mask;
    if (this.#hash[s] === h) this.#state[s] = EMPTY;
  }
}

/** Counts the map's elements: adds per 100 ms, dropped when they time out or at a flush. */
export class ElementClock {
  static readonly STEP_MS = 100;
  readonly #counts: Float64Array;
  readonly #stamps: Float64Array;

  /** Elements live `timeoutMs`. */
  constructor(readonly timeoutMs: number) {
    const n = Math.ceil(timeoutMs / ElementClock.STEP_MS) + 1;
    this.#counts = new Float64Array(n);
    this.#stamps = new Float64Array(n).fill(-1);
  }

  /** `n` elements were added at `nowMs`. */
  added(n: number, nowMs: number): void {
    const step = Math.floor(nowMs / ElementClock.STEP_MS);
    const i = step % this.#counts.length;
    if (this.#stamps[i] !== step) {
      this.#stamps[i] = step;
      this.#counts[i] = 0;
    }
    this.#counts[i] += n;
  }

  /** Every element is gone (a flush). */
  clear(): void {
    this.#stamps.fill(-1);
  }

  /** Elements still in the map at `nowMs` (an element added in a step counts until the step's end + timeout). */
  count(nowMs: number): number {
    const oldest = Math.floor((nowMs - this.timeoutMs) / ElementClock.STEP_MS);
    let n = 0;
    for (let i = 0; i < this.#counts.length; i++) {
      if (this.#stamps[i] >= oldest) n += this.#counts[i];
    }
    return n;
  }
}
