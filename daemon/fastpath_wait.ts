/**
 * The fast paths running on this host (`nfqlb stats` shows them), and what the
 * table commands do after a write when there are any (docs/FASTPATH.md): wait
 * until every running fast-path writer has compared the tables since the write
 * and switched to empty maps if they changed, so a packet sent after `activate`/`deactivate` returns is decided
 * with the new table whether it takes the queue or the kernel path. A writer
 * is found by its status object (`/dev/shm/nfqlb-fastpath.<netns>.<table>`), which it
 * creates exclusively ({@link createStatusObject}). Objects another user could have planted or
 * can write are ignored, and so are those whose process is gone or does not map them
 * ({@link openLiveFastPath}). The wait is bounded: a writer that does not answer in time is
 * reported, not waited for.
 * @module
 */
import { LibcError } from "../ffi/libc.ts";
import { EEXIST, ENOENT } from "../ffi/constants.ts";
import {
  createShmExclusive,
  openShm,
  type ShmMapping,
  type ShmOwner,
  statShm,
  unlinkShm,
} from "../ffi/shm.ts";
import { sleepSync } from "../lib/maglev/maglev.ts";
import {
  F_SCANS,
  initStatus,
  STATUS_PREFIX,
  STATUS_SIZE,
  statusPid,
  statusSleepWord,
  statusTable,
  statusValues,
} from "../lib/fastpath/status.ts";
import { adoptProblem } from "./open_table.ts";
import { DaemonError, ShmUntrustedError } from "./errors.ts";

/** A word of this process's own for {@link waitForFastPaths}' fence. */
const FENCE = new Int32Array(new SharedArrayBuffer(4));

/** Longest wait for one writer, ms. */
export const FASTPATH_WAIT_MS = 1000;
/** Mode of a status object: counters only, read by `stats` and the table commands of any user. */
export const STATUS_MODE = 0o644;

/** The status object of this process's fast path with nft table `table` (its netns, its table). */
export function fastPathStatusName(table: string): string {
  let ns = "0";
  try {
    ns = /\[(\d+)\]/.exec(Deno.readLinkSync("/proc/self/ns/net"))?.[1] ?? "0";
  } catch {
    // no /proc: one namespace
  }
  return `${STATUS_PREFIX}${ns}.${table}`;
}

/**
 * Create this daemon's status object `name` exclusively, mode 0644, for process `pid` whose
 * statistics object is `ftShm`. Call it once the nftables table is set up. An existing object
 * that another user owns, or that group or others may write, is refused with
 * {@link ShmUntrustedError}. One of root or this uid is removed first if it is stale (its
 * daemon was killed), and refused with {@link FastPathInUseError} if the process it names runs
 * and maps it: a daemon with the same table in this netns whose table is down after a failed
 * switch (its restore retries), so this one's setup could succeed. Other failures: LibcError.
 */
export function createStatusObject(name: string, pid: number, ftShm: string): ShmMapping {
  const uid = Deno.uid() ?? 0;
  // Three rounds: someone may create the name again between the removal and the create.
  for (let round = 0; round < 3; round++) {
    const m = createShmExclusive(name, STATUS_SIZE, STATUS_MODE);
    if (m !== undefined) {
      initStatus(m.buffer, pid, ftShm);
      return m;
    }
    const owner = statShm(name);
    if (owner === undefined) continue; // removed meanwhile
    const problem = adoptProblem(owner, uid);
    if (problem !== undefined) throw new ShmUntrustedError(name, problem);
    const holder = liveHolder(name);
    if (holder === "gone") continue;
    if (holder !== undefined) throw new FastPathInUseError(name, holder.pid, holder.maps);
    unlinkShm(name);
  }
  throw new LibcError("shm_open", EEXIST);
}

/** A status object belongs to a running fast path: it is not replaced. */
export class FastPathInUseError extends DaemonError {
  constructor(readonly shm: string, readonly pid: number, maps: boolean | undefined) {
    const table = statusTable(shm) ?? shm;
    super(
      maps === undefined
        ? `${shm}: process ${pid} is alive and may be the nfqlb whose fast path has table inet ` +
          `${table} in this network namespace (its memory maps cannot be read); stop it or use ` +
          `another --fastpath-table (if it is not nfqlb: rm /dev/shm/${shm})`
        : `${shm}: process ${pid} runs a fast path with table inet ${table} in this network ` +
          `namespace (its table is being created again); stop it or use another --fastpath-table`,
    );
    this.name = "FastPathInUseError";
  }
}

/**
 * Map status object `name` read-only once its owner and mode pass {@link adoptProblem} (root,
 * this uid or `trustedUid`; nobody else may write it), checked before anything is mapped.
 * Throws {@link ShmUntrustedError}, or LibcError (errno ENOENT: it does not exist; call `mmap`:
 * it is empty).
 */
export function openStatusObject(name: string, trustedUid?: number): ShmMapping {
  const uid = Deno.uid() ?? 0;
  return openShm(name, false, (owner: ShmOwner) => {
    const problem = adoptProblem(owner, uid, trustedUid);
    if (problem !== undefined) throw new ShmUntrustedError(name, problem);
  });
}

/**
 * The process that status object `name` (of root or this uid) names, if it is alive, not this
 * process, and maps the object (`maps` true) or may (undefined: its /proc maps cannot be read);
 * undefined when the object is stale; "gone" when it was removed meanwhile.
 */
