/**
 * The nearest known name to a mistyped one, for "did you mean" hints: option names mix `_` and
 * `-` (`--promiscuous_ping`, `--fastpath-min-packets`), so the two count as the same character,
 * and a small edit distance (insertions, deletions, substitutions, adjacent swaps) is forgiven.
 *
 * @example
 * ```ts
 * import { nearestName } from "./nearest.ts";
 * nearestName("promiscuous-ping", ["help", "promiscuous_ping"]); // "promiscuous_ping"
 * nearestName("xyz", ["help", "shm"]); // undefined
 * ```
 * @module
 */

/** `s` with `-` as `_` and in lower case: the spelling differences that are never meant. */
function fold(s: string): string {
  return s.replaceAll("-", "_").toLowerCase();
}

/** Optimal string alignment distance (Levenshtein plus adjacent transpositions). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    d.push([i]);
    for (let j = 1; j <= b.length; j++) d[i].push(i === 0 ? j : 0);
  }
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        v = Math.min(v, d[i - 2][j - 2] + 1);
      }
      d[i][j] = v;
    }
  }
  return d[a.length][b.length];
}

/**
 * The name of `names` nearest to `typed`, or undefined when none is near: the same after
 * folding `-`/`_` and case, else at most one edit for short names (up to 4 characters), two
 * for longer ones, or `typed` (4 characters or more) being a prefix of exactly one name after
 * folding. Ties go to the first name in `names`.
 */
export function nearestName(typed: string, names: readonly string[]): string | undefined {
  const t = fold(typed);
  if (t === "") return undefined;
  const exact = names.find((n) => fold(n) === t);
  if (exact !== undefined) return exact;
  const prefixed = names.filter((n) => fold(n).startsWith(t));
  if (t.length >= 4 && prefixed.length === 1) return prefixed[0];
  const limit = t.length <= 4 ? 1 : 2;
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const n of names) {
    const d = editDistance(t, fold(n));
    if (d < bestDistance) {
      best = n;
      bestDistance = d;
    }
  }
  return best;
}
