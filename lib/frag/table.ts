/**
 * nfqlb's fragment tracking (docs/COMPATIBILITY.md#fragments): a bounded hash table keyed by the
 * id-form key (src, dst, fragment id) that remembers the fwmark chosen for a
 * datagram's first fragment so that the other fragments follow it, stores
 * fragments that arrive before the first one (to be re-injected through a
 * tun device), and optionally frees entries early with the RFC 815
 * reassembler (docs/COMPATIBILITY.md#fragments).
 *
 * Pure: no I/O and no clock. The caller passes the monotonic time in
 * nanoseconds to every call and gets the stored fragments back through the
 * synchronous `inject` callback. Counters are kept live in a caller-provided
 * 72-byte `ftshm` buffer (docs/COMPATIBILITY.md#shared-memory, see `ftshm.ts`), e.g. a shared-memory
 * mapping read by `nfqlb stats`.
 *
 * Memory is fixed at construction: `size + buckets` entries, `frags`
 * buffers of `mtu` bytes, `reassembler` hole descriptors, all in typed
 * arrays. Fragment traffic allocates nothing.
 *
 * How `lb` uses it (docs/COMPATIBILITY.md#packet-decisions):
 *
 * Every call takes the packet's parse (`KeyParse`: the key, and the header
 * facts the reassembler needs) and the packet as `buf[off, off + len)`.
 *
 * @example
 * ```ts
 * import { FragTable, FRAG_STORED, setIdForm } from "./table.ts";
 * import { FTSHM_SIZE } from "./stats.ts";
 * import { ETH_P_IP, KeyParse, parseKeyAt } from "../packet/parse.ts";
 *
 * const ft = new FragTable({
 *   size: 500, buckets: 500, frags: 100, mtu: 1500, ttlMs: 200, reassembler: 0,
 *   stats: new ArrayBuffer(FTSHM_SIZE),
 *   inject: (bytes, len) => { void bytes.subarray(0, len); }, // write to the tun device
 * });
 * const now = 1_000_000_000; // e.g. CLOCK_MONOTONIC in ns
 * const kp = new KeyParse();
 * // IPv4 UDP fragments 10.0.0.1 -> 10.0.0.2, id 7: offset 8 (non-first), then offset 0 (first).
 * const pkt = new Uint8Array(28);
 * pkt.set([0x45, 0, 0, 28, 0, 7, 0x20, 0x01, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
 *
 * // Non-first fragment (parser rc 2, key in id form):
 * parseKeyAt(kp, pkt, 0, pkt.length, ETH_P_IP, 0); // 2
 * const fw = ft.nonFirst(kp, pkt, 0, pkt.length, now); // -1: stored (not seen the first yet)
 * ft.lastStatus === FRAG_STORED; // true -> trace "Fragment stored"
 *
 * // First fragment (parser rc 1) whose target fwmark is 7:
 * pkt[7] = 0;
 * parseKeyAt(kp, pkt, 0, pkt.length, ETH_P_IP, 0); // 1
 * setIdForm(kp.key, kp.fragId); // key bytes 32..39 := fragid as LE u64
 * ft.first(kp, 7, pkt, 0, pkt.length, now); // true: ACCEPT with 7; stored fragment injected
 * ```
 * @module
 */

import { KEY_ID, KEY_LEN } from "../packet/key.ts";
import type { KeyParse } from "../packet/parse.ts";
import { lockWord, unlockWord } from "../sync/mutex.ts";
import {
  FT_OFF_BUCKETS_ALLOCATED,
  FT_OFF_BUCKETS_USED,
  FT_OFF_COLLISIONS,
  FT_OFF_DROP_LOST_DATAGRAM,
  FT_OFF_DROP_NO_TUN,
  FT_OFF_DROP_POOL_FULL,
  FT_OFF_DROP_REPEATED_FIRST,
  FT_OFF_DROP_TOO_LONG,
  FT_OFF_DROP_TTL,
  FT_OFF_DROP_TUN_WRITE,
  FT_OFF_FRAGS_ALLOCATED,
  FT_OFF_FRAGS_DISCARDED,
  FT_OFF_FRAGS_INJECTED,
  FT_OFF_INSERTS,
  FT_OFF_LOOKUPS,
  FT_OFF_OBJGC,
  FT_OFF_REASSEMBLED,
  FT_OFF_REJECTED,
  FTSHM_EXT_SIZE,
  FTSHM_SIZE,
  type FtStatsBytes,
  initFtStats,
} from "./stats.ts";
import {
  FEED_COMPLETE,
  FEED_INCOMPLETE,
  FragGeometry,
  fragmentGeometry,
  HoleLists,
} from "./reassembler.ts";

