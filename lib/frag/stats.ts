/**
 * The `ftshm` fragment-statistics object (docs/COMPATIBILITY.md#shared-memory): 72 bytes, all integers
 * little-endian. The daemons create it zero-filled, write the static fields
 * once ({@link initFtStats}) and then the fragment table updates the counters
 * live in place; `nfqlb stats` maps it read-only and prints
 * {@link formatStats}.
 *
 * | offset | type | field                                   | stats key          |
 * |--------|------|-----------------------------------------|--------------------|
 * | 0      | u64  | ttl in nanoseconds                      | `ttlMillis` (/1e6) |
 * | 8      | u32  | hash table size (`ft_size`)             | `hsize`            |
 * | 12     | u32  | active entries (never updated, stays 0) | —                  |
 * | 16     | u32  | collisions                              | `collisions`       |
 * | 20     | u32  | inserts                                 | `inserts`          |
 * | 24     | u32  | rejected inserts                        | `rejected`         |
 * | 28     | u32  | lookups                                 | `lookups`          |
 * | 32     | u32  | objects garbage-collected               | `objGC`            |
 * | 36     | 4    | padding (0)                             | —                  |
 * | 40     | u32  | mtu                                     | `mtu`              |
 * | 44     | u32  | `ft_buckets`                            | `bucketsMax`       |
 * | 48     | u32  | buckets allocated (cumulative)          | `bucketsAllocated` |
 * | 52     | u32  | buckets in use                          | `bucketsUsed`      |
 * | 56     | u32  | effective `ft_frag`                     | `fragsMax`         |
 * | 60     | u32  | fragments discarded                     | `fragsDiscarded`   |
 * | 64     | u32  | fragments stored (cumulative)           | `fragsAllocated`   |
 * | 68     | u32  | datagrams fully seen by the reassembler | `reAssembled`      |
 *
 * Beyond 1.2.0, the daemons create the object {@link FTSHM_EXT_SIZE} bytes
 * long and count there what 1.2.0 never counted (docs/COMPATIBILITY.md#fragments):
 * every fragment dropped, by reason, the stored fragments written to the tun
 * device, and the queued packets longer than `--mtu` (reassembled by the
 * kernel). A 1.2.0 `stats` reads the first 72 bytes and never sees them; an
 * object of 72 bytes (made by a 1.2.0 daemon) prints without them.
 *
 * | offset | type | field                                                  | stats key                   |
 * |--------|------|--------------------------------------------------------|-----------------------------|
 * | 72     | u32  | stored fragments written to the tun device             | `fragsInjected`             |
 * | 76     | u32  | stored fragments dropped: no first fragment in the ttl | `fragsDroppedTtl`           |
 * | 80     | u32  | fragments dropped: stored-fragment pool exhausted      | `fragsDroppedPoolFull`      |
 * | 84     | u32  | fragments dropped: longer than `--mtu`                 | `fragsDroppedTooLong`       |
 * | 88     | u32  | fragments dropped: ahead of their first, no `--tun`    | `fragsDroppedNoTun`         |
 * | 92     | u32  | stored fragments dropped: tun write failed             | `fragsDroppedTunWrite`      |
 * | 96     | u32  | fragments dropped: their datagram was already lost     | `fragsDroppedLostDatagram`  |
 * | 100    | u32  | first fragments dropped: first fragment seen before    | `fragsDroppedRepeatedFirst` |
 * | 104    | u32  | queued packets longer than `--mtu`                     | `kernelReassembled`         |
 *
 * Fragments the table had no entry for are the `rejected` inserts.
 *
 * @example
 * ```ts
 * import { FTSHM_SIZE, formatStats, initFtStats } from "./stats.ts";
 * const shm = new ArrayBuffer(FTSHM_SIZE);
 * initFtStats(shm, { ttlMs: 200, size: 500, mtu: 1500, buckets: 500, frags: 0 });
 * console.log(formatStats(shm)); // the docs/COMPATIBILITY.md#command-line default example
 * ```
 * @module
 */

/** Size in bytes of the `ftshm` object as 1.2.0 lays it out. */
export const FTSHM_SIZE = 72;
/** Size in bytes of the `ftshm` object the daemons create: 1.2.0's fields, then ours. */
export const FTSHM_EXT_SIZE = 108;

