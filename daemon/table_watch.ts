/**
 * Truncated tables under a running daemon (docs/COMPATIBILITY.md#shared-memory): a queue thread
 * checks, between two batches and at most every {@link CHECK_INTERVAL_MS}, whether the objects
 * it maps shrank below their mapping (reading past the end raises SIGBUS). A shrunk table is
 * replaced by {@link noTargetTable} (every lookup: "no target") before it is unmapped.
 * {@link WatchedTable} does that for one table of `lb`, {@link TableCache} for the tables of
 * `flowlb`'s flows.
 * @module
 */
import { MaglevTable, MIN_M, tableSize } from "../lib/maglev/table.ts";
import type { Flow } from "../lib/flow/types.ts";
import { type OpenTable, openTable } from "./open_table.ts";

/** Flows in matching order: a flow snapshot, or its matching flows (pending ones left out). */
export interface FlowsInOrder {
  readonly flows: readonly Flow[];
}

/** Least time between two checks of the mapped tables' sizes. */
export const CHECK_INTERVAL_MS = 100;

/** Whether the object behind `t` is now smaller than its mapping. */
export function isTruncated(t: OpenTable): boolean {
  try {
    return t.objectSize() < t.size;
  } catch {
    return true; // fstat of our own descriptor failed: do not trust the mapping
  }
}

/** The log line for a table found truncated. */
export function truncatedLine(name: string): string {
  return `WARNING: table ${name} was truncated: unmapped, its packets get no target`;
}

/** The log line for a truncated table mapped again. */
export function remappedLine(name: string): string {
  return `table ${name} is valid again: mapped`;
}

/** The log line for a flow's table a queue thread could not map (`why`: the error). */
export function unmappedLine(name: string, why: string): string {
  return `WARNING: table ${name} could not be mapped (${why}): its flows get no target; ` +
    `retrying every ${CHECK_INTERVAL_MS} ms`;
}

/** A table of the smallest size in process memory whose every lookup answers "no target". */
export function noTargetTable(): MaglevTable {
  const t = MaglevTable.format(new ArrayBuffer(tableSize(MIN_M, 1)), MIN_M, 1, -1);
  t.lookup.fill(-1);
  t.active.fill(-1);
  return t;
}

/**
 * Target tables of the flows, mapped once per name and unmapped when no flow uses them. A table
 * that cannot be mapped (removed since the flow was set, or a failed `mmap`) or that was truncated
 * leaves its flows without a table ("no target") and is tried again at each {@link check} until
 * it maps.
 */
export class TableCache {
  #open = new Map<string, OpenTable | undefined>();
  /** Names not mapped now (could not be mapped, or truncated): mapped again once valid. */
  #lost = new Set<string>();
  readonly #failed: (name: string, why: string) => void;

  /** `failed` hears of each table that could not be mapped for a flow set (once, not per retry). */
  constructor(failed: (name: string, why: string) => void = () => {}) {
    this.#failed = failed;
  }

  /** The table of each flow of `snapshot` (undefined: none, or not mapped now). */
  tablesFor(snapshot: FlowsInOrder): (MaglevTable | undefined)[] {
    return snapshot.flows.map((f) => {
      if (f.target === undefined) return undefined;
      if (!this.#open.has(f.target)) {
        let t: OpenTable | undefined;
        try {
          t = openTable(f.target, false);
        } catch (e) {
          // "no target" for its flows until check() maps it
          t = undefined;
          this.#lost.add(f.target);
          this.#failed(f.target, e instanceof Error ? e.message : String(e));
        }
        this.#open.set(f.target, t);
      }
      return this.#open.get(f.target)?.table;
    });
  }

  /** Unmap tables no flow of `snapshot` refers to (after the new set is in use). */
  prune(snapshot: FlowsInOrder): void {
    const used = new Set(snapshot.flows.map((f) => f.target));
    for (const [name, t] of this.#open) {
      if (!used.has(name)) {
        t?.close();
        this.#open.delete(name);
        this.#lost.delete(name);
      }
    }
  }

  /**
   * Forget truncated tables and map the ones not mapped again when valid; `log` gets one line
   * each.
   * Returns the truncated mappings (to unmap once a flow set without them is in use), or
   * undefined when nothing changed.
   */
  check(log: (text: string) => void): OpenTable[] | undefined {
    let changed = false;
    const dropped: OpenTable[] = [];
    for (const [name, t] of this.#open) {
      if (t !== undefined && isTruncated(t)) {
        dropped.push(t);
        this.#open.set(name, undefined);
        this.#lost.add(name);
        log(truncatedLine(name));
        changed = true;
      } else if (t === undefined && this.#lost.has(name)) {
        const again = tryOpen(name);
        if (again === undefined) continue;
        this.#open.set(name, again);
        this.#lost.delete(name);
        log(remappedLine(name));
        changed = true;
      }
    }
    return changed ? dropped : undefined;
  }

  close(): void {
    for (const t of this.#open.values()) t?.close();
    this.#open.clear();
  }
}

/** Map `name` if it is a valid, untruncated table now; undefined otherwise. */
function tryOpen(name: string): OpenTable | undefined {
  let t: OpenTable;
  try {
    t = openTable(name, false);
  } catch {
    return undefined;
  }
  if (!isTruncated(t)) return t;
  t.close();
  return undefined;
}

/**
 * One table of `lb` (the target or the LB tier), replaced by a "no target" table when truncated
 * and mapped again when valid (docs/COMPATIBILITY.md#shared-memory).
 */
export class WatchedTable {
  #open: OpenTable | undefined;
  constructor(
    readonly name: string,
    open: OpenTable,
    readonly use: (t: MaglevTable) => void,
  ) {
    this.#open = open;
  }

  /** Swap tables as needed; `log` gets one line per change. */
  check(log: (text: string) => void): void {
    const t = this.#open;
    if (t !== undefined) {
      if (!isTruncated(t)) return;
      this.use(noTargetTable()); // nothing reads the mapping after this
      this.#open = undefined;
      t.close();
      log(truncatedLine(this.name));
      return;
    }
    const again = tryOpen(this.name);
    if (again === undefined) return;
    this.#open = again;
    this.use(again.table);
    log(remappedLine(this.name));
  }

  close(): void {
    this.#open?.close();
    this.#open = undefined;
  }
}