/** {@link FragTable.lastStatus}: the fragment is accepted with the entry's fwmark. */
export const FRAG_ACCEPT = 0;
/** {@link FragTable.lastStatus}: the fragment was stored for re-injection; DROP the original. */
export const FRAG_STORED = 1;
/** {@link FragTable.lastStatus}: the fragment could not be handled; DROP it. */
export const FRAG_DROPPED: number = -1;

/** Entry state: slot free. */
const FREE = 0;
/** Entry state: created by a fragment that preceded the first fragment. */
const STORING = 1;
/** Entry state: first fragment seen; `fw` holds the fwmark. */
const VALID = 2;
/** Entry state: a fragment could not be stored. */
const POISONED = 3;

/** djb2's initial value (docs/COMPATIBILITY.md#hashing-and-parsing; same as `djb2` in hash.ts, which the tests check). */
const DJB2_SEED = 5381;

/** 32-bit words in a key. */
const KEY_WORDS = KEY_LEN >>> 2;

/** Index of each counter in the u32 view of the `ftshm` object. */
const S_COLLISIONS = FT_OFF_COLLISIONS >>> 2;
const S_INSERTS = FT_OFF_INSERTS >>> 2;
const S_REJECTED = FT_OFF_REJECTED >>> 2;
const S_LOOKUPS = FT_OFF_LOOKUPS >>> 2;
const S_OBJGC = FT_OFF_OBJGC >>> 2;
const S_BUCKETS_ALLOCATED = FT_OFF_BUCKETS_ALLOCATED >>> 2;
const S_BUCKETS_USED = FT_OFF_BUCKETS_USED >>> 2;
const S_FRAGS_DISCARDED = FT_OFF_FRAGS_DISCARDED >>> 2;
const S_FRAGS_ALLOCATED = FT_OFF_FRAGS_ALLOCATED >>> 2;
const S_REASSEMBLED = FT_OFF_REASSEMBLED >>> 2;
const S_FRAGS_INJECTED = FT_OFF_FRAGS_INJECTED >>> 2;
const S_DROP_TTL = FT_OFF_DROP_TTL >>> 2;
const S_DROP_POOL_FULL = FT_OFF_DROP_POOL_FULL >>> 2;
const S_DROP_TOO_LONG = FT_OFF_DROP_TOO_LONG >>> 2;
const S_DROP_NO_TUN = FT_OFF_DROP_NO_TUN >>> 2;
const S_DROP_TUN_WRITE = FT_OFF_DROP_TUN_WRITE >>> 2;
const S_DROP_LOST_DATAGRAM = FT_OFF_DROP_LOST_DATAGRAM >>> 2;
const S_DROP_REPEATED_FIRST = FT_OFF_DROP_REPEATED_FIRST >>> 2;

/** Header words of the table's memory. */
const H_LOCK = 0;
const H_BUCKET_FREE_TOP = 1;
const H_FRAG_FREE_HEAD = 2;
/** Next main bucket {@link FragTable.sweep} looks at. */
const H_SWEEP_CURSOR = 3;
const HEADER_WORDS = 4;

/**
 * The length the IP header of `buf[off, off + len)` declares (IPv4 total length, IPv6 40 +
 * payload length), or 0 when the header is not there.
 */
function declaredLength(buf: Uint8Array, off: number, len: number): number {
  if (len < 8) return 0;
  const v = buf[off] >> 4;
  if (v === 4) return (buf[off + 2] << 8) | buf[off + 3];
  if (v === 6) return 40 + ((buf[off + 4] << 8) | buf[off + 5]);
  return 0;
}

/** {@link FragTable.first}'s locked part: the entry could not take the first fragment. */
const FIRST_REFUSED = -2;

export type { FtStatsBytes };

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Receives a stored fragment to re-inject (write it to the tun device).
 * `bytes[0, len)` is valid only during the call: copy it if needed. Return
 * false when the fragment could not be written (counted as
 * `fragsDroppedTunWrite`); anything else counts it as injected.
 */
export type InjectFn = (bytes: Uint8Array, len: number) => boolean | void;

