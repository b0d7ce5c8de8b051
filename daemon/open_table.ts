/**
 * Map a target table from shared memory and validate it. Failures are a
 * {@link TableOpenError} (`FAILED mapSharedData: <name>` as in 1.2.0, plus the
 * reason when the object exists but is not a valid table).
 * @module
 */
import { MaglevTable, TableFormatError } from "../lib/maglev/table.ts";
import { openShm, type ShmOwner } from "../ffi/shm.ts";
import { LibcError } from "../ffi/libc.ts";
import { ShmUntrustedError, TableOpenError } from "./errors.ts";
import { forDaemon } from "./shm_denied.ts";
import type { TargetRegistry } from "../lib/flow/store.ts";
import type { TableOption } from "../lib/hints/shm.ts";

/** A mapped, validated table and the function that unmaps it. */
export interface OpenTable {
  readonly table: MaglevTable;
  /** Owner and permission bits of the object (docs/COMPATIBILITY.md#shared-memory). */
  readonly owner: ShmOwner;
  /** Bytes mapped. */
  readonly size: number;
  /** The object's current size (`fstat`); below `size` once another process truncated it. */
  objectSize(): number;
  close(): void;
}

/** Group- and other-write permission bits. */
const GROUP_OTHER_WRITE = 0o022;

/** Whether users other than the owner may write the object (and so steer or truncate it). */
export function writableByOthers(owner: Pick<ShmOwner, "mode">): boolean {
  return (owner.mode & GROUP_OTHER_WRITE) !== 0;
}

/**
 * Why an existing object must not be adopted (`init`'s tables, `nfqlb-trace`, the fast path's
 * status objects), or undefined when it may: the owner must be root or `ownUid` (or
 * `alsoTrusted`, when given), and nobody else may write it (docs/COMPATIBILITY.md#shared-memory).
 */
export function adoptProblem(
  owner: Pick<ShmOwner, "uid" | "mode">,
  ownUid: number,
  alsoTrusted?: number,
): string | undefined {
  if (owner.uid !== 0 && owner.uid !== ownUid && owner.uid !== alsoTrusted) {
    const extra = alsoTrusted === undefined || alsoTrusted === ownUid || alsoTrusted === 0
      ? ""
      : ` or uid ${alsoTrusted}`;
    return `owned by uid ${owner.uid}, expected root or uid ${ownUid}${extra}`;
  }
  if (writableByOthers(owner)) {
    return `writable by group or others (mode ${owner.mode.toString(8).padStart(4, "0")})`;
  }
  return undefined;
}

/** The warning a daemon prints once at start for a table others may write. */
export function writableTableWarning(name: string, owner: ShmOwner): string {
  return `WARNING: table ${name} is writable by group or others ` +
    `(mode ${owner.mode.toString(8).padStart(4, "0")}): they can steer or stop the traffic`;
}

/** Names already warned about in this thread. */
const warned = new Set<string>();

/**
 * Whether this thread reports writable tables: the main thread (the daemons map `--tshm` and
 * `--lbshm` there at start) and the flowlb control thread (it maps each flow's target first);
 * the queue threads map the same tables again and stay quiet, so each table is reported once.
 */
function reportsTables(): boolean {
  const name = (globalThis as { name?: unknown }).name;
  const inWorker = typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !==
    "undefined";
  return !inWorker || name === "control";
}

/**
 * Map and validate the table `name`; throws {@link TableOpenError} on failure. `check` sees the
 * object's owner and mode (`fstat`) before anything is mapped; what it throws propagates. The first time
 * a thread that reports tables maps a table that group or others may write, a warning goes to
 * stderr ({@link writableTableWarning}).
 */
