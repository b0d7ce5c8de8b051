/**
 * Maglev consistent hashing over a {@link MaglevTable} (docs/COMPATIBILITY.md#maglev):
 * permutation rows, populate, target activation and packet lookup.
 *
 * Updates never expose a half-built lookup table: the new table is computed
 * privately, then only the entries that change are stored, each with one
 * aligned 32-bit write, and slots are activated before and deactivated after
 * the lookup entries that refer to them change. A concurrent reader always
 * sees, per entry, the old or the new value (unlike 1.2.0, which fills the
 * live table with −1 first). A reader that loaded a lookup entry just before
 * it changed still reads the slot's fwmark afterwards; the optional
 * `beforeDeactivate` hook (a short grace period, supplied by the writer) lets
 * such in-flight lookups finish before deactivated slots are cleared.
 *
 * @example
 * ```ts
 * import { MaglevTable, tableSize } from "./table.ts";
 * import { activate, fwmarkFor, initTable } from "./maglev.ts";
 * const t = initTable(new ArrayBuffer(tableSize(7, 3)), 7, 3, 0);
 * activate(t, [10, 20]);
 * Array.from(t.lookup); // [0, 0, 1, 1, 1, 0, 0]
 * fwmarkFor(t, 12345);  // 10 or 20
 * ```
 * @module
 */
import { GlibcRand } from "./glibc_rand.ts";
import { MaglevTable } from "./table.ts";

/** Value of an inactive slot and of an unassigned lookup entry. */
export const INACTIVE = -1;

/**
 * Format `buffer` as a fresh table: header, permutation rows from glibc
 * `rand()` seeded with 1 (offset first, then skip, per slot), all slots
 * inactive, all lookup entries −1. The bytes equal what 1.2.0's `init`
 * writes for every M ≤ 65521; above that the rows are exact permutations.
 */
export function initTable(
  buffer: ArrayBuffer,
  m: number,
  n: number,
  ownFwmark: number,
): MaglevTable {
  const t = MaglevTable.format(buffer, m, n, ownFwmark);
  const rand = new GlibcRand(1);
  const perm = t.permutation;
  for (let i = 0; i < n; i++) {
    const offset = rand.next() % m;
    const skip = rand.next() % (m - 1) + 1;
    const row = i * m;
    let v = offset;
    for (let j = 0; j < m; j++) {
      perm[row + j] = v;
      v += skip;
      if (v >= m) v -= m;
    }
  }
  t.active.fill(INACTIVE);
  t.lookup.fill(INACTIVE);
  return t;
}

/**
 * Compute the lookup table for `active` into `out` (length m). Slots take
 * turns in index order, each claiming its next preferred free bucket. Rows
 * that are not permutations (tables written by 1.2.0 for M > 65521) cannot
 * make it loop or read past a row: an exhausted row just stops claiming.
 */
export function populate(
  permutation: Uint32Array,
  active: Int32Array,
  m: number,
  out: Int32Array,
): void {
  out.fill(INACTIVE);
  const slots: number[] = [];
  for (let i = 0; i < active.length; i++) if (active[i] >= 0) slots.push(i);
  if (slots.length === 0) return;
  const next = new Uint32Array(active.length);
  let filled = 0;
  for (;;) {
    let progressed = false;
    for (let s = 0; s < slots.length; s++) {
      const i = slots[s];
      const row = i * m;
      let k = next[i];
      let c = 0;
      for (; k < m; k++) {
        c = permutation[row + k];
        if (c < m && out[c] < 0) break;
      }
      if (k >= m) {
        next[i] = m;
        continue;
      }
      out[c] = i;
      next[i] = k + 1;
      progressed = true;
      if (++filled === m) return;
    }
    if (!progressed) return;
  }
}

/** Called between publishing a new lookup table and clearing deactivated slots. */
export type GraceHook = () => void;

/**
 * Make `want` the table's active array: rebuild the lookup privately, then
 * store (1) slots that become active or change fwmark, (2) changed lookup
 * entries, then call `beforeDeactivate` if a slot is being cleared, and
 * (3) store slots that become inactive. Returns whether anything changed.
 */
export function commitActive(
  t: MaglevTable,
  want: Int32Array,
  beforeDeactivate?: GraceHook,
): boolean {
  const active = t.active;
  let changed = false;
  for (let i = 0; i < t.n; i++) if (active[i] !== want[i]) changed = true;
  if (!changed) return false;
  const lookup = new Int32Array(t.m);
  populate(t.permutation, want, t.m, lookup);
  for (let i = 0; i < t.n; i++) {
    if (want[i] >= 0 && active[i] !== want[i]) active[i] = want[i];
  }
  const live = t.lookup;
  for (let j = 0; j < t.m; j++) if (live[j] !== lookup[j]) live[j] = lookup[j];
  let clearing = false;
  for (let i = 0; i < t.n; i++) if (active[i] !== want[i]) clearing = true;
  if (clearing && beforeDeactivate !== undefined) beforeDeactivate();
  for (let i = 0; i < t.n; i++) if (active[i] !== want[i]) active[i] = want[i];
  return true;
}

/**
 * Add fwmarks (docs/COMPATIBILITY.md#command-line `activate`): each goes into the first inactive slot
 * unless already present; when the table is full it is ignored. Rebuilds once.
 */
export function activate(
  t: MaglevTable,
  fwmarks: readonly number[],
  beforeDeactivate?: GraceHook,
): boolean {
  const want = t.active.slice();
  for (const fw of fwmarks) {
    let free = -1;
    let present = false;
    for (let i = 0; i < t.n; i++) {
      if (want[i] === fw) {
        present = true;
        break;
      }
      if (free < 0 && want[i] < 0) free = i;
    }
    if (!present && free >= 0) want[free] = fw;
  }
  return commitActive(t, want, beforeDeactivate);
}

/** Remove fwmarks: the first slot holding each becomes inactive. Rebuilds once. */
export function deactivate(
  t: MaglevTable,
  fwmarks: readonly number[],
  beforeDeactivate?: GraceHook,
): boolean {
  const want = t.active.slice();
  for (const fw of fwmarks) {
    const i = want.indexOf(fw);
    if (i >= 0) want[i] = INACTIVE;
  }
  return commitActive(t, want, beforeDeactivate);
}

/**
 * Set slot `index` to `fw` (no duplicate check; negative deactivates), as
 * `activate --index`. The caller checks `index < n`.
 */
export function activateIndex(
  t: MaglevTable,
  index: number,
  fw: number,
  beforeDeactivate?: GraceHook,
): boolean {
  const want = t.active.slice();
  want[index] = fw;
  return commitActive(t, want, beforeDeactivate);
}

/** Deactivate slot `index` if it is active, as `deactivate --index`. */
export function deactivateIndex(
  t: MaglevTable,
  index: number,
  beforeDeactivate?: GraceHook,
): boolean {
  if (t.active[index] < 0) return false;
  const want = t.active.slice();
  want[index] = INACTIVE;
  return commitActive(t, want, beforeDeactivate);
}

/** Block the calling thread for `ms` milliseconds (a grace period between table updates). */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** The fwmark for a packet hash (u32), or a negative value for "no target". */
export function fwmarkFor(t: MaglevTable, hash: number): number {
  const a = t.lookup[hash % t.m];
  return a < 0 ? a : t.active[a];
}