/** Byte offset of the ttl in nanoseconds (u64). */
export const FT_OFF_TTL_NANOS = 0;
/** Byte offset of the hash table size (u32). */
export const FT_OFF_HSIZE = 8;
/** Byte offset of the active-entries field (u32, never updated; stays 0). */
export const FT_OFF_ACTIVE = 12;
/** Byte offset of the collisions counter (u32). */
export const FT_OFF_COLLISIONS = 16;
/** Byte offset of the inserts counter (u32). */
export const FT_OFF_INSERTS = 20;
/** Byte offset of the rejected-inserts counter (u32). */
export const FT_OFF_REJECTED = 24;
/** Byte offset of the lookups counter (u32). */
export const FT_OFF_LOOKUPS = 28;
/** Byte offset of the garbage-collected objects counter (u32). */
export const FT_OFF_OBJGC = 32;
/** Byte offset of the mtu (u32). */
export const FT_OFF_MTU = 40;
/** Byte offset of `ft_buckets` (u32). */
export const FT_OFF_BUCKETS_MAX = 44;
/** Byte offset of the cumulative buckets-allocated counter (u32). */
export const FT_OFF_BUCKETS_ALLOCATED = 48;
/** Byte offset of the buckets-in-use gauge (u32). */
export const FT_OFF_BUCKETS_USED = 52;
/** Byte offset of the effective `ft_frag` (u32). */
export const FT_OFF_FRAGS_MAX = 56;
/** Byte offset of the fragments-discarded counter (u32). */
export const FT_OFF_FRAGS_DISCARDED = 60;
/** Byte offset of the cumulative fragments-stored counter (u32). */
export const FT_OFF_FRAGS_ALLOCATED = 64;
/** Byte offset of the reassembled-datagrams counter (u32). */
export const FT_OFF_REASSEMBLED = 68;
/** Byte offset of the stored fragments written to the tun device (u32). */
export const FT_OFF_FRAGS_INJECTED = 72;
/** Byte offset of the stored fragments dropped because no first fragment came in the ttl (u32). */
export const FT_OFF_DROP_TTL = 76;
/** Byte offset of the fragments dropped because the stored-fragment pool was empty (u32). */
export const FT_OFF_DROP_POOL_FULL = 80;
/** Byte offset of the fragments dropped because they were longer than `--mtu` (u32). */
export const FT_OFF_DROP_TOO_LONG = 84;
/** Byte offset of the fragments dropped because they came before their first, without `--tun` (u32). */
export const FT_OFF_DROP_NO_TUN = 88;
/** Byte offset of the stored fragments whose write to the tun device failed (u32). */
export const FT_OFF_DROP_TUN_WRITE = 92;
/** Byte offset of the fragments dropped because their datagram was already lost (u32). */
export const FT_OFF_DROP_LOST_DATAGRAM = 96;
/** Byte offset of the first fragments dropped because one was seen before (u32). */
export const FT_OFF_DROP_REPEATED_FIRST = 100;
/** Byte offset of the count of queued packets longer than `--mtu` (u32). */
export const FT_OFF_KERNEL_REASSEMBLED = 104;

/** Static fields written once when the object is (re)created. */
export interface FtStaticFields {
  /** Entry idle timeout in milliseconds (`--ft_ttl`); stored as nanoseconds in 64 bits (docs/COMPATIBILITY.md#differences D10). */
  ttlMs: number;
  /** Hash table size (`--ft_size`). */
  size: number;
  /** MTU (`--mtu`). */
  mtu: number;
  /** Extra buckets (`--ft_buckets`). */
  buckets: number;
  /** Effective number of stored fragments (`--ft_frag`, 0 without `--tun`). */
  frags: number;
}

/** Every field of the object as plain numbers (`ttlNanos` as a bigint: it is a u64). */
export interface FtStats {
  /** ttl in nanoseconds. */
  ttlNanos: bigint;
  /** `floor(ttlNanos / 1e6)`. */
  ttlMillis: number;
  /** Hash table size. */
  hsize: number;
  /** Active entries (always 0 as written by the daemons). */
  active: number;
  /** Inserts that needed an extra bucket or reused a main bucket with a chain. */
  collisions: number;
  /** Insert attempts. */
  inserts: number;
  /** Inserts rejected because the extra-bucket pool was empty. */
  rejected: number;
  /** Lookups. */
  lookups: number;
  /** Stale entries reclaimed. */
  objGC: number;
  /** MTU. */
  mtu: number;
  /** Size of the extra-bucket pool. */
  bucketsMax: number;
  /** Extra buckets taken (cumulative). */
  bucketsAllocated: number;
  /** Extra buckets currently in use. */
  bucketsUsed: number;
  /** Size of the stored-fragment pool. */
  fragsMax: number;
  /** Stored fragments thrown away (poisoning, GC). */
  fragsDiscarded: number;
  /** Fragments stored (cumulative). */
  fragsAllocated: number;
  /** Datagrams whose every byte the reassembler saw. */
  reAssembled: number;
}

