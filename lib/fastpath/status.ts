/**
 * The fast path's status object (docs/FASTPATH.md): a small shared-memory
 * object `nfqlb-fastpath.<netns>.<table>` the writer thread keeps up to date and
 * `nfqlb stats`, the metrics thread and the table commands read. The
 * table commands wait on {@link F_SCANS}: once it has grown by two after
 * a change, the writer has compared the tables since and switched to empty
 * maps if they differed.
 *
 * Layout: u32 magic `NFP2` (its version), u32 pid of the daemon, then f64 values at
 * `8 + 8 * F_*` ({@link F_COUNT} of them; {@link F_UP} is the last), then the daemon's
 * `--ft_shm` name ({@link FT_SHM_NAME_BYTES} bytes, UTF-8, NUL-padded), so
 * `nfqlb stats --ft_shm=NAME` shows the fast path of that daemon only, then the i32 sleep word
 * ({@link statusSleepWord}: 1 while the writer sleeps with no live element in the maps in use;
 * the table commands do not wait for a sleeping writer, see daemon/fastpath_wait.ts). The daemon's own
 * metrics thread does not read this object: the writer shares the same values with it in a
 * `SharedArrayBuffer` ({@link VALUES_BYTES}), which nobody outside the process can touch.
 *
 * @example
 * ```ts
 * import {
 *   F_ADDS,
 *   formatFastPathStats,
 *   initStatus,
 *   STATUS_SIZE,
 *   statusFtShm,
 *   statusValues,
 * } from "./status.ts";
 * const mem = new ArrayBuffer(STATUS_SIZE);
 * initStatus(mem, 42, "ftshm");
 * statusValues(mem)[F_ADDS] = 3;
 * statusFtShm(mem); // "ftshm"
 * formatFastPathStats("fp", mem).split("\n")[1]; // "  adds=3, add_failures=0, ring_drops=0"
 * ```
 * @module
 */

/** Prefix of the status object's name; the network namespace's inode, `.` and the nft table follow. */
export const STATUS_PREFIX = "nfqlb-fastpath.";
/**
 * `NFP3`: the layout of this version (values up to F_UP, the `--ft_shm` name, the sleep word).
 * The earlier layouts' magics were `NFFP` and `NFP2` (no sleep word); an object with another
 * magic is not read as this one.
 */
const MAGIC = 0x3350464e; // "NFP3"

/** Completed scans (tables compared, maps flushed if they changed). */
export const F_SCANS = 0;
/** Side switches: the rules moved to empty maps after a change. */
export const F_FLUSHES = 1;
/** Elements added. */
export const F_ADDS = 2;
/** Elements the kernel refused (e.g. map full). */
export const F_ADD_FAILURES = 3;
/** Elements in the maps in use (added, not timed out, since the last switch). */
export const F_ELEMENTS = 4;
/** Offers dropped because a queue thread's ring was full. */
export const F_RING_DROPS = 5;
/** Packets the kernel marked from the IPv4 map (its counter). */
export const F_HITS4 = 6;
/** Packets the kernel marked from the IPv6 map. */
export const F_HITS6 = 7;
/** Duration of the last switch, µs (change seen → the rules use empty maps). */
export const F_LAST_FLUSH_US = 8;
/** Longest switch, µs. */
export const F_MAX_FLUSH_US = 9;
/** Times an add found the map full. */
export const F_MAP_FULL = 10;
/** Offers not added because adds pause after the map was full. */
export const F_MAP_FULL_SKIPS = 11;
/**
 * 1 while the nftables table exists; 0 while it is removed after a failure (a failed switch, a
 * socket error: every packet takes the queue until it is created again) and after the writer
 * stopped.
 */
export const F_UP = 12;
/** Number of values. */
export const F_COUNT = 13;
/** Bytes of the values alone (the writer's `SharedArrayBuffer` the metrics thread reads). */
export const VALUES_BYTES = 8 * F_COUNT;

/** Room for the daemon's `--ft_shm` name (a POSIX shm name is at most 255 bytes). */
export const FT_SHM_NAME_BYTES = 256;
const FT_SHM_NAME_AT = 8 + 8 * F_COUNT;

const SLEEP_AT = FT_SHM_NAME_AT + FT_SHM_NAME_BYTES;

/** Bytes of the object. */
export const STATUS_SIZE = SLEEP_AT + 8;

/**
 * The sleep word of object `mem` (`Int32Array` of one element): the writer stores 1 before it
 * sleeps and 0 (with `Atomics.exchange`, a full fence) before it scans again.
 */
export function statusSleepWord(mem: ArrayBuffer | SharedArrayBuffer): Int32Array {
  return new Int32Array(mem, SLEEP_AT, 1);
}

/** The nft table of status object `name` (`nfqlb-fastpath.<netns>.<table>`), or undefined. */
export function statusTable(name: string): string | undefined {
  const m = /^nfqlb-fastpath\.\d+\.(.+)$/.exec(name);
  return m === null ? undefined : m[1];
}

/** Write the header of a new object of process `pid`, whose statistics object is `ftShm`. */
export function initStatus(
  mem: ArrayBuffer | SharedArrayBuffer,
  pid: number,
  ftShm: string,
): void {
  const w = new Uint32Array(mem, 0, 2);
  new Float64Array(mem, 8, F_COUNT).fill(0);
  const name = new Uint8Array(mem, FT_SHM_NAME_AT, FT_SHM_NAME_BYTES);
  name.fill(0);
  new TextEncoder().encodeInto(ftShm, name.subarray(0, FT_SHM_NAME_BYTES - 1));
  statusSleepWord(mem)[0] = 0;
  w[1] = pid >>> 0;
  w[0] = MAGIC;
}

/** The `--ft_shm` name of the daemon whose object `mem` is. */
export function statusFtShm(mem: ArrayBuffer | SharedArrayBuffer): string {
  const name = new Uint8Array(mem, FT_SHM_NAME_AT, FT_SHM_NAME_BYTES);
  const end = name.indexOf(0);
  return new TextDecoder().decode(name.subarray(0, end < 0 ? FT_SHM_NAME_BYTES : end));
}

/** The pid in an object, or undefined when it is not a status object. */
export function statusPid(mem: ArrayBuffer | SharedArrayBuffer): number | undefined {
  if (mem.byteLength < STATUS_SIZE) return undefined;
  const w = new Uint32Array(mem, 0, 2);
  return w[0] === MAGIC ? w[1] : undefined;
}

/** The values of an object, indexed by `F_*`. */
export function statusValues(mem: ArrayBuffer | SharedArrayBuffer): Float64Array {
  return new Float64Array(mem, 8, F_COUNT);
}

/** The `stats` lines of the fast path with table `table` and status object `mem`. */
export function formatFastPathStats(table: string, mem: ArrayBuffer | SharedArrayBuffer): string {
  const v = statusValues(mem);
  return `Fastpath ${table}: up=${v[F_UP]}, elements=${v[F_ELEMENTS]}, hits4=${v[F_HITS4]}, hits6=${
    v[F_HITS6]
  }\n` +
    `  adds=${v[F_ADDS]}, add_failures=${v[F_ADD_FAILURES]}, ring_drops=${v[F_RING_DROPS]}\n` +
    `  flushes=${v[F_FLUSHES]}, last_flush_us=${v[F_LAST_FLUSH_US]}, ` +
    `max_flush_us=${v[F_MAX_FLUSH_US]}, map_full=${v[F_MAP_FULL]}, ` +
    `map_full_skips=${v[F_MAP_FULL_SKIPS]}`;
}
