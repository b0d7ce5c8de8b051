/**
 * Map a target table from shared memory and validate it, with the errors
 * the CLI prints (`FAILED mapSharedData: <name>` as in 1.2.0, plus the
 * reason when the object exists but is not a valid table).
 * @module
 */
import { MaglevTable, TableFormatError } from "../lib/maglev/table.ts";
import { openShm } from "../ffi/shm.ts";
import { LibcError } from "../ffi/libc.ts";
import { die } from "../cli/command.ts";

/** A mapped, validated table and the function that unmaps it. */
export interface OpenTable {
  readonly table: MaglevTable;
  close(): void;
}

/** Map and validate the table `name`; dies with a message naming it on failure. */
export function openTable(name: string, writable: boolean): OpenTable {
  let mapping;
  try {
    mapping = openShm(name, writable);
  } catch (e) {
    if (e instanceof LibcError) die(`FAILED mapSharedData: ${name}`);
    throw e;
  }
  try {
    return { table: MaglevTable.view(mapping.buffer), close: () => mapping.close() };
  } catch (e) {
    mapping.close();
    if (e instanceof TableFormatError) {
      die(`FAILED mapSharedData: ${name}; not a valid target table: ${e.message}`);
    }
    throw e;
  }
}