/** The counters beyond 1.2.0's layout (offsets 72–107), as plain numbers. */
export interface FtStatsExt {
  /** Stored fragments written to the tun device. */
  fragsInjected: number;
  /** Stored fragments dropped: no first fragment within the ttl. */
  fragsDroppedTtl: number;
  /** Fragments dropped: the stored-fragment pool was empty (incl. those discarded with them). */
  fragsDroppedPoolFull: number;
  /** Fragments dropped: longer than `--mtu`. */
  fragsDroppedTooLong: number;
  /** Fragments dropped: ahead of their first fragment, and no `--tun` to store them for. */
  fragsDroppedNoTun: number;
  /** Stored fragments dropped: the write to the tun device failed. */
  fragsDroppedTunWrite: number;
  /** Fragments (first ones too) dropped because their datagram was already lost. */
  fragsDroppedLostDatagram: number;
  /** First fragments dropped because a first fragment of the datagram was seen before. */
  fragsDroppedRepeatedFirst: number;
  /** Queued packets longer than `--mtu`: reassembled by conntrack, GRO/LRO or a bridge. */
  kernelReassembled: number;
}

/** Bytes accepted by the functions of this module: the object itself or a view of it. */
export type FtStatsBytes = ArrayBufferLike | Uint8Array;

function dataView(bytes: FtStatsBytes): DataView {
  const dv = bytes instanceof Uint8Array
    ? new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    : new DataView(bytes);
  if (dv.byteLength < FTSHM_SIZE) {
    throw new RangeError(`ftshm: need ${FTSHM_SIZE} bytes, got ${dv.byteLength}`);
  }
  return dv;
}

function u32Field(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw new RangeError(`ftshm: ${name} must be an integer in [0, 4294967295], got ${v}`);
  }
  return v;
}

/**
 * Zero-fills the 72 bytes and writes the static fields: ttl (nanoseconds,
 * `ttlMs × 1 000 000` in 64-bit arithmetic), hsize, mtu, bucketsMax and
 * fragsMax. Throws RangeError if a value does not fit its field or the
 * buffer is shorter than {@link FTSHM_SIZE}.
 */
export function initFtStats(bytes: FtStatsBytes, f: FtStaticFields): void {
  const dv = dataView(bytes);
  if (!Number.isSafeInteger(f.ttlMs) || f.ttlMs < 0) {
    throw new RangeError(`ftshm: ttlMs must be a non-negative integer, got ${f.ttlMs}`);
  }
  const size = u32Field("size", f.size);
  const mtu = u32Field("mtu", f.mtu);
  const buckets = u32Field("buckets", f.buckets);
  const frags = u32Field("frags", f.frags);
  for (let i = 0; i < FTSHM_SIZE; i += 4) dv.setUint32(i, 0, true);
  clearStatsExt(bytes);
  dv.setBigUint64(FT_OFF_TTL_NANOS, BigInt(f.ttlMs) * 1_000_000n, true);
  dv.setUint32(FT_OFF_HSIZE, size, true);
  dv.setUint32(FT_OFF_MTU, mtu, true);
  dv.setUint32(FT_OFF_BUCKETS_MAX, buckets, true);
  dv.setUint32(FT_OFF_FRAGS_MAX, frags, true);
}

/** Reads every field (little-endian). Throws RangeError if fewer than 72 bytes are given. */
export function readStats(bytes: FtStatsBytes): FtStats {
  const dv = dataView(bytes);
  const u = (off: number) => dv.getUint32(off, true);
  const ttlNanos = dv.getBigUint64(FT_OFF_TTL_NANOS, true);
  return {
    ttlNanos,
    ttlMillis: Number(ttlNanos / 1_000_000n),
    hsize: u(FT_OFF_HSIZE),
    active: u(FT_OFF_ACTIVE),
    collisions: u(FT_OFF_COLLISIONS),
    inserts: u(FT_OFF_INSERTS),
    rejected: u(FT_OFF_REJECTED),
    lookups: u(FT_OFF_LOOKUPS),
    objGC: u(FT_OFF_OBJGC),
    mtu: u(FT_OFF_MTU),
    bucketsMax: u(FT_OFF_BUCKETS_MAX),
    bucketsAllocated: u(FT_OFF_BUCKETS_ALLOCATED),
    bucketsUsed: u(FT_OFF_BUCKETS_USED),
    fragsMax: u(FT_OFF_FRAGS_MAX),
    fragsDiscarded: u(FT_OFF_FRAGS_DISCARDED),
    fragsAllocated: u(FT_OFF_FRAGS_ALLOCATED),
    reAssembled: u(FT_OFF_REASSEMBLED),
  };
}

