/**
 * Byte-level helpers shared by the `wire` header modules.
 *
 * Every parser in nfqlb uses the same **strict** bounds test (docs/COMPATIBILITY.md#hashing-and-parsing): a read
 * of `n` bytes at `off` in a packet whose valid length is `len` is allowed
 * only if `off + n < len`, i.e. at least one byte must follow the read.
 *
 * @example
 * ```ts
 * import { be16, inBounds } from "./bounds.ts";
 * const pkt = new Uint8Array([0x12, 0x34, 0x56]);
 * inBounds(pkt.length, 0, 2); // true
 * inBounds(pkt.length, 1, 2); // false (nothing would follow)
 * be16(pkt, 0); // 0x1234
 * ```
 * @module
 */

/** The strict bounds test `off + n < len` used everywhere in nfqlb parsing. */
export function inBounds(len: number, off: number, n: number): boolean {
  return off + n < len;
}

/**
 * Big-endian u16 at `off`. Never throws; bytes outside `buf` read as 0, so
 * callers check bounds first when the value matters.
 */
export function be16(buf: Uint8Array, off: number): number {
  return ((buf[off] << 8) | buf[off + 1]) & 0xffff;
}

/** The two bytes at `off` as a little-endian u16 (how nfqlb reports an IPv4 fragment id). */
export function le16(buf: Uint8Array, off: number): number {
  return (buf[off] | (buf[off + 1] << 8)) & 0xffff;
}

/** The four bytes at `off` as a little-endian u32 (how nfqlb reports an IPv6 fragment id). */
export function le32(buf: Uint8Array, off: number): number {
  return (buf[off] | (buf[off + 1] << 8) | (buf[off + 2] << 16) | (buf[off + 3] << 24)) >>> 0;
}