/** Construction parameters (docs/COMPATIBILITY.md#fragments). */
export interface FragTableOptions {
  /** Main hash buckets (`--ft_size`, ≥ 1). */
  size: number;
  /** Extra buckets for collisions (`--ft_buckets`, ≥ 0). */
  buckets: number;
  /** Stored-fragment pool (`--ft_frag`, ≥ 0; pass 0 without `--tun`). */
  frags: number;
  /** Largest packet stored, and the size of each stored-fragment buffer (`--mtu`, ≥ 1). */
  mtu: number;
  /** Entry idle timeout in milliseconds (`--ft_ttl`, ≥ 0). */
  ttlMs: number;
  /** Hole-descriptor pool (`--reassembler`, ≥ 0; 0 disables the reassembler). Default 0. */
  reassembler?: number;
  /**
   * The `ftshm` object (docs/COMPATIBILITY.md#shared-memory) to keep the statistics in, e.g. a
   * shared-memory mapping: 72 bytes for 1.2.0's counters, {@link FTSHM_EXT_SIZE}
   * for ours too (with 72, ours are counted in private memory). It is
   * zero-filled and its static fields are written. Default: a private buffer
   * (see {@link FragTable.stats}).
   */
  stats?: FtStatsBytes;
  /** Called for each stored fragment when the first fragment arrives (LIFO), outside the lock. */
  inject?: InjectFn;
  /**
   * Zero-fill `stats` and write its static fields (default true). Pass false
   * when the object was already initialised (`initFtStats`) and other tables
   * (e.g. one per queue worker) are already counting in it.
   */
  initStats?: boolean;
  /**
   * Update the counters with `Atomics` (default false): needed when tables
   * with separate memories in several threads share one `stats` mapping.
   * Tables sharing one memory ({@link memory}) count under their lock and
   * need not.
   */
  atomicStats?: boolean;
  /**
   * Allocate the table in a SharedArrayBuffer ({@link FragTable.memory}) that
   * tables in other threads can attach to (default false). Every call then
   * takes the table's lock.
   */
  shared?: boolean;
  /**
   * Attach to the memory of a table made with `shared: true` and the same
   * size parameters, e.g. in another worker thread: the tables are then one
   * table (docs/ARCHITECTURE.md), serialised by a lock in that memory.
   */
  memory?: SharedArrayBuffer;
}

function checkInt(name: string, v: number, min: number): number {
  if (!Number.isSafeInteger(v) || v < min || v > 0xffffffff) {
    throw new RangeError(
      `FragTable: ${name} must be an integer in [${min}, 4294967295], got ${v}`,
    );
  }
  return v;
}

/** Byte offsets of the table's arrays in its memory. */
interface Layout {
  state: number;
  lastRef: number;
  fw: number;
  next: number;
  fragHead: number;
  hole: number;
  owner: number;
  keys: number;
  bucketFree: number;
  fragLen: number;
  fragNext: number;
  pool: number;
  holes: number;
  total: number;
}

/** Where each array lives in the memory of a table with these sizes (8-byte aligned arrays). */
function layoutOf(entries: number, buckets: number, frags: number, mtu: number, k: number): Layout {
  let off = 4 * HEADER_WORDS;
  const take = (bytes: number) => {
    off = Math.ceil(off / 8) * 8;
    const at = off;
    off += bytes;
    return at;
  };
  const state = take(entries);
  const lastRef = take(8 * entries);
  const fw = take(4 * entries);
  const next = take(4 * entries);
  const fragHead = take(4 * entries);
  const hole = take(4 * entries);
  const owner = take(4 * entries);
  const keys = take(4 * KEY_WORDS * entries);
  const bucketFree = take(4 * buckets);
  const fragLen = take(4 * frags);
  const fragNext = take(4 * frags);
  const pool = take(frags * mtu);
  const holes = take(HoleLists.byteLength(k));
  return {
    state,
    lastRef,
    fw,
    next,
    fragHead,
    hole,
    owner,
    keys,
    bucketFree,
    fragLen,
    fragNext,
    pool,
    holes,
    total: Math.ceil(off / 8) * 8,
  };
}

/**
 * Writes the id form of a first fragment's key in place (docs/COMPATIBILITY.md#packet-decisions): bytes
 * 32–39 := `fragId` as a little-endian u64 (`fragId` is the parser's
 * `KeyParse.fragId`, a u16 for IPv4 or a u32 for IPv6).
 */
export function setIdForm(key: Uint8Array, fragId: number): void {
  let v = fragId >>> 0;
  for (let i = 0; i < 4; i++) {
    key[KEY_ID + i] = v & 0xff;
    v >>>= 8;
  }
  key[KEY_ID + 4] = 0;
  key[KEY_ID + 5] = 0;
  key[KEY_ID + 6] = 0;
  key[KEY_ID + 7] = 0;
}

/**
 * The fragment table. Entry `i < size` is the inline entry of main bucket
 * `i`; entries `size + j` are the extra buckets, chained from a main bucket.
 * Every array lives in one memory ({@link memory}); tables in several
 * threads attached to one SharedArrayBuffer are one table, each call
 * serialised by the lock in its first word. All methods are synchronous and
 * never throw on packet input (except what the `inject` callback throws).
 */
