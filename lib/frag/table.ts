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
import {
  FT_OFF_BUCKETS_ALLOCATED,
  FT_OFF_BUCKETS_USED,
  FT_OFF_COLLISIONS,
  FT_OFF_FRAGS_ALLOCATED,
  FT_OFF_FRAGS_DISCARDED,
  FT_OFF_INSERTS,
  FT_OFF_LOOKUPS,
  FT_OFF_OBJGC,
  FT_OFF_REASSEMBLED,
  FT_OFF_REJECTED,
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

export type { FtStatsBytes };

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Receives a stored fragment to re-inject (write it to the tun device).
 * `bytes[0, len)` is valid only during the call: copy it if needed.
 */
export type InjectFn = (bytes: Uint8Array, len: number) => void;

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
   * The 72-byte `ftshm` object (docs/COMPATIBILITY.md#shared-memory) to keep the statistics in, e.g. a
   * shared-memory mapping. It is zero-filled and its static fields are
   * written. Default: a private buffer (see {@link FragTable.stats}).
   */
  stats?: FtStatsBytes;
  /** Called synchronously for each stored fragment when the first fragment arrives (LIFO). */
  inject?: InjectFn;
  /**
   * Zero-fill `stats` and write its static fields (default true). Pass false
   * when the object was already initialised (`initFtStats`) and other tables
   * (e.g. one per queue worker) are already counting in it.
   */
  initStats?: boolean;
  /**
   * Update the counters with `Atomics` (default false): needed when tables in
   * several threads share one `stats` mapping, else increments can be lost.
   */
  atomicStats?: boolean;
}

function checkInt(name: string, v: number, min: number): number {
  if (!Number.isSafeInteger(v) || v < min || v > 0xffffffff) {
    throw new RangeError(
      `FragTable: ${name} must be an integer in [${min}, 4294967295], got ${v}`,
    );
  }
  return v;
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
 * All methods are synchronous and never throw on packet input (except what
 * the `inject` callback throws).
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
  /**
   * Outcome of the last {@link nonFirst} call: {@link FRAG_ACCEPT},
   * {@link FRAG_STORED} or {@link FRAG_DROPPED} (for the trace messages
   * `Handle non-first frag locally`, `Fragment stored`, `Fragment dropped`).
   */
  declare lastStatus: number;

  // Statistics as u32 words (little-endian host).
  declare private readonly st: Uint32Array;
  declare private readonly atomic: boolean;
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
  declare private bucketFreeTop: number;
  // Stored fragments.
  declare private readonly fragBufs: Uint8Array[];
  declare private readonly fragLen: Int32Array;
  declare private readonly fragNext: Int32Array;
  declare private fragFreeHead: number;
  // Reassembler (null when disabled).
  declare private readonly holes: HoleLists | null;
  declare private readonly geom: FragGeometry;
  declare private readonly inject: InjectFn | null;
  /** The current key as words (scratch). */
  declare private readonly kw: Int32Array;

  /**
   * Allocates every pool and initialises the statistics. Throws RangeError
   * for `size < 1` (docs/COMPATIBILITY.md#differences D20), negative or non-integer parameters, or a
   * statistics buffer shorter than 72 bytes.
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

    const statsBytes = opts.stats ?? new ArrayBuffer(FTSHM_SIZE);
    const stats = statsBytes instanceof Uint8Array
      ? statsBytes.subarray(0, FTSHM_SIZE)
      : new Uint8Array(statsBytes, 0, Math.min(FTSHM_SIZE, statsBytes.byteLength));
    if (stats.byteLength < FTSHM_SIZE) {
      throw new RangeError(`FragTable: stats needs ${FTSHM_SIZE} bytes, got ${stats.byteLength}`);
    }
    if (stats.byteOffset % 4 !== 0) {
      throw new RangeError("FragTable: stats must be 4-byte aligned");
    }
    if (opts.initStats ?? true) initFtStats(stats, { ttlMs, size, mtu, buckets, frags });
    this.stats = stats;
    this.atomic = opts.atomicStats ?? false;
    this.st = new Uint32Array(stats.buffer, stats.byteOffset, FTSHM_SIZE >>> 2);

    this.size = size;
    this.buckets = buckets;
    this.frags = frags;
    this.mtu = mtu;
    this.ttlNs = ttlMs * 1_000_000;
    this.lastStatus = FRAG_ACCEPT;

    const entries = size + buckets;
    this.state = new Uint8Array(entries);
    this.lastRef = new Float64Array(entries);
    this.fw = new Int32Array(entries);
    this.next = new Int32Array(entries).fill(-1);
    this.fragHead = new Int32Array(entries).fill(-1);
    this.hole = new Int32Array(entries).fill(-1);
    this.owner = new Int32Array(entries);
    this.keys = new Int32Array(entries * KEY_WORDS);
    this.bucketFree = new Int32Array(buckets);
    // Pop order: size, size+1, ...
    for (let j = 0; j < buckets; j++) this.bucketFree[j] = size + buckets - 1 - j;
    this.bucketFreeTop = buckets;

    const pool = new Uint8Array(frags * mtu);
    const bufs: Uint8Array[] = new Array(frags);
    for (let i = 0; i < frags; i++) bufs[i] = pool.subarray(i * mtu, (i + 1) * mtu);
    this.fragBufs = bufs;
    this.fragLen = new Int32Array(frags);
    this.fragNext = new Int32Array(frags);
    for (let i = 0; i < frags; i++) this.fragNext[i] = i + 1 < frags ? i + 1 : -1;
    this.fragFreeHead = frags > 0 ? 0 : -1;

    this.holes = k > 0 ? new HoleLists(k) : null;
    this.geom = new FragGeometry();
    this.inject = opts.inject ?? null;
    this.kw = new Int32Array(KEY_WORDS);
  }

  /**
   * A non-first fragment (`fragGetValueOrStore`, docs/COMPATIBILITY.md#fragments). `p` is its parse
   * (`p.key` the 40-byte id-form key), `buf[off, off + len)` the packet,
   * `now` the monotonic time in ns. Returns the fwmark (≥ 0: ACCEPT with it)
   * or -1 (DROP); on -1 {@link lastStatus} tells whether the fragment was
   * stored (and will be re-injected) or dropped.
   */
  nonFirst(p: KeyParse, buf: Uint8Array, off: number, len: number, now: number): number {
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
    if (state === POISONED) {
      this.lastStatus = FRAG_DROPPED;
      return -1;
    }
    // STORING
    if (
      !(len >= 0 && len <= this.mtu && off >= 0 && off + len <= buf.length) ||
      (len | 0) !== len || (off | 0) !== off
    ) {
      this.lastStatus = FRAG_DROPPED;
      return -1;
    }
    const slot = this.fragFreeHead;
    if (slot < 0) {
      this.state[e] = POISONED;
      this.discardFrags(e);
      this.lastStatus = FRAG_DROPPED;
      return -1;
    }
    this.fragFreeHead = this.fragNext[slot];
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
   * A first fragment with target fwmark `fw ≥ 0` (`handleFirstFragment`,
   * docs/COMPATIBILITY.md#fragments); `p` is its parse, with `p.key` already in id form
   * ({@link setIdForm}), and `buf[off, off + len)` the packet.
   * Returns true if the first fragment is to be ACCEPTed with `fw`, false if
   * it must be DROPped (no entry available, or the entry is already valid
   * or poisoned). On success every stored fragment of the datagram is passed
   * to `inject`, most recently stored first, and its buffer is freed.
   */
  first(p: KeyParse, fw: number, buf: Uint8Array, off: number, len: number, now: number): boolean {
    const e = this.lookupOrCreate(p.key, now, true);
    if (e < 0 || this.state[e] !== STORING) return false;
    this.state[e] = VALID;
    this.fw[e] = fw | 0;
    let stored = this.fragHead[e];
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
    if (stored >= 0) {
      const inject = this.inject;
      try {
        while (stored >= 0) {
          const slot = stored;
          stored = this.fragNext[slot];
          try {
            if (inject !== null) inject(this.fragBufs[slot], this.fragLen[slot]);
          } finally {
            this.freeFrag(slot);
          }
        }
      } finally {
        // Only reached with stored >= 0 if inject threw: release the rest.
        while (stored >= 0) {
          const slot = stored;
          stored = this.fragNext[slot];
          this.freeFrag(slot);
        }
      }
    }
    return true;
  }

  /** Extra buckets currently free. */
  get bucketsFree(): number {
    return this.bucketFreeTop;
  }

  /** Stored-fragment buffers currently free. */
  get fragsFree(): number {
    let n = 0;
    for (let s = this.fragFreeHead; s >= 0; s = this.fragNext[s]) n++;
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

  // ---- internals ----------------------------------------------------------------------------

  /** Adds `n` (mod 2^32) to the statistics counter at word index `i`. */
  private count(i: number, n: number): void {
    if (this.atomic) Atomics.add(this.st, i, n);
    else this.st[i] += n;
  }

  /** Returns a stored-fragment buffer to the pool. */
  private freeFrag(slot: number): void {
    this.fragNext[slot] = this.fragFreeHead;
    this.fragFreeHead = slot;
  }

  /** Frees the entry's stored fragments, counting them as discarded. */
  private discardFrags(e: number): void {
    let s = this.fragHead[e];
    if (s < 0) return;
    let n = 0;
    while (s >= 0) {
      const nx = this.fragNext[s];
      this.freeFrag(s);
      n++;
      s = nx;
    }
    this.fragHead[e] = -1;
    this.count(S_FRAGS_DISCARDED, n);
  }

  /** Releases what an entry owns (stored fragments are discarded) and marks it free. */
  private clearEntry(e: number): void {
    this.discardFrags(e);
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
    this.bucketFree[this.bucketFreeTop++] = e;
    this.count(S_BUCKETS_USED, -1);
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
    const ttl = this.ttlNs;
    this.count(S_LOOKUPS, 1);

    // Lazy GC and search: the inline entry, then the chain.
    let found = -1;
    if (state[b] !== FREE) {
      if (now - lastRef[b] > ttl) {
        this.clearEntry(b);
        this.count(S_OBJGC, 1);
      } else if (this.keyEquals(b)) {
        found = b;
      }
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
        if (found < 0 && this.keyEquals(c)) found = c;
        prev = c;
      }
      c = nx;
    }
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
      if (this.bucketFreeTop === 0) {
        this.count(S_REJECTED, 1);
        return -1;
      }
      e = this.bucketFree[--this.bucketFreeTop];
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
