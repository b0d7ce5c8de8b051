/**
 * The bounded, lock-free ring that carries "this 5-tuple got this mark"
 * from one queue thread (the only producer) to the fast-path writer (the
 * only consumer), in a SharedArrayBuffer. Each slot holds the nft map key
 * as the map stores it (./nft_key.ts), the mark and the epoch the queue
 * thread read before deciding (the writer drops offers older than its last
 * flush). The producer writes slots during a batch and publishes them with
 * one atomic store at its end; when the ring is full the offer is dropped
 * and counted (the packet still got its verdict: the flow just stays on
 * the queue path a little longer). Nothing allocates per offer.
 *
 * @example
 * ```ts
 * import { OfferReader, OfferRing, OfferWriter } from "./offer_ring.ts";
 * const mem = OfferRing.create(8);
 * const w = new OfferWriter(mem);
 * const key = new Uint8Array(40);
 * w.begin();
 * w.offer(key, false, 101, 0);
 * w.end();
 * const r = new OfferReader(mem);
 * r.next(); // true
 * r.mark; // 101
 * ```
 * @module
 */
import { encodeKey, MAX_KEY_LEN } from "./nft_key.ts";

/** Bytes of one slot: mark, epoch, key length (u32 each), then the key. */
const SLOT = 64;
const HEADER = 64;
/** Header words: produced count, consumed count, dropped offers. */
const W_TAIL = 0, W_HEAD = 1, W_DROPPED = 2;

/** Memory of a ring. */
export const OfferRing = {
  /** A ring of `slots` slots (a power of two). */
  create(slots: number): SharedArrayBuffer {
    if (slots < 1 || (slots & (slots - 1)) !== 0) throw new RangeError("slots: a power of two");
    return new SharedArrayBuffer(HEADER + slots * SLOT);
  },
  /** The number of slots of `mem`. */
  slots(mem: SharedArrayBuffer): number {
    return (mem.byteLength - HEADER) / SLOT;
  },
};

/** The queue thread's end. */
export class OfferWriter {
  readonly #words: Int32Array;
  readonly #slots: Uint32Array;
  readonly #bytes: Uint8Array;
  readonly #mask: number;
  #tail = 0;
  /** The tail at the start of the batch. */
  #begun = 0;
  #limit = 0;
  #dropped = 0;

  constructor(mem: SharedArrayBuffer) {
    this.#words = new Int32Array(mem, 0, HEADER >>> 2);
    this.#slots = new Uint32Array(mem, HEADER);
    this.#bytes = new Uint8Array(mem, HEADER);
    this.#mask = OfferRing.slots(mem) - 1;
    this.#tail = Atomics.load(this.#words, W_TAIL);
  }

  /** Start a batch: how far the consumer has read (one atomic load). */
  begin(): void {
    // Counts wrap at 2^32 (int32 arithmetic throughout): the limit is the head plus the size.
    this.#limit = (Atomics.load(this.#words, W_HEAD) + this.#mask + 1) | 0;
    this.#begun = this.#tail;
  }

  /**
   * Offer the 40-byte flow key `key` (IPv6 if `v6`) with `mark`, decided
   * in `epoch`. Returns false (and counts a drop) when the ring is full.
   */
  offer(key: Uint8Array, v6: boolean, mark: number, epoch: number): boolean {
    const t = this.#tail;
    if (((t - this.#limit) | 0) >= 0) {
      this.#dropped++;
      return false;
    }
    const s = (t & this.#mask) * (SLOT >>> 2);
    this.#slots[s] = mark >>> 0;
    this.#slots[s + 1] = epoch >>> 0;
    this.#slots[s + 2] = encodeKey(key, v6, this.#bytes, s * 4 + 12);
    this.#tail = (t + 1) | 0;
    return true;
  }

  /** End a batch: publish its offers (and the drop count) to the consumer; true when there were offers. */
  end(): boolean {
    Atomics.store(this.#words, W_TAIL, this.#tail);
    if (this.#dropped !== 0) {
      Atomics.add(this.#words, W_DROPPED, this.#dropped);
      this.#dropped = 0;
    }
    return this.#tail !== this.#begun;
  }
}

/** The writer thread's end: {@link OfferReader.next} makes the next offer current. */
export class OfferReader {
  readonly #words: Int32Array;
  readonly #slots: Uint32Array;
  /** The ring's bytes; the current key is `bytes[keyAt, keyAt + keyLen)`. */
  readonly bytes: Uint8Array;
  readonly #mask: number;
  #head: number;
  #tail = 0;
  /** The current offer's mark, epoch, key offset and key length. */
  mark = 0;
  epoch = 0;
  keyAt = 0;
  keyLen = 0;

  constructor(mem: SharedArrayBuffer) {
    this.#words = new Int32Array(mem, 0, HEADER >>> 2);
    this.#slots = new Uint32Array(mem, HEADER);
    this.bytes = new Uint8Array(mem, HEADER);
    this.#mask = OfferRing.slots(mem) - 1;
    this.#head = Atomics.load(this.#words, W_HEAD);
    this.#tail = this.#head;
  }

  /** Move to the next offer; false when there is none. The slot is released by the next call or {@link release}. */
  next(): boolean {
    if (this.#head === this.#tail) {
      this.release();
      this.#tail = Atomics.load(this.#words, W_TAIL);
      if (this.#head === this.#tail) return false;
    }
    const s = (this.#head & this.#mask) * (SLOT >>> 2);
    this.mark = this.#slots[s];
    this.epoch = this.#slots[s + 1];
    this.keyLen = Math.min(this.#slots[s + 2], MAX_KEY_LEN);
    this.keyAt = s * 4 + 12;
    this.#head = (this.#head + 1) | 0;
    return true;
  }

  /** Whether offers wait that {@link next} has not returned (one atomic load). */
  waiting(): boolean {
    return this.#head !== this.#tail || Atomics.load(this.#words, W_TAIL) !== this.#head;
  }

  /** Give the slots read so far back to the producer. */
  release(): void {
    Atomics.store(this.#words, W_HEAD, this.#head);
  }

  /** Offers dropped because the ring was full. */
  get dropped(): number {
    return Atomics.load(this.#words, W_DROPPED);
  }
}
