/**
 * `primeBelow`: the Maglev table size for a requested M (docs/COMPATIBILITY.md#maglev).
 *
 * @example
 * ```ts
 * import { primeBelow } from "./prime.ts";
 * primeBelow(1000); // 997
 * primeBelow(4000000000); // 993997, the largest M
 * ```
 * @module
 */

/** Inputs at or above this are clamped to it (997², so trial division by primes ≤ 997 suffices). */
const PRIME_BELOW_CAP = 994009;

const SMALL_ODD_PRIMES: readonly number[] = (() => {
  const out: number[] = [];
  for (let p = 3; p <= 997; p += 2) {
    let prime = true;
    for (const q of out) {
      if (q * q > p) break;
      if (p % q === 0) {
        prime = false;
        break;
      }
    }
    if (prime) out.push(p);
  }
  return out;
})();

function isOddPrime(n: number): boolean {
  for (const p of SMALL_ODD_PRIMES) {
    if (p * p > n) return true;
    if (n % p === 0) return false;
  }
  return true;
}

/** The largest prime ≤ `n` (an unsigned 32-bit value), capped at 993997; `undefined` for 0 and 1. */
export function primeBelow(n: number): number | undefined {
  if (n >= PRIME_BELOW_CAP) n = PRIME_BELOW_CAP;
  if (n < 2) return undefined;
  if (n < 4) return n;
  if (n % 2 === 0) n -= 1;
  while (!isOddPrime(n)) n -= 2;
  return n;
}
