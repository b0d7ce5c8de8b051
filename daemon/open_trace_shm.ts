/**
 * Map the `nfqlb-trace` object (docs/COMPATIBILITY.md#shared-memory), creating it with its defaults if
 * absent, for `loglevel`, `trace` and the daemons' threads. It is created exclusively, mode 0600;
 * an existing one is used only if root or this uid owns it and nobody else may write it.
 * @module
 */
import { LibcError } from "../ffi/libc.ts";
import { EACCES, EEXIST, ENOENT } from "../ffi/constants.ts";
import { createShmExclusive, openShm, type ShmMapping, statShm } from "../ffi/shm.ts";
import {
  initTraceShm,
  TRACE_OFF_LOGLEVEL,
  TRACE_OFF_MASK,
  TRACE_SHM_NAME,
  TRACE_SHM_SIZE,
} from "../lib/trace/shm_layout.ts";
import { ShmCreateError, ShmSizeError, ShmUntrustedError } from "./errors.ts";
import { shmCreateError } from "./shm_denied.ts";
import { adoptProblem } from "./open_table.ts";

/** Index of the log level (i32) in {@link TraceShm.words}. */
export const LOGLEVEL_WORD: number = TRACE_OFF_LOGLEVEL >> 2;
/** Index of the trace mask (u32, read with `>>> 0`) in {@link TraceShm.words}. */
export const MASK_WORD: number = TRACE_OFF_MASK >> 2;
/** The environment variable that names another object than `nfqlb-trace` (see {@link traceShmName}). */
export const TRACE_SHM_ENV = "NFQLB_TRACE_SHM";

/**
 * The name of the trace object: `nfqlb-trace` (1.2.0's), or the value of `NFQLB_TRACE_SHM` when
 * it is set (it must be `nfqlb-trace.<suffix>`, so it cannot name a table or another object). `/dev/shm` is shared by every network namespace of a host, so
 * daemons that must not share a log level and trace mask (the test suite next to a running
 * nfqlb, two independent instances in one `/dev/shm`) set it for their daemons and CLI alike.
 *
 * @example
 * ```ts
 * import { traceShmName } from "./open_trace_shm.ts";
 * traceShmName().length > 0; // true
 * ```
 */
export function traceShmName(): string {
  let v: string | undefined;
  try {
    v = Deno.env.get(TRACE_SHM_ENV);
  } catch {
    v = undefined; // no permission to read the environment: the default
  }
  if (v === undefined || v === "") return TRACE_SHM_NAME;
  // Only a name of the nfqlb-trace family: the object is written (level, mask), so it must not
  // be a table or any other object.
  if (!v.startsWith(`${TRACE_SHM_NAME}.`) || v.includes("/") || v.length > 255) {
    throw new ShmCreateError(
      v,
      `${TRACE_SHM_ENV}=${v}: not a trace object's name (${TRACE_SHM_NAME}.<suffix>, no '/', ` +
        `at most 255 bytes)`,
    );
  }
  return v;
}

/** Mode of a new `nfqlb-trace`: only its owner (and root) may map it. */
export const TRACE_SHM_MODE = 0o600;

/** The mapped object as two 32-bit words, and the function that unmaps it. */
export interface TraceShm {
  readonly words: Int32Array;
  close(): void;
}

/**
 * Map `nfqlb-trace` ({@link traceShmName}, or `name`) read-write; throws {@link ShmUntrustedError} when
 * an existing object belongs to another user than root or this one or others may write it,
 * {@link ShmCreateError} when it cannot be created or opened and {@link ShmSizeError} when it
 * is too small.
 */
export function openTraceShm(name: string = traceShmName()): TraceShm {
  const uid = Deno.uid() ?? 0;
  const refuse = (owner: { uid: number; mode: number } | undefined) => {
    const problem = owner === undefined ? undefined : adoptProblem(owner, uid);
    if (problem !== undefined) throw new ShmUntrustedError(name, problem);
  };
  let m: ShmMapping | undefined;
  try {
    // Three rounds: an object removed between the exclusive create and the open is created.
    for (let round = 0; round < 3 && m === undefined; round++) {
      m = createShmExclusive(name, TRACE_SHM_SIZE, TRACE_SHM_MODE);
      if (m !== undefined) {
        initTraceShm(m.buffer);
        break;
      }
      try {
        m = openShm(name, true, refuse);
      } catch (e) {
        if (!(e instanceof LibcError)) throw e;
        if (e.errno === ENOENT) continue;
        if (e.errno === EACCES) refuse(statShm(name)); // another user's object, mode 0600
        throw e;
      }
    }
    if (m === undefined) throw new LibcError("shm_open", EEXIST);
  } catch (e) {
    if (e instanceof LibcError) {
      throw shmCreateError(
        name,
        e,
        `${TRACE_SHM_ENV}=${TRACE_SHM_NAME}.<suffix> (set the same for its commands)`,
      );
    }
    throw e;
  }
  if (m.size < TRACE_SHM_SIZE) {
    m.close();
    throw new ShmSizeError(name, m.size);
  }
  const mapping = m;
  return { words: new Int32Array(mapping.buffer, 0, 2), close: () => mapping.close() };
}
