/**
 * Map a target table from shared memory and validate it. Failures are a
 * {@link TableOpenError} (`FAILED mapSharedData: <name>` as in 1.2.0, plus the
 * reason when the object exists but is not a valid table).
 * @module
 */
import { MaglevTable, TableFormatError } from "../lib/maglev/table.ts";
import { openShm } from "../ffi/shm.ts";
import { LibcError } from "../ffi/libc.ts";
import { TableOpenError } from "./errors.ts";

/** A mapped, validated table and the function that unmaps it. */
export interface OpenTable {
  readonly table: MaglevTable;
  close(): void;
}

/** Map and validate the table `name`; throws {@link TableOpenError} on failure. */
export function openTable(name: string, writable: boolean): OpenTable {
  let mapping;
  try {
    mapping = openShm(name, writable);
  } catch (e) {
    if (e instanceof LibcError) throw new TableOpenError(name, "map", e.message);
    throw e;
  }
  try {
    return { table: MaglevTable.view(mapping.buffer), close: () => mapping.close() };
  } catch (e) {
    mapping.close();
    if (e instanceof TableFormatError) throw new TableOpenError(name, "format", e.message);
    throw e;
  }
}
