/**
 * A mutex in one 32-bit word of shared memory, for the few structures that
 * several worker threads update together (the fragment table,
 * docs/ARCHITECTURE.md). Uncontended, `lock` is one compare-and-swap and
 * `unlock` one atomic subtraction; a thread that finds the word taken spins
 * briefly, then sleeps in `Atomics.wait` until the holder wakes it (the
 * three-state futex mutex: 0 free, 1 held, 2 held with sleepers).
 *
 * Not re-entrant: a thread that locks twice without unlocking waits forever.
 * Keep the held section short and free of calls that could block.
 *
 * @example
 * ```ts
 * import { lockWord, unlockWord } from "./mutex.ts";
 * const word = new Int32Array(new SharedArrayBuffer(4));
 * lockWord(word, 0);
 * try {
 *   // ... update the shared structure ...
 * } finally {
 *   unlockWord(word, 0);
 * }
 * console.log(word[0]); // 0: free again
 * ```
 * @module
 */

/** Spins on a taken word before going to sleep (a held section is a few hundred ns). */
const SPINS = 64;

/** Take the mutex at `words[index]`, waiting as long as it takes. */
export function lockWord(words: Int32Array, index: number): void {
  let c = Atomics.compareExchange(words, index, 0, 1);
  if (c === 0) return;
  for (let i = 0; i < SPINS; i++) {
    if (Atomics.load(words, index) === 0) {
      c = Atomics.compareExchange(words, index, 0, 1);
      if (c === 0) return;
    }
  }
  if (c !== 2) c = Atomics.exchange(words, index, 2);
  while (c !== 0) {
    Atomics.wait(words, index, 2);
    c = Atomics.exchange(words, index, 2);
  }
}

/** Release the mutex at `words[index]` (taken by this thread), waking one sleeper if any. */
export function unlockWord(words: Int32Array, index: number): void {
  if (Atomics.sub(words, index, 1) !== 1) {
    Atomics.store(words, index, 0);
    Atomics.notify(words, index, 1);
  }
}