function liveHolder(name: string): { pid: number; maps: boolean | undefined } | "gone" | undefined {
  let m: ShmMapping;
  try {
    m = openStatusObject(name);
  } catch (e) {
    if (e instanceof LibcError && e.errno === ENOENT) return "gone";
    if (e instanceof LibcError && e.call === "mmap") return undefined; // empty: not a status object
    throw e;
  }
  let pid: number | undefined;
  try {
    pid = statusPid(m.buffer);
  } finally {
    m.close();
  }
  // This process maps nothing of the name yet (it is about to create it): the object is a killed
  // daemon's whose pid this process now has (pid namespaces: every container's daemon is pid 1).
  if (pid === undefined || pid === Deno.pid || !alive(pid)) return undefined;
  const maps = mapsObject(pid, name);
  return maps === false ? undefined : { pid, maps };
}

/** A running fast path's status object, mapped read-only: close it when done. */
export interface LiveFastPath {
  /** Its nftables table. */
  readonly table: string;
  readonly mapping: ShmMapping;
}

/**
 * Status object `name`, mapped read-only if it belongs to a running fast path, else why it is
 * ignored: it must belong to root, this uid or `trustedUid` (the owner of the table just written,
 * or of the statistics object: a user who can write those gains nothing by planting one), nobody
 * else may write it (checked before it is mapped: a writer could truncate it under the mapping),
 * and the process it names must be alive and, where /proc lets this user see it, map it.
 */
export function openLiveFastPath(name: string, trustedUid?: number): LiveFastPath | string {
  let m: ShmMapping;
  try {
    m = openStatusObject(name, trustedUid);
  } catch (e) {
    if (e instanceof ShmUntrustedError) return e.problem;
    if (e instanceof LibcError) return e.message; // gone meanwhile, or not ours to read
    throw e;
  }
  const pid = statusPid(m.buffer);
  const problem = pid === undefined
    ? "not a status object"
    : !alive(pid)
    ? `process ${pid} is gone`
    : mapsObject(pid, name) === false
    ? `process ${pid} does not map it`
    : undefined;
  if (problem !== undefined) {
    m.close();
    return problem;
  }
  return { table: statusTable(name) ?? name.slice(STATUS_PREFIX.length), mapping: m };
}

/**
 * The status objects of the fast paths running on this host, by table name; others skipped
 * ({@link openLiveFastPath}).
 */
export function liveFastPaths(trustedUid?: number): LiveFastPath[] {
  let names: string[];
  try {
    names = [...Deno.readDirSync("/dev/shm")]
      .map((e) => e.name)
      .filter((n) => n.startsWith(STATUS_PREFIX))
      .sort();
  } catch {
    return [];
  }
  const out: LiveFastPath[] = [];
  for (const n of names) {
    const f = openLiveFastPath(n, trustedUid);
    if (typeof f !== "string") out.push(f);
  }
  return out;
}

/**
 * Wait for the running fast-path writers (see the module comment); returns
 * the nft table names of those that did not confirm within `timeoutMs`.
 * `trustedUid`: the owner of the table written (see {@link openLiveFastPath}).
 */
export function waitForFastPaths(timeoutMs = FASTPATH_WAIT_MS, trustedUid?: number): string[] {
  // The table write (plain stores) must be visible to every writer before this process reads
  // their sleep words: a full fence (a locked RMW). A writer that still sleeps then has no live
  // element in its maps, and it stores 0 into its sleep word (also a full fence) before it next
  // reads the tables, so its first scan after waking sees the write (store, fence, load on both
  // sides: one of them sees the other's store). It is not waited for. This is x86-64's
  // memory model (a locked RMW orders later plain loads), which the project assumes elsewhere.
  Atomics.exchange(FENCE, 0, 0);
  const awake = liveFastPaths(trustedUid).filter((f) => {
    if (Atomics.load(statusSleepWord(f.mapping.buffer), 0) !== 1) return true;
    f.mapping.close();
    return false;
  });
  // Two more scans each: the one under way may have compared before the write.
  const waiting = awake.map((f) => {
    const scans = statusValues(f.mapping.buffer);
    return { ...f, scans, until: scans[F_SCANS] + 2 };
  });
  const deadline = performance.now() + timeoutMs;
  const late: string[] = [];
  for (const w of waiting) {
    // A writer that falls asleep meanwhile (its switch for this write emptied its maps, or its
    // last element expired) has no live element, and scans before it adds one: done with it, as
    // with one asleep before (its second scan would come only with its once-a-second scan).
    const sleep = statusSleepWord(w.mapping.buffer);
    while (
      w.scans[F_SCANS] < w.until && Atomics.load(sleep, 0) !== 1 && performance.now() < deadline
    ) sleepSync(1);
    if (w.scans[F_SCANS] < w.until && Atomics.load(sleep, 0) !== 1) late.push(w.table);
    w.mapping.close();
  }
  return late;
}

function alive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether process `pid` maps `/dev/shm/<name>` (its writer thread does, all its life), or
 * undefined when this user may not read its /proc maps.
 */
function mapsObject(pid: number, name: string): boolean | undefined {
  let maps: string;
  try {
    maps = Deno.readTextFileSync(`/proc/${pid}/maps`);
  } catch {
    return undefined;
  }
  const path = `/dev/shm/${name}`;
  return maps.split("\n").some((l) => l.endsWith(` ${path}`));
}