export class FragTable {
  /** Main hash buckets. */
  declare readonly size: number;
  /** Extra buckets. */
  declare readonly buckets: number;
  /** Stored-fragment pool size. */
  declare readonly frags: number;
  /** Stored-fragment buffer size. */
  declare readonly mtu: number;
  /** Idle timeout in nanoseconds. */
  declare readonly ttlNs: number;
  /** The `ftshm` bytes holding the live statistics (format with `formatStats`). */
  declare readonly stats: Uint8Array;
  /** The memory holding the table: a SharedArrayBuffer other threads may attach to when shared. */
  declare readonly memory: ArrayBuffer | SharedArrayBuffer;
  /**
   * Outcome of the last {@link nonFirst} call: {@link FRAG_ACCEPT},
   * {@link FRAG_STORED} or {@link FRAG_DROPPED} (for the trace messages
   * `Handle non-first frag locally`, `Fragment stored`, `Fragment dropped`).
   */
  declare lastStatus: number;

  /** 1.2.0's statistics as u32 words (little-endian host). */
  declare private readonly st: Uint32Array;
  /** Our statistics (the words after 1.2.0's), in `stats` when long enough, else private. */
  declare private readonly ext: Uint32Array;
  declare private readonly atomic: boolean;
  /** Take the lock around each call (the memory is shared). */
  declare private readonly locking: boolean;
  /** [lock, extra-bucket free-stack top, stored-fragment free-list head, sweep cursor]. */
  declare private readonly hdr: Int32Array;
  // Per entry.
  declare private readonly state: Uint8Array;
  declare private readonly lastRef: Float64Array;
  declare private readonly fw: Int32Array;
  /** Main bucket: head of its chain; extra bucket: next in the chain; -1 = end. */
  declare private readonly next: Int32Array;
  /** Head of the stored-fragment list (most recent first), -1 = none. */
  declare private readonly fragHead: Int32Array;
  /** Hole list handle, -1 = no reassembly. */
  declare private readonly hole: Int32Array;
  /** Main bucket an entry belongs to. */
  declare private readonly owner: Int32Array;
  declare private readonly keys: Int32Array;
  // Extra-bucket free stack (entry indices).
  declare private readonly bucketFree: Int32Array;
  // Stored fragments.
  declare private readonly fragBufs: Uint8Array[];
  declare private readonly fragLen: Int32Array;
  declare private readonly fragNext: Int32Array;
  // Reassembler (null when disabled).
  declare private readonly holes: HoleLists | null;
  declare private readonly geom: FragGeometry;
  declare private readonly inject: InjectFn | null;
  /** The current key as words (scratch). */
  declare private readonly kw: Int32Array;

