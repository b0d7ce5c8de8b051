/**
 * `poll(2)` over a reusable `struct pollfd` array, for the control server's event loop
 * (docs/COMPATIBILITY.md#control-protocol). Blocks the calling (worker) thread up to a timeout.
 * @module
 */
import { EINTR } from "./constants.ts";
import { errno, getLibc, LibcError } from "./libc.ts";

/** Readable. */
export const POLLIN = 0x1;
/** Writable. */
export const POLLOUT = 0x4;
/** Error condition (revents only). */
export const POLLERR = 0x8;
/** Hang-up (revents only). */
export const POLLHUP = 0x10;
/** Not an open fd (revents only). */
export const POLLNVAL = 0x20;

/** `struct pollfd` { int fd; short events; short revents; }. */
const POLLFD_SIZE = 8;
const OFF_FD = 0;
const OFF_EVENTS = 4;
const OFF_REVENTS = 6;

/** A set of up to `capacity` fds to wait on; filled anew before each {@link PollSet.wait}. */
export class PollSet {
  readonly #buf: Uint8Array<ArrayBuffer>;
  readonly #dv: DataView;
  #count = 0;

  constructor(readonly capacity: number) {
    this.#buf = new Uint8Array(capacity * POLLFD_SIZE);
    this.#dv = new DataView(this.#buf.buffer);
  }

  /** Number of fds added since the last {@link PollSet.clear}. */
  get count(): number {
    return this.#count;
  }

  /** Forget all fds. */
  clear(): void {
    this.#count = 0;
  }

  /** Add `fd` waiting for `events`; returns its index. Throws when full. */
  add(fd: number, events: number): number {
    if (this.#count >= this.capacity) throw new RangeError("PollSet full");
    const off = this.#count * POLLFD_SIZE;
    this.#dv.setInt32(off + OFF_FD, fd, true);
    this.#dv.setInt16(off + OFF_EVENTS, events, true);
    this.#dv.setInt16(off + OFF_REVENTS, 0, true);
    return this.#count++;
  }

  /** Wait up to `timeoutMs` (EINTR counts as a timeout); the number of ready fds. */
  wait(timeoutMs: number): number {
    const n = getLibc().poll(this.#buf, BigInt(this.#count), timeoutMs);
    if (n >= 0) return n;
    const e = errno();
    if (e === EINTR) return 0;
    throw new LibcError("poll", e);
  }

  /** The `revents` of entry `i` after {@link PollSet.wait}. */
  revents(i: number): number {
    return this.#dv.getInt16(i * POLLFD_SIZE + OFF_REVENTS, true);
  }
}
