/**
 * The `nfqlb-trace` shared-memory object (docs/COMPATIBILITY.md#shared-memory): the daemons' log level
 * and trace mask, shared by every nfqlb process on the host.
 *
 * | offset | type | field      | initial |
 * |--------|------|------------|---------|
 * | 0      | i32  | log level  | 5       |
 * | 4      | u32  | trace mask | 0       |
 * @module
 */

/** Fixed name of the object. */
export const TRACE_SHM_NAME = "nfqlb-trace";
/** Size in bytes. */
export const TRACE_SHM_SIZE = 8;
/** Byte offset of the log level (i32). */
export const TRACE_OFF_LOGLEVEL = 0;
/** Byte offset of the trace mask (u32). */
export const TRACE_OFF_MASK = 4;
/** Initial log level (NOTICE). */
export const DEFAULT_LOGLEVEL = 5;

/** Write the initial contents into a new object. */
export function initTraceShm(buffer: ArrayBuffer): void {
  const dv = new DataView(buffer);
  dv.setInt32(TRACE_OFF_LOGLEVEL, DEFAULT_LOGLEVEL, true);
  dv.setUint32(TRACE_OFF_MASK, 0, true);
}