  /**
   * Allocates (or, with `memory`, attaches to) every pool and initialises the
   * statistics. Throws RangeError for `size < 1` (docs/COMPATIBILITY.md#differences D20), negative or
   * non-integer parameters, a statistics buffer shorter than 72 bytes, or a
   * `memory` whose size does not fit the parameters.
   */
  constructor(opts: FragTableOptions) {
    const size = opts.size;
    if (!Number.isSafeInteger(size) || size < 1) {
      throw new RangeError(`FragTable: ft_size must be at least 1, got ${size}`);
    }
    checkInt("ft_size", size, 1);
    const buckets = checkInt("ft_buckets", opts.buckets, 0);
    const frags = checkInt("ft_frag", opts.frags, 0);
    const mtu = checkInt("mtu", opts.mtu, 1);
    const ttlMs = checkInt("ft_ttl", opts.ttlMs, 0);
    const k = checkInt("reassembler", opts.reassembler ?? 0, 0);
    if (!LITTLE_ENDIAN) throw new Error("FragTable: the ftshm layout needs a little-endian host");

    const statsBytes = opts.stats ?? new ArrayBuffer(FTSHM_EXT_SIZE);
    const whole = statsBytes instanceof Uint8Array ? statsBytes : new Uint8Array(statsBytes);
    const stats = whole.subarray(0, Math.min(FTSHM_SIZE, whole.byteLength));
    if (stats.byteLength < FTSHM_SIZE) {
      throw new RangeError(`FragTable: stats needs ${FTSHM_SIZE} bytes, got ${stats.byteLength}`);
    }
    if (stats.byteOffset % 4 !== 0) {
      throw new RangeError("FragTable: stats must be 4-byte aligned");
    }
    if (opts.initStats ?? true) initFtStats(whole, { ttlMs, size, mtu, buckets, frags });
    this.stats = stats;
    this.atomic = opts.atomicStats ?? false;
    this.st = new Uint32Array(stats.buffer, stats.byteOffset, FTSHM_SIZE >>> 2);
    const extWords = (FTSHM_EXT_SIZE - FTSHM_SIZE) >>> 2;
    this.ext = whole.byteLength >= FTSHM_EXT_SIZE
      ? new Uint32Array(whole.buffer, whole.byteOffset + FTSHM_SIZE, extWords)
      : new Uint32Array(extWords);

    this.size = size;
    this.buckets = buckets;
    this.frags = frags;
    this.mtu = mtu;
    this.ttlNs = ttlMs * 1_000_000;
    this.lastStatus = FRAG_ACCEPT;

    const entries = size + buckets;
    const at = layoutOf(entries, buckets, frags, mtu, k);
    const attach = opts.memory;
    if (attach !== undefined && attach.byteLength !== at.total) {
      throw new RangeError(
        `FragTable: the memory to attach is ${attach.byteLength} bytes, these options need ${at.total}`,
      );
    }
    const memory = attach ??
      (opts.shared ? new SharedArrayBuffer(at.total) : new ArrayBuffer(at.total));
    this.memory = memory;
    this.locking = memory instanceof SharedArrayBuffer;
    this.hdr = new Int32Array(memory, 0, HEADER_WORDS);
    this.state = new Uint8Array(memory, at.state, entries);
    this.lastRef = new Float64Array(memory, at.lastRef, entries);
    this.fw = new Int32Array(memory, at.fw, entries);
    this.next = new Int32Array(memory, at.next, entries);
    this.fragHead = new Int32Array(memory, at.fragHead, entries);
    this.hole = new Int32Array(memory, at.hole, entries);
    this.owner = new Int32Array(memory, at.owner, entries);
    this.keys = new Int32Array(memory, at.keys, entries * KEY_WORDS);
    this.bucketFree = new Int32Array(memory, at.bucketFree, buckets);
    this.fragLen = new Int32Array(memory, at.fragLen, frags);
    this.fragNext = new Int32Array(memory, at.fragNext, frags);
    const bufs: Uint8Array[] = new Array(frags);
    for (let i = 0; i < frags; i++) bufs[i] = new Uint8Array(memory, at.pool + i * mtu, mtu);
    this.fragBufs = bufs;
    const holesAt = { buffer: memory, offset: at.holes };
    this.holes = k > 0 ? new HoleLists(k, holesAt, attach === undefined) : null;
    this.geom = new FragGeometry();
    this.inject = opts.inject ?? null;
    this.kw = new Int32Array(KEY_WORDS);
    if (attach !== undefined) return;

    this.next.fill(-1);
    this.fragHead.fill(-1);
    this.hole.fill(-1);
    // Pop order: size, size+1, ...
    for (let j = 0; j < buckets; j++) this.bucketFree[j] = size + buckets - 1 - j;
    this.hdr[H_BUCKET_FREE_TOP] = buckets;
    for (let i = 0; i < frags; i++) this.fragNext[i] = i + 1 < frags ? i + 1 : -1;
    this.hdr[H_FRAG_FREE_HEAD] = frags > 0 ? 0 : -1;
  }

  /**
   * A non-first fragment (`fragGetValueOrStore`, docs/COMPATIBILITY.md#fragments). `p` is its parse
   * (`p.key` the 40-byte id-form key), `buf[off, off + len)` the packet,
   * `now` the monotonic time in ns. Returns the fwmark (≥ 0: ACCEPT with it)
   * or -1 (DROP); on -1 {@link lastStatus} tells whether the fragment was
   * stored (and will be re-injected) or dropped.
   */
  nonFirst(p: KeyParse, buf: Uint8Array, off: number, len: number, now: number): number {
    if (!this.locking) return this.nonFirstLocked(p, buf, off, len, now);
    lockWord(this.hdr, H_LOCK);
    try {
      return this.nonFirstLocked(p, buf, off, len, now);
    } finally {
      unlockWord(this.hdr, H_LOCK);
    }
  }

  /**
   * A first fragment with target fwmark `fw ≥ 0` (`handleFirstFragment`,
   * docs/COMPATIBILITY.md#fragments); `p` is its parse, with `p.key` already in id form
   * ({@link setIdForm}), and `buf[off, off + len)` the packet.
   * Returns true if the first fragment is to be ACCEPTed with `fw`, false if
   * it must be DROPped (no entry available, or the entry is already valid
   * or poisoned). On success every stored fragment of the datagram is passed
   * to `inject`, most recently stored first, and its buffer is freed; the
   * writes happen outside the lock (so `inject` may call the table).
   */
  first(p: KeyParse, fw: number, buf: Uint8Array, off: number, len: number, now: number): boolean {
    let stored: number;
    if (!this.locking) {
      stored = this.firstLocked(p, fw, buf, off, len, now);
    } else {
      lockWord(this.hdr, H_LOCK);
      try {
        stored = this.firstLocked(p, fw, buf, off, len, now);
      } finally {
        unlockWord(this.hdr, H_LOCK);
      }
    }
    if (stored === FIRST_REFUSED) return false;
    if (stored >= 0) this.injectStored(stored);
    return true;
  }

