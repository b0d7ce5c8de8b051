/**
 * The keys the writer has added to one map since the map was last emptied, so that the map
 * can be emptied later in small steps (removal batches of a few hundred keys) instead of one
 * flush, whose cost grows with the map and holds nf_tables' lock all along
 * (docs/FASTPATH.md). Bounded: at most `capacity` keys between two times the log is taken
 * empty; a key that does not fit sets {@link KeyLog.overflowed}, and the map must then be
 * flushed whole (elements that timed out and were added again count twice).
 *
 * @example
 * ```ts
 * import { KeyLog } from "./key_log.ts";
 * const log = new KeyLog(4, 2);
 * log.add(Uint8Array.from([1, 2, 3, 4]), 0);
 * log.pending; // 1
 * log.take(10); // 1: the first key is log.bytes[0, 4)
 * log.pending; // 0
 * ```
 * @module
 */

/** Keys of one length, appended, then taken from the front. */
export class KeyLog {
  /** The keys: key `i` of the last {@link take} is `bytes[(from + i) * keyLen, ...)`. */
  bytes: Uint8Array;
  #count = 0;
  #taken = 0;
  /** Index of the first key the last {@link take} returned. */
  from = 0;
  /** A key did not fit: the log does not name every element of the map. */
  overflowed = false;

  /** Keys of `keyLen` bytes, at most `capacity` of them. */
  constructor(readonly keyLen: number, readonly capacity: number) {
    this.bytes = new Uint8Array(keyLen * Math.min(capacity, 1024));
  }

  /** Keys added and not taken yet. */
  get pending(): number {
    return this.#count - this.#taken;
  }

  /** Append `key[at, at + keyLen)`; false (and {@link overflowed}) when the log is full. */
  add(key: Uint8Array, at: number): boolean {
    if (this.#count >= this.capacity) {
      this.overflowed = true;
      return false;
    }
    const need = (this.#count + 1) * this.keyLen;
    if (need > this.bytes.length) {
      const grown = new Uint8Array(Math.min(this.bytes.length * 2, this.capacity * this.keyLen));
      grown.set(this.bytes);
      this.bytes = grown;
    }
    this.bytes.set(key.subarray(at, at + this.keyLen), this.#count * this.keyLen);
    this.#count++;
    return true;
  }

  /**
   * Take up to `n` keys from the front (see {@link from}; valid until the next {@link add});
   * returns how many.
   */
  take(n: number): number {
    const k = Math.min(n, this.pending);
    this.from = this.#taken;
    this.#taken += k;
    if (this.#taken === this.#count) this.#taken = this.#count = 0;
    return k;
  }

  /** Forget every key (the map was emptied otherwise). */
  clear(): void {
    this.#count = this.#taken = 0;
    this.overflowed = false;
  }
}
