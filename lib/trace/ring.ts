/**
 * A single-producer, single-consumer ring of text lines in a
 * SharedArrayBuffer, from a queue thread (producer) to the trace thread
 * (consumer). A line is published whole or not at all: when it does not fit,
 * it is counted as dropped, so a slow trace client never blocks packet
 * processing and memory stays bounded.
 *
 * Layout: Int32Array header [written, read, dropped] (byte counters modulo
 * 2³², read and written with Atomics), then `capacity` data bytes
 * (a power of two).
 *
 * @example
 * ```ts
 * import { TraceRing } from "./ring.ts";
 * const ring = new TraceRing(TraceRing.create(1024));
 * ring.write("hello");
 * let text = "";
 * ring.drain((bytes) => text += new TextDecoder().decode(bytes));
 * // text === "hello\n"
 * ```
 * @module
 */

const HEADER = 16;
const W = 0;
const R = 1;
const DROPPED = 2;
const encoder = new TextEncoder();

/** One end (either) of a ring over a shared buffer. */
export class TraceRing {
  declare readonly buffer: SharedArrayBuffer;
  declare readonly capacity: number;
  declare private readonly head: Int32Array;
  declare private readonly data: Uint8Array;
  declare private readonly scratch: Uint8Array;

  /** A new shared buffer for a ring of `capacity` bytes (rounded up to a power of two ≥ 64). */
  static create(capacity: number): SharedArrayBuffer {
    let c = 64;
    while (c < capacity) c *= 2;
    return new SharedArrayBuffer(HEADER + c);
  }

  /** Attach to a buffer made by {@link TraceRing.create} (in any thread). */
  constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    this.capacity = buffer.byteLength - HEADER;
    this.head = new Int32Array(buffer, 0, 4);
    this.data = new Uint8Array(buffer, HEADER);
    this.scratch = new Uint8Array(Math.min(this.capacity, 4096));
  }

  /** Lines dropped because the ring was full (or longer than the ring). */
  get dropped(): number {
    return Atomics.load(this.head, DROPPED) >>> 0;
  }

  /** Producer: append `text` and a newline; false (counted as dropped) if it does not fit. */
  write(text: string): boolean {
    const s = this.scratch;
    const { written } = encoder.encodeInto(text, s.subarray(0, s.length - 1));
    s[written] = 0x0a;
    const n = written + 1;
    const w = Atomics.load(this.head, W) >>> 0;
    const used = (w - (Atomics.load(this.head, R) >>> 0)) >>> 0;
    if (used + n > this.capacity) {
      Atomics.add(this.head, DROPPED, 1);
      return false;
    }
    const mask = this.capacity - 1;
    const at = w & mask;
    const first = Math.min(n, this.capacity - at);
    this.data.set(s.subarray(0, first), at);
    if (first < n) this.data.set(s.subarray(first, n), 0);
    Atomics.store(this.head, W, (w + n) | 0);
    return true;
  }

  /** Consumer: pass everything written so far to `sink` (at most two views), then free it. */
  drain(sink: (bytes: Uint8Array) => void): number {
    const w = Atomics.load(this.head, W) >>> 0;
    const r = Atomics.load(this.head, R) >>> 0;
    const n = (w - r) >>> 0;
    if (n === 0) return 0;
    const at = r & (this.capacity - 1);
    const first = Math.min(n, this.capacity - at);
    sink(this.data.subarray(at, at + first));
    if (first < n) sink(this.data.subarray(0, n - first));
    Atomics.store(this.head, R, w | 0);
    return n;
  }
}