  /**
   * Reclaims stale entries of the next `maxBuckets` main buckets (a cursor
   * in the table's memory goes round), so that entries no packet touches
   * again give back their stored-fragment buffers and extra buckets within
   * about a ttl (docs/COMPATIBILITY.md#differences D51; 1.2.0 only reclaims a bucket when
   * a packet touches it, so after a flood of orphan fragments its pools
   * stay full). Called off the packet path, e.g. every 100 ms by each queue
   * thread; takes the lock once. Returns the number of entries reclaimed.
   */
  sweep(now: number, maxBuckets: number): number {
    if (this.locking) lockWord(this.hdr, H_LOCK);
    try {
      const before = this.st[S_OBJGC];
      const n = Math.min(this.size, Math.max(0, Math.floor(maxBuckets)));
      let b = this.hdr[H_SWEEP_CURSOR];
      for (let i = 0; i < n; i++) {
        if (b >= this.size) b = 0;
        this.collectBucket(b, now);
        b++;
      }
      this.hdr[H_SWEEP_CURSOR] = b >= this.size ? 0 : b;
      return (this.st[S_OBJGC] - before) >>> 0;
    } finally {
      if (this.locking) unlockWord(this.hdr, H_LOCK);
    }
  }

  /** Extra buckets currently free. */
  get bucketsFree(): number {
    return this.hdr[H_BUCKET_FREE_TOP];
  }

  /** Stored-fragment buffers currently free. */
  get fragsFree(): number {
    let n = 0;
    for (let s = this.hdr[H_FRAG_FREE_HEAD]; s >= 0; s = this.fragNext[s]) n++;
    return n;
  }

  /** Hole descriptors currently free (0 when the reassembler is off). */
  get holesFree(): number {
    return this.holes === null ? 0 : this.holes.free;
  }

  /** Live entries (walks the table; for tests and diagnostics, not the hot path). */
  get entries(): number {
    let n = 0;
    for (let i = 0; i < this.state.length; i++) if (this.state[i] !== FREE) n++;
    return n;
  }

  // ---- internals (the *Locked methods run with the lock held) ------------------------------

  private nonFirstLocked(p: KeyParse, buf: Uint8Array, off: number, len: number, now: number) {
    const e = this.lookupOrCreate(p.key, now, false);
    if (e < 0) {
      this.lastStatus = FRAG_DROPPED;
      return -1;
    }
    const state = this.state[e];
    const h = this.hole[e];
    if (h >= 0) {
      const holes = this.holes as HoleLists;
      if (state !== VALID) {
        // A fragment while still storing: reassembly abandoned for this entry (TTL applies).
        holes.destroy(h);
        this.hole[e] = -1;
      } else if (fragmentGeometry(p, buf, off, len, this.geom)) {
        const g = this.geom;
        const r = holes.feed(h, g.start, g.end, g.more);
        if (r !== FEED_INCOMPLETE) {
          this.hole[e] = -1;
          if (r === FEED_COMPLETE) {
            const fw = this.fw[e];
            this.removeEntry(e);
            this.count(S_REASSEMBLED, 1);
            this.lastStatus = FRAG_ACCEPT;
            return fw;
          }
        }
      }
    }
    if (state === VALID) {
      this.lastStatus = FRAG_ACCEPT;
      return this.fw[e];
    }
    this.lastStatus = FRAG_DROPPED;
    if (state === POISONED) {
      this.countExt(S_DROP_LOST_DATAGRAM, 1);
      return -1;
    }
    // STORING
    if (
      !(len >= 0 && len <= this.mtu && off >= 0 && off + len <= buf.length) ||
      (len | 0) !== len || (off | 0) !== off
    ) {
      if (len > this.mtu) this.countExt(S_DROP_TOO_LONG, 1);
      return -1;
    }
    // A fragment longer than the copy range (--mtu) reaches us cut short: storing it would
    // re-inject a corrupt packet. Its IP header says how long it really is.
    if (declaredLength(buf, off, len) > len) {
      this.countExt(S_DROP_TOO_LONG, 1);
      return -1;
    }
    const slot = this.hdr[H_FRAG_FREE_HEAD];
    if (slot < 0) {
      this.state[e] = POISONED;
      const n = this.discardFrags(e);
      if (this.frags === 0) this.countExt(S_DROP_NO_TUN, 1);
      else this.countExt(S_DROP_POOL_FULL, 1 + n);
      return -1;
    }
    this.hdr[H_FRAG_FREE_HEAD] = this.fragNext[slot];
    // memcpy. The view of the source is the only allocation of fragment handling, and only
    // on this path (a fragment ahead of its first fragment): an allocation-free copy loop
    // is 4-9x slower than view + memcpy for MTU-sized fragments.
    this.fragBufs[slot].set(off === 0 && len === buf.length ? buf : buf.subarray(off, off + len));
    this.fragLen[slot] = len;
    this.fragNext[slot] = this.fragHead[e];
    this.fragHead[e] = slot;
    this.count(S_FRAGS_ALLOCATED, 1);
    this.lastStatus = FRAG_STORED;
    return -1;
  }

