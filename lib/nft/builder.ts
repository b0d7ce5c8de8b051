/**
 * A writer of nfnetlink messages into one reusable buffer: message headers
 * (`nlmsghdr` + `nfgenmsg`), attributes of the usual types and nested
 * attributes, with lengths and padding filled in as messages and nests are
 * closed. Several messages go one after the other, so one buffer holds a
 * whole nf_tables batch (`./nf_tables.ts`). Pure: no FFI. Numbers in
 * attributes are big-endian, as nf_tables expects them; the header is in host
 * order, as netlink expects it.
 *
 * @example
 * ```ts
 * import { NlBuilder } from "./builder.ts";
 * const b = new NlBuilder(256);
 * b.begin(0x0a00, 0x05, 1, 1, 0);
 * b.strz(1, "t");
 * b.end();
 * b.length; // 28: 16 header + 4 nfgenmsg + 8 attribute ("t\0", padded)
 * ```
 * @module
 */
import {
  HOST_LE,
  NFGEN_OFF_FAMILY,
  NFGEN_OFF_RES_ID,
  NFGEN_OFF_VERSION,
  NFNETLINK_V0,
  NFNL_ATTR_START,
  NLA_HDRLEN,
  nlAlign,
  NLMSG_OFF_FLAGS,
  NLMSG_OFF_LEN,
  NLMSG_OFF_PID,
  NLMSG_OFF_SEQ,
  NLMSG_OFF_TYPE,
} from "../nfqueue/codec.ts";

/** The attribute flag of a nested attribute (`NLA_F_NESTED`). */
export const NLA_F_NESTED = 0x8000;

/** Thrown when a message does not fit the builder's buffer. */
export class NlOverflowError extends Error {
  constructor(capacity: number) {
    super(`netlink message larger than the ${capacity}-byte buffer`);
    this.name = "NlOverflowError";
  }
}

/** Builds nfnetlink messages one after the other in a buffer of fixed capacity. */
export class NlBuilder {
  /** The bytes; `[0, length)` are the finished messages. */
  readonly bytes: Uint8Array;
  readonly #view: DataView;
  #pos = 0;
  #msgStart = -1;
  readonly #nests: number[] = [];

  /** A builder with room for `capacity` bytes. */
  constructor(capacity: number) {
    this.bytes = new Uint8Array(capacity);
    this.#view = new DataView(this.bytes.buffer);
  }

  /** Bytes written so far (finished messages plus the open one). */
  get length(): number {
    return this.#pos;
  }

  /** Forget every message: the next one starts at byte 0. */
  reset(): void {
    this.#pos = 0;
    this.#msgStart = -1;
    this.#nests.length = 0;
  }

  #room(n: number): number {
    const at = this.#pos;
    if (at + n > this.bytes.length) throw new NlOverflowError(this.bytes.length);
    this.#pos = at + n;
    return at;
  }

  /**
   * Start a message: netlink `type` and `flags`, sequence number `seq`, and
   * the nfgenmsg with `family` and `resId` (big-endian on the wire).
   */
  begin(type: number, flags: number, seq: number, family: number, resId: number): void {
    const at = this.#room(NFNL_ATTR_START);
    const v = this.#view;
    this.bytes.fill(0, at, at + NFNL_ATTR_START);
    v.setUint16(at + NLMSG_OFF_TYPE, type, HOST_LE);
    v.setUint16(at + NLMSG_OFF_FLAGS, flags, HOST_LE);
    v.setUint32(at + NLMSG_OFF_SEQ, seq >>> 0, HOST_LE);
    v.setUint32(at + NLMSG_OFF_PID, 0, HOST_LE);
    this.bytes[at + NFGEN_OFF_FAMILY] = family;
    this.bytes[at + NFGEN_OFF_VERSION] = NFNETLINK_V0;
    v.setUint16(at + NFGEN_OFF_RES_ID, resId, false);
    this.#msgStart = at;
  }

  /** Finish the open message (its length). */
  end(): void {
    if (this.#msgStart < 0) throw new Error("NlBuilder.end without begin");
    if (this.#nests.length !== 0) throw new Error("NlBuilder.end with an open nest");
    this.#view.setUint32(this.#msgStart + NLMSG_OFF_LEN, this.#pos - this.#msgStart, HOST_LE);
    this.#msgStart = -1;
  }

  /** An attribute of `type` with `len` payload bytes; returns where the payload starts. */
  #attr(type: number, len: number): number {
    const total = nlAlign(NLA_HDRLEN + len);
    const at = this.#room(total);
    this.bytes.fill(0, at, at + total);
    this.#view.setUint16(at, NLA_HDRLEN + len, HOST_LE);
    this.#view.setUint16(at + 2, type, HOST_LE);
    return at + NLA_HDRLEN;
  }

  /** A big-endian u32 attribute. */
  u32(type: number, value: number): void {
    this.#view.setUint32(this.#attr(type, 4), value >>> 0, false);
  }

  /** A big-endian u64 attribute (`value` < 2^53). */
  u64(type: number, value: number): void {
    const at = this.#attr(type, 8);
    this.#view.setUint32(at, Math.floor(value / 2 ** 32), false);
    this.#view.setUint32(at + 4, value >>> 0, false);
  }

  /** A NUL-terminated string attribute. */
  strz(type: number, s: string): void {
    const at = this.#attr(type, s.length + 1);
    for (let i = 0; i < s.length; i++) this.bytes[at + i] = s.charCodeAt(i) & 0xff;
  }

  /** An attribute with `src[from, from + len)` as payload. */
  bytesAttr(type: number, src: Uint8Array, from = 0, len = src.length - from): void {
    const at = this.#attr(type, len);
    this.bytes.set(src.subarray(from, from + len), at);
  }

  /** Open a nested attribute of `type`; close it with {@link NlBuilder.close}. */
  open(type: number): void {
    const at = this.#room(NLA_HDRLEN);
    this.#view.setUint16(at + 2, type | NLA_F_NESTED, HOST_LE);
    this.#nests.push(at);
  }

  /** Close the innermost open nest (its length). */
  close(): void {
    const at = this.#nests.pop();
    if (at === undefined) throw new Error("NlBuilder.close without open");
    this.#view.setUint16(at, this.#pos - at, HOST_LE);
  }
}