export function openTable(
  name: string,
  writable: boolean,
  check?: (owner: ShmOwner) => void,
): OpenTable {
  let mapping;
  try {
    mapping = openShm(name, writable, check);
  } catch (e) {
    if (e instanceof LibcError) throw new TableOpenError(name, "map", e.message, e.errno);
    throw e;
  }
  if (writableByOthers(mapping.owner) && !warned.has(name) && reportsTables()) {
    warned.add(name);
    Deno.stderr.writeSync(
      new TextEncoder().encode(writableTableWarning(name, mapping.owner) + "\n"),
    );
  }
  try {
    return {
      table: MaglevTable.view(mapping.buffer),
      owner: mapping.owner,
      size: mapping.size,
      objectSize: () => mapping.objectSize(),
      close: () => mapping.close(),
    };
  } catch (e) {
    mapping.close();
    if (e instanceof TableFormatError) throw new TableOpenError(name, "format", e.message);
    throw e;
  }
}

/**
 * Check at start-up that table `name`, given with `--<option>` (lb's `--tshm`, `--lbshm`),
 * maps and is valid; the {@link TableOpenError} thrown says the fix for that option.
 */
export function checkTable(name: string, option: TableOption): void {
  try {
    openTable(name, false).close();
  } catch (e) {
    if (e instanceof TableOpenError) throw forDaemon(e.forOption(option));
    throw e;
  }
}

/**
 * Why target `name` of a flow cannot be used now, as one line for the control reply's note and
 * the daemon's log (`table [NAME]: /dev/shm/NAME: ...; create it with: nfqlb init ...`), or
 * undefined when it maps and is valid.
 */
export function flowTargetProblem(name: string): string | undefined {
  try {
    openTable(name, false).close();
    return undefined;
  } catch (e) {
    if (!(e instanceof TableOpenError)) throw e;
    return `table [${name}]: ${daemonTableProblem(e)}`;
  }
}

/**
 * Why a daemon cannot use the table of `e`, with the fix, as one line
 * (`/dev/shm/NAME: No such file or directory; create it with: nfqlb init ...`, or for a table of
 * another user that the daemon's uid must own): for the control reply's note, the log and
 * `/healthz`.
 */
export function daemonTableProblem(e: TableOpenError): string {
  forDaemon(e);
  return e.problem === "map"
    ? e.hint!.trimStart()
    : `not a valid target table: ${e.detail}; initialise it with: nfqlb init --shm=${e.shm}`;
}

/**
 * The active fwmarks of table `name`, in slot order (for `doctor` and `ruleset`).
 * Throws a {@link TableOpenError} when it cannot be mapped.
 */
export function activeFwmarks(name: string): number[] {
  const t = openTable(name, false);
  try {
    return [...t.table.active].filter((fw) => fw >= 0);
  } finally {
    t.close();
  }
}

/**
 * Whether table `name` exists, is valid, and is trusted: owned by root or this uid and not
 * writable by others (the rule of {@link adoptProblem}). Returns undefined when it is, else why
 * not (`cannot be mapped: ...`, `not a valid table: ...` or `untrusted: ...`). A pending flow (D58) becomes a
 * normal flow only on such a table: after a reboot any local user could otherwise create the
 * table a restored flow waits for, with fwmarks of their choosing, before `nfqlb init` does.
 */
export function trustedTableProblem(name: string): string | undefined {
  let untrusted: string | undefined;
  // The owner is checked on the opened object before it is mapped: another user's object is
  // never mapped (they could truncate it under the read: SIGBUS).
  const check = (owner: ShmOwner) => {
    untrusted = adoptProblem(owner, Deno.uid() ?? 0);
    if (untrusted !== undefined) throw new ShmUntrustedError(name, untrusted);
  };
  try {
    openTable(name, false, check).close();
    return undefined;
  } catch (e) {
    if (untrusted !== undefined) return `untrusted: ${untrusted}`;
    if (!(e instanceof TableOpenError)) throw e;
    forDaemon(e);
    return e.problem === "map" ? `cannot be mapped: ${e.detail}` : `not a valid table: ${e.detail}`;
  }
}

/**
 * The flow store's target registry of the control thread: a target exists when its table maps
 * and is valid now (the queue threads map their own copies).
 */
export const mappableTargets: TargetRegistry = {
  acquire(name) {
    try {
      openTable(name, false).close();
      return true;
    } catch {
      return false;
    }
  },
  release() {},
};
