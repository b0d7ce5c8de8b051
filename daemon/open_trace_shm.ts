/**
 * Map the `nfqlb-trace` object (docs/COMPATIBILITY.md#shared-memory), creating it with its defaults if
 * absent, for `loglevel`, `trace` and the daemons' threads.
 * @module
 */
import { LibcError } from "../ffi/libc.ts";
import { openOrCreateShm } from "../ffi/shm.ts";
import {
  initTraceShm,
  TRACE_OFF_LOGLEVEL,
  TRACE_OFF_MASK,
  TRACE_SHM_NAME,
  TRACE_SHM_SIZE,
} from "../lib/trace/shm_layout.ts";
import { ShmCreateError, ShmSizeError } from "./errors.ts";

/** Index of the log level (i32) in {@link TraceShm.words}. */
export const LOGLEVEL_WORD: number = TRACE_OFF_LOGLEVEL >> 2;
/** Index of the trace mask (u32, read with `>>> 0`) in {@link TraceShm.words}. */
export const MASK_WORD: number = TRACE_OFF_MASK >> 2;

/** The mapped object as two 32-bit words, and the function that unmaps it. */
export interface TraceShm {
  readonly words: Int32Array;
  close(): void;
}

/**
 * Map `nfqlb-trace` read-write; throws {@link ShmCreateError} when it cannot
 * be created and {@link ShmSizeError} when it is too small.
 */
export function openTraceShm(): TraceShm {
  let m;
  try {
    m = openOrCreateShm(TRACE_SHM_NAME, TRACE_SHM_SIZE, initTraceShm);
  } catch (e) {
    if (e instanceof LibcError) throw new ShmCreateError(TRACE_SHM_NAME, e.message);
    throw e;
  }
  if (m.size < TRACE_SHM_SIZE) {
    m.close();
    throw new ShmSizeError(TRACE_SHM_NAME, m.size);
  }
  return { words: new Int32Array(m.buffer, 0, 2), close: () => m.close() };
}
