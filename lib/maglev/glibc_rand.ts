/**
 * glibc's `rand()` (TYPE_3 additive feedback generator) so that Maglev
 * permutation rows match those written by nfqlb 1.2.0, which calls `rand()`
 * unseeded (seed 1) for every `init` (docs/COMPATIBILITY.md#maglev).
 *
 * @example
 * ```ts
 * import { GlibcRand } from "./glibc_rand.ts";
 * const r = new GlibcRand();
 * r.next(); // 1804289383
 * r.next(); // 846930886
 * ```
 * @module
 */

const RING = 34;
const WARMUP = 310;

/** A deterministic stream of glibc `rand()` outputs for a seed. */
export class GlibcRand {
  #r = new Uint32Array(RING);
  #k = 0;

  /** Start the sequence glibc's `srand(seed)` starts (seed 1 = never seeded). */
  constructor(seed = 1) {
    const r = this.#r;
    let s = seed | 0;
    r[0] = s;
    for (let i = 1; i < 31; i++) {
      // Park–Miller minimal standard by Schrage's method, as glibc computes it.
      const hi = Math.trunc(s / 127773);
      const lo = s % 127773;
      s = 16807 * lo - 2836 * hi;
      if (s < 0) s += 2147483647;
      r[i] = s;
    }
    for (let i = 31; i < RING; i++) r[i] = r[i - 31];
    this.#k = RING;
    for (let i = 0; i < WARMUP; i++) this.#step();
  }

  #step(): number {
    const r = this.#r;
    const k = this.#k++;
    const v = (r[(k - 31) % RING] + r[(k - 3) % RING]) >>> 0;
    r[k % RING] = v;
    return v;
  }

  /** The next output, a 31-bit non-negative integer. */
  next(): number {
    return this.#step() >>> 1;
  }
}
