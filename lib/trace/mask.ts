/**
 * Trace mask bits, `--selection` names and the trace sink the per-packet
 * deciders write to (docs/COMPATIBILITY.md#trace-and-log). The mask lives in the `nfqlb-trace`
 * object; a daemon copies it into {@link TraceSink.mask} once per batch, so
 * with tracing off a trace point costs one field read and a branch.
 *
 * @example
 * ```ts
 * import { formatMask, selectionMask } from "./mask.ts";
 * formatMask(selectionMask("packet,frag,flows")); // "0x00000046"
 * ```
 * @module
 */

/** Copies of log lines. */
export const TRACE_LOG = 0x01;
/** Per-packet decisions. */
export const TRACE_PACKET = 0x02;
/** Fragment handling. */
export const TRACE_FRAG = 0x04;
/** Flow control requests and replies. */
export const TRACE_FLOW_CONF = 0x08;
/** SCTP over UDP. */
export const TRACE_SCTP = 0x10;
/** Target tables mapped and unmapped. */
export const TRACE_TARGET = 0x20;
/** Trace-flow matches. */
export const TRACE_FLOWS = 0x40;

/** `--selection` names and their bits (docs/COMPATIBILITY.md#trace-and-log). */
export const TRACE_SELECTION: Readonly<Record<string, number>> = {
  log: TRACE_LOG,
  packet: TRACE_PACKET,
  frag: TRACE_FRAG,
  "flow-conf": TRACE_FLOW_CONF,
  sctp: TRACE_SCTP,
  target: TRACE_TARGET,
  flows: TRACE_FLOWS,
};

/** The mask of a comma-separated `--selection` list; unknown names add nothing (as 1.2.0). */
export function selectionMask(list: string): number {
  let m = 0;
  for (const name of list.split(",")) {
    if (Object.hasOwn(TRACE_SELECTION, name)) m |= TRACE_SELECTION[name];
  }
  return m >>> 0;
}

/** `0x%08x` of a mask. */
export function formatMask(mask: number): string {
  return "0x" + (mask >>> 0).toString(16).padStart(8, "0");
}

/** Where trace lines go; `mask` is the current trace mask. */
export interface TraceSink {
  /** Current mask (bits above); a trace point checks its bit before building a line. */
  mask: number;
  /** Emit one line (without newline). */
  line(text: string): void;
  /**
   * Current log level (word 0 of `nfqlb-trace`; 6 = INFO, see
   * docs/COMPATIBILITY.md#trace-and-log); a log point checks it before
   * building a line. Absent: no logging.
   */
  level?: number;
  /**
   * Emit one log line (without newline, without level) to the daemon's stderr; `level` is one of
   * `lib/log/levels.ts` (default warning).
   */
  log?(text: string, level?: number): void;
}

/** A sink that is always off. */
export const NO_TRACE: TraceSink = { mask: 0, line: () => {} };
