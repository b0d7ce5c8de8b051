/**
 * Fragment "reassembler" (docs/COMPATIBILITY.md#fragments): it never rebuilds a datagram, it only
 * detects that every byte of it has been seen, using the RFC 815 hole list.
 * All lists share one fixed pool of `K` hole descriptors (typed arrays, no
 * allocation after construction); a tracked datagram uses one head
 * descriptor plus one per hole.
 *
 * {@link fragmentGeometry} gives `[start, end)` and the "more fragments"
 * flag of an IPv4 or IPv6 fragment (docs/COMPATIBILITY.md#fragments) from
 * the packet's parse: it does not parse the packet again.
 *
 * @example
 * ```ts
 * import { FEED_COMPLETE, FragGeometry, fragmentGeometry, HoleLists } from "./reassembler.ts";
 * import { ETH_P_IP, KeyParse, parseKeyAt } from "../packet/parse.ts";
 * const holes = new HoleLists(8);
 * const list = holes.create(); // [0, ∞)
 * holes.feed(list, 0, 1480, true); // FEED_INCOMPLETE, holes: [1480, ∞)
 * holes.feed(list, 1480, 2000, false) === FEED_COMPLETE; // true, list released
 *
 * const g = new FragGeometry(); // reuse per packet
 * const pkt = new Uint8Array(48);
 * pkt.set([0x45, 0, 0, 48, 0, 1, 0x20, 0x01, 64, 17]); // IPv4, total length 48, MF, offset 8
 * const kp = new KeyParse();
 * parseKeyAt(kp, pkt, 0, 48, ETH_P_IP, 0); // 2: non-first fragment
 * fragmentGeometry(kp, pkt, 0, 48, g); // true: g.start 8, g.end 36, g.more true
 * ```
 * @module
 */

import { be16 } from "../wire/bounds.ts";
import { IPV4_TOTAL_LEN } from "../wire/ipv4.ts";
import { IPV6_FRAG_HEADER_LEN } from "../wire/ipv6.ts";
import { type KeyParse, RC_FIRST_FRAG, RC_NON_FIRST_FRAG } from "../packet/parse.ts";

/** {@link HoleLists.feed}: holes remain. */
export const FEED_INCOMPLETE = 0;
/** {@link HoleLists.feed}: the hole list became empty; the list has been released. */
export const FEED_COMPLETE = 1;
/** {@link HoleLists.feed}: a hole had to be split but the pool was empty; the list has been released. */
export const FEED_ABANDONED: number = -1;

/** Inclusive "last byte" of the initial hole `[0, ∞)`. */
const INFINITY = 0x7fffffff;

/** Words before the descriptor arrays: the free list's head and count. */
const HEAD_WORDS = 2;
const FREE_HEAD = 0;
const FREE_COUNT = 1;

/**
 * A pool of `K` hole descriptors holding any number of RFC 815 hole lists.
 * A list is identified by the index of its head descriptor. Descriptor
 * memory is preallocated; nothing is allocated per fragment.
 */
export class HoleLists {
  /** Pool size `K`. */
  declare readonly capacity: number;
  /** First byte of each hole (inclusive). */
  declare private readonly first: Int32Array;
  /** Last byte of each hole (inclusive; {@link INFINITY} for the open hole). */
  declare private readonly last: Int32Array;
  /** Next descriptor in a list (or in the free list), -1 at the end. */
  declare private readonly next: Int32Array;
  /** [head of the free list, descriptors currently free]: in the pool's memory, so shareable. */
  declare private readonly head: Int32Array;

  /** Bytes of memory a pool of `k` descriptors needs (see the constructor's `memory`). */
  static byteLength(k: number): number {
    return 4 * (HEAD_WORDS + 3 * k);
  }

  /**
   * A pool of `k` descriptors (`k` a non-negative integer; 0 disables
   * tracking). By default the pool has memory of its own; `memory` places it
   * at a 4-byte aligned `offset` of a caller's buffer
   * ({@link HoleLists.byteLength} bytes), e.g. a SharedArrayBuffer that
   * several threads view (they must serialise their calls). `init` false
   * attaches to a pool already initialised there.
   */
  constructor(k: number, memory?: { buffer: ArrayBufferLike; offset: number }, init = true) {
    if (!Number.isSafeInteger(k) || k < 0) {
      throw new RangeError(`reassembler: pool size must be a non-negative integer, got ${k}`);
    }
    this.capacity = k;
    const buffer = memory?.buffer ?? new ArrayBuffer(HoleLists.byteLength(k));
    const base = memory?.offset ?? 0;
    this.head = new Int32Array(buffer, base, HEAD_WORDS);
    this.first = new Int32Array(buffer, base + 4 * HEAD_WORDS, k);
    this.last = new Int32Array(buffer, base + 4 * (HEAD_WORDS + k), k);
    this.next = new Int32Array(buffer, base + 4 * (HEAD_WORDS + 2 * k), k);
    if (!init) return;
    for (let i = 0; i < k; i++) this.next[i] = i + 1 < k ? i + 1 : -1;
    this.head[FREE_HEAD] = k > 0 ? 0 : -1;
    this.head[FREE_COUNT] = k;
  }

  /** Descriptors not in use. */
  get free(): number {
    return this.head[FREE_COUNT];
  }