  /**
   * The table part of {@link first}: returns {@link FIRST_REFUSED}, or the
   * head of the detached stored-fragment list (-1 for none), which the
   * caller injects and frees.
   */
  private firstLocked(
    p: KeyParse,
    fw: number,
    buf: Uint8Array,
    off: number,
    len: number,
    now: number,
  ): number {
    const e = this.lookupOrCreate(p.key, now, true);
    if (e < 0) return FIRST_REFUSED;
    const state = this.state[e];
    if (state !== STORING) {
      this.countExt(state === VALID ? S_DROP_REPEATED_FIRST : S_DROP_LOST_DATAGRAM, 1);
      return FIRST_REFUSED;
    }
    this.state[e] = VALID;
    this.fw[e] = fw | 0;
    const stored = this.fragHead[e];
    this.fragHead[e] = -1;
    const h = this.hole[e];
    if (h >= 0 && fragmentGeometry(p, buf, off, len, this.geom)) {
      const g = this.geom;
      const r = (this.holes as HoleLists).feed(h, g.start, g.end, g.more);
      if (r !== FEED_INCOMPLETE) {
        this.hole[e] = -1;
        if (r === FEED_COMPLETE) {
          this.removeEntry(e);
          this.count(S_REASSEMBLED, 1);
        }
      }
    }
    return stored;
  }

  /**
   * Pass the detached stored fragments from `head` on to `inject` (no lock:
   * no other call can reach detached buffers), then free them under the lock
   * and count them: injected, or dropped when the write failed (also those
   * not reached because `inject` threw, or when there is no `inject`).
   */
  private injectStored(head: number): void {
    const inject = this.inject;
    let written = 0;
    try {
      if (inject !== null) {
        for (let s = head; s >= 0; s = this.fragNext[s]) {
          if (inject(this.fragBufs[s], this.fragLen[s]) !== false) written++;
        }
      }
    } finally {
      if (this.locking) lockWord(this.hdr, H_LOCK);
      let n = 0;
      let s = head;
      while (s >= 0) {
        const slot = s;
        s = this.fragNext[slot];
        this.freeFrag(slot);
        n++;
      }
      this.countExt(S_FRAGS_INJECTED, written);
      if (inject === null) this.countExt(S_DROP_NO_TUN, n);
      else this.countExt(S_DROP_TUN_WRITE, n - written);
      if (this.locking) unlockWord(this.hdr, H_LOCK);
    }
  }

  /** Adds `n` (mod 2^32) to 1.2.0's statistics counter at word index `i`. */
  private count(i: number, n: number): void {
    if (this.atomic) Atomics.add(this.st, i, n);
    else this.st[i] += n;
  }

  /** Adds `n` (mod 2^32) to our statistics counter at word index `i` of the object. */
  private countExt(i: number, n: number): void {
    if (n === 0) return;
    const j = i - (FTSHM_SIZE >>> 2);
    if (this.atomic) Atomics.add(this.ext, j, n);
    else this.ext[j] += n;
  }

  /** Returns a stored-fragment buffer to the pool. */
  private freeFrag(slot: number): void {
    this.fragNext[slot] = this.hdr[H_FRAG_FREE_HEAD];
    this.hdr[H_FRAG_FREE_HEAD] = slot;
  }

  /** Frees the entry's stored fragments, counting them as discarded; returns how many. */
  private discardFrags(e: number): number {
    let s = this.fragHead[e];
    if (s < 0) return 0;
    let n = 0;
    while (s >= 0) {
      const nx = this.fragNext[s];
      this.freeFrag(s);
      n++;
      s = nx;
    }
    this.fragHead[e] = -1;
    this.count(S_FRAGS_DISCARDED, n);
    return n;
  }

  /**
   * Releases what an entry owns and marks it free. Stored fragments are
   * discarded: only a storing entry has them, so their first fragment did
   * not come within the ttl.
   */
  private clearEntry(e: number): void {
    this.countExt(S_DROP_TTL, this.discardFrags(e));
    const h = this.hole[e];
    if (h >= 0) {
      (this.holes as HoleLists).destroy(h);
      this.hole[e] = -1;
    }
    this.state[e] = FREE;
  }

  /** Removes a live entry (its bucket has just been garbage-collected by the lookup). */
  private removeEntry(e: number): void {
    this.clearEntry(e);
    if (e < this.size) return; // inline entry: its chain (if any) stays
    // Unlink the extra bucket from its main bucket's chain.
    const b = this.owner[e];
    let prev = b;
    let c = this.next[b];
    while (c >= 0 && c !== e) {
      prev = c;
      c = this.next[c];
    }
    if (c === e) {
      this.next[prev] = this.next[e];
      this.releaseBucket(e);
    }
  }