/** Offsets of the {@link FtStatsExt} fields, in output order. */
const EXT_FIELDS: readonly [keyof FtStatsExt, number][] = [
  ["fragsInjected", FT_OFF_FRAGS_INJECTED],
  ["fragsDroppedTtl", FT_OFF_DROP_TTL],
  ["fragsDroppedPoolFull", FT_OFF_DROP_POOL_FULL],
  ["fragsDroppedTooLong", FT_OFF_DROP_TOO_LONG],
  ["fragsDroppedNoTun", FT_OFF_DROP_NO_TUN],
  ["fragsDroppedTunWrite", FT_OFF_DROP_TUN_WRITE],
  ["fragsDroppedLostDatagram", FT_OFF_DROP_LOST_DATAGRAM],
  ["fragsDroppedRepeatedFirst", FT_OFF_DROP_REPEATED_FIRST],
  ["kernelReassembled", FT_OFF_KERNEL_REASSEMBLED],
];

/**
 * The counters beyond 1.2.0's layout, or undefined when the object is only
 * 1.2.0's 72 bytes (shorter than {@link FTSHM_EXT_SIZE}).
 */
export function readStatsExt(bytes: FtStatsBytes): FtStatsExt | undefined {
  if (bytes.byteLength < FTSHM_EXT_SIZE) return undefined;
  const dv = dataView(bytes);
  const out = {} as FtStatsExt;
  for (const [k, off] of EXT_FIELDS) out[k] = dv.getUint32(off, true);
  return out;
}

/** Zero the counters beyond 1.2.0's layout (when the object has them). */
export function clearStatsExt(bytes: FtStatsBytes): void {
  if (bytes.byteLength < FTSHM_EXT_SIZE) return;
  const dv = dataView(bytes);
  for (let i = FTSHM_SIZE; i < FTSHM_EXT_SIZE; i += 4) dv.setUint32(i, 0, true);
}

/** Printed keys in output order (docs/COMPATIBILITY.md#command-line); `active` is not printed. */
const PRINTED: readonly (keyof FtStats)[] = [
  "hsize",
  "ttlMillis",
  "collisions",
  "inserts",
  "rejected",
  "lookups",
  "objGC",
  "mtu",
  "bucketsMax",
  "bucketsAllocated",
  "bucketsUsed",
  "fragsMax",
  "fragsAllocated",
  "fragsDiscarded",
  "reAssembled",
];

/** Width of `"key":` plus padding; values start in column 23 after the 2-space indent. */
const KEY_COLUMN_WIDTH = 20;
/** The same for our counters: values start in column 32. */
const EXT_KEY_COLUMN_WIDTH = 29;

/**
 * The `nfqlb stats` output (docs/COMPATIBILITY.md#command-line) in its corrected, valid-JSON form
 * (docs/COMPATIBILITY.md#differences D2: comma after `fragsDiscarded`): one `"key":` per line, padded
 * so every value starts in column 23, unsigned decimal values, `ttlMillis =
 * floor(ttlNanos / 1e6)`. An object with our extension ({@link FTSHM_EXT_SIZE}
 * bytes) prints its counters after 1.2.0's, in the same style (their keys are
 * longer: their values start in column 32). The returned text ends with a
 * newline after `}`.
 */
export function formatStats(bytes: FtStatsBytes): string {
  const s = readStats(bytes);
  const rows: [string, number][] = PRINTED.map((k) => [k, s[k] as number]);
  const ext = readStatsExt(bytes);
  if (ext !== undefined) { for (const [k] of EXT_FIELDS) rows.push([k, ext[k]]); }
  let out = "{\n";
  for (let i = 0; i < rows.length; i++) {
    const [k, v] = rows[i];
    const width = i < PRINTED.length ? KEY_COLUMN_WIDTH : EXT_KEY_COLUMN_WIDTH;
    out += `  ${`"${k}":`.padEnd(width)}${v}${i < rows.length - 1 ? "," : ""}\n`;
  }
  return out + "}\n";
}