  /** Takes a descriptor from the free list (-1 if none). */
  private alloc(): number {
    const head = this.head;
    const d = head[FREE_HEAD];
    if (d >= 0) {
      head[FREE_HEAD] = this.next[d];
      head[FREE_COUNT]--;
    }
    return d;
  }

  /** Puts a descriptor back on the free list. */
  private release(d: number): void {
    this.next[d] = this.head[FREE_HEAD];
    this.head[FREE_HEAD] = d;
    this.head[FREE_COUNT]++;
  }

  /**
   * A new list holding the single hole `[0, ∞)` (two descriptors: head and
   * hole). Returns its handle, or -1 if fewer than two descriptors are free.
   */
  create(): number {
    if (this.head[FREE_COUNT] < 2) return -1;
    const head = this.alloc();
    const hole = this.alloc();
    this.first[hole] = 0;
    this.last[hole] = INFINITY;
    this.next[hole] = -1;
    this.next[head] = hole;
    return head;
  }

  /** Returns every descriptor of list `head` to the pool. `head` must be a live handle. */
  destroy(head: number): void {
    let d = this.next[head];
    while (d >= 0) {
      const n = this.next[d];
      this.release(d);
      d = n;
    }
    this.release(head);
  }

  /** Number of holes in list `head`. */
  holes(head: number): number {
    let n = 0;
    for (let d = this.next[head]; d >= 0; d = this.next[d]) n++;
    return n;
  }

  /**
   * RFC 815 steps 1–8 for the fragment covering bytes `[start, end)` of the
   * datagram (`more` = more fragments follow). Returns
   * {@link FEED_INCOMPLETE}, {@link FEED_COMPLETE} or {@link FEED_ABANDONED}
   * (the last two release the list). Offsets outside `[0, 2^31 − 1)` or
   * `end < start` leave the list unchanged (FEED_INCOMPLETE).
   */
  feed(head: number, start: number, end: number, more: boolean): number {
    if (!(start >= 0 && end >= start && end < INFINITY)) return FEED_INCOMPLETE;
    const fFirst = start | 0;
    const fLast = (end | 0) - 1;
    const first = this.first;
    const last = this.last;
    const next = this.next;
    let prev = head;
    let d = next[head];
    while (d >= 0) {
      const hFirst = first[d];
      const hLast = last[d];
      // Steps 2 and 3: no overlap with this hole.
      if (fFirst > hLast || fLast < hFirst) {
        prev = d;
        d = next[d];
        continue;
      }
      // Step 4: delete the hole; steps 5 and 6 may put back up to two pieces.
      const after = next[d];
      const keepBefore = fFirst > hFirst;
      const keepAfter = fLast < hLast && more;
      if (keepBefore && keepAfter) {
        // Reuse d for the part before, and one new descriptor for the part after.
        const n = this.alloc();
        if (n < 0) {
          this.destroy(head);
          return FEED_ABANDONED;
        }
        last[d] = fFirst - 1;
        first[n] = fLast + 1;
        last[n] = hLast;
        next[n] = after;
        next[d] = n;
        prev = n;
      } else if (keepBefore) {
        last[d] = fFirst - 1;
        prev = d;
      } else if (keepAfter) {
        first[d] = fLast + 1;
        prev = d;
      } else {
        next[prev] = after;
        this.release(d);
      }
      d = after;
    }
    // Step 8.
    if (next[head] < 0) {
      this.release(head);
      return FEED_COMPLETE;
    }
    return FEED_INCOMPLETE;
  }
}

/** Output of {@link fragmentGeometry}; allocate one and reuse it. */
export class FragGeometry {
  /** First byte of the fragment in the datagram's fragmentable part. */
  start = 0;
  /** One past the fragment's last byte. */
  end = 0;
  /** More fragments follow (IPv4 MF / IPv6 M flag). */
  more = false;
}

/**
 * Fragment geometry (docs/COMPATIBILITY.md#fragments) of the fragment at
 * `buf[off, off + len)` whose parse is `p` (the same range, rc with a
 * fragment bit). Returns false (ignore the fragment) when `p` is not a
 * fragment, or `len` is not an integer ≥ 1 within `buf`, or:
 * - IPv4: the total-length field differs from `len`, or the header (with
 *   options) is longer than `len`; else start = offset × 8,
 *   end = start + `len` − header length, more = MF;
 * - IPv6: start = `offlg & 0xFFF8` of the fragment header,
 *   end = start + bytes after the fragment header, more = M.
 * Never throws; reads only the IPv4 total-length field of the packet.
 */
export function fragmentGeometry(
  p: KeyParse,
  buf: Uint8Array,
  off: number,
  len: number,
  out: FragGeometry,
): boolean {
  const rc = p.rc;
  if (rc < 0 || (rc & (RC_FIRST_FRAG | RC_NON_FIRST_FRAG)) === 0) return false;
  if (!(len > 0 && off >= 0 && off + len <= buf.length) || (len | 0) !== len) return false;
  let payload: number; // where the fragment's bytes start
  if (p.fragHeader >= 0) {
    payload = p.fragHeader + IPV6_FRAG_HEADER_LEN;
  } else {
    if (be16(buf, off + IPV4_TOTAL_LEN) !== len) return false;
    payload = p.l4Offset; // after the header and its options
    if (payload > off + len) return false;
  }
  out.start = p.fragOffset;
  out.end = p.fragOffset + off + len - payload;
  out.more = p.fragMore;
  return true;
}