  /** Returns an (already unlinked) extra bucket to the pool. */
  private releaseBucket(e: number): void {
    this.next[e] = -1;
    this.bucketFree[this.hdr[H_BUCKET_FREE_TOP]++] = e;
    this.count(S_BUCKETS_USED, -1);
  }

  /**
   * Reclaims the stale entries of main bucket `b` (docs/COMPATIBILITY.md#fragments): the inline
   * entry, and the chained extra buckets, which go back to the pool. Each counts `objGC`.
   */
  private collectBucket(b: number, now: number): void {
    const state = this.state;
    const lastRef = this.lastRef;
    const next = this.next;
    const ttl = this.ttlNs;
    if (state[b] !== FREE && now - lastRef[b] > ttl) {
      this.clearEntry(b);
      this.count(S_OBJGC, 1);
    }
    let prev = b;
    let c = next[b];
    while (c >= 0) {
      const nx = next[c];
      if (now - lastRef[c] > ttl) {
        this.clearEntry(c);
        next[prev] = nx;
        this.releaseBucket(c);
        this.count(S_OBJGC, 1);
      } else {
        prev = c;
      }
      c = nx;
    }
  }

  /** True if entry `e` holds the key in the scratch words. */
  private keyEquals(e: number): boolean {
    const keys = this.keys;
    const kw = this.kw;
    const o = e * KEY_WORDS;
    for (let i = 0; i < KEY_WORDS; i++) if (keys[o + i] !== kw[i]) return false;
    return true;
  }

  /**
   * Looks up the entry for `key` (lookups += 1), garbage-collecting stale
   * entries of its bucket on the way; if absent inserts a new `storing`
   * entry (inserts += 1). Returns the entry index or -1 if no entry or extra
   * bucket was available. `withHoles`: give a new entry a hole list.
   */
  private lookupOrCreate(key: Uint8Array, now: number, withHoles: boolean): number {
    // One pass over the key: its words (for comparisons) and djb2(key[0..40]) (docs/COMPATIBILITY.md#fragments),
    // four bytes per step as in hash.ts: h·33⁴ + b0·33³ + b1·33² + b2·33 + b3 (mod 2^32).
    const kw = this.kw;
    let h = DJB2_SEED;
    for (let i = 0, j = 0; i < KEY_WORDS; i++, j += 4) {
      const b0 = key[j];
      const b1 = key[j + 1];
      const b2 = key[j + 2];
      const b3 = key[j + 3];
      kw[i] = b0 | (b1 << 8) | (b2 << 16) | (b3 << 24);
      h = (Math.imul(h, 1185921) + Math.imul(b0, 35937) + Math.imul(b1, 1089) + b2 * 33 + b3) | 0;
    }
    const b = (h >>> 0) % this.size;
    const state = this.state;
    const lastRef = this.lastRef;
    const next = this.next;
    this.count(S_LOOKUPS, 1);

    // Lazy GC of the bucket, then the search: the inline entry, then the chain.
    this.collectBucket(b, now);
    let found = -1;
    if (state[b] !== FREE && this.keyEquals(b)) found = b;
    for (let c = next[b]; found < 0 && c >= 0; c = next[c]) if (this.keyEquals(c)) found = c;
    if (found >= 0) {
      lastRef[found] = now;
      return found;
    }

    // Insert.
    this.count(S_INSERTS, 1);
    let e: number;
    if (state[b] === FREE) {
      if (next[b] >= 0) this.count(S_COLLISIONS, 1);
      e = b;
    } else {
      this.count(S_COLLISIONS, 1);
      if (this.hdr[H_BUCKET_FREE_TOP] === 0) {
        this.count(S_REJECTED, 1);
        return -1;
      }
      e = this.bucketFree[--this.hdr[H_BUCKET_FREE_TOP]];
      this.count(S_BUCKETS_ALLOCATED, 1);
      this.count(S_BUCKETS_USED, 1);
      next[e] = next[b];
      next[b] = e;
    }
    const keys = this.keys;
    const o = e * KEY_WORDS;
    for (let i = 0; i < KEY_WORDS; i++) keys[o + i] = kw[i];
    state[e] = STORING;
    this.owner[e] = b;
    lastRef[e] = now;
    this.fw[e] = 0;
    this.fragHead[e] = -1;
    // An entry created by a non-first fragment would abandon reassembly at once (docs/COMPATIBILITY.md#fragments).
    this.hole[e] = withHoles && this.holes !== null ? this.holes.create() : -1;
    return e;
  }
}
