/**
 * Truncated tables under a running daemon (docs/COMPATIBILITY.md#shared-memory): a queue thread
 * checks, between two batches and at most every {@link CHECK_INTERVAL_MS}, whether the objects
 * it maps shrank below their mapping (reading past the end raises SIGBUS). A shrunk table is
 * replaced by {@link noTargetTable} (every lookup: "no target") before it is unmapped.
 * @module
 */
import { MaglevTable, MIN_M, tableSize } from "../lib/maglev/table.ts";
import type { OpenTable } from "./open_table.ts";

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

/** A table of the smallest size in process memory whose every lookup answers "no target". */
export function noTargetTable(): MaglevTable {
  const t = MaglevTable.format(new ArrayBuffer(tableSize(MIN_M, 1)), MIN_M, 1, -1);
  t.lookup.fill(-1);
  t.active.fill(-1);
  return t;
}
