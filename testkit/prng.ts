/**
 * A small seeded pseudo-random generator (mulberry32) for reproducible
 * property tests, fuzzing and benchmark inputs.
 *
 * @example
 * ```ts
 * const rnd = prng(1);
 * rnd(); // a number in [0, 1), the same sequence for the same seed
 * ```
 * @module
 */

/** A generator of numbers in [0, 1) determined by `seed`. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
