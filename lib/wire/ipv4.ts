/**
 * IPv4 header (RFC 791): field offsets and accessors over `(bytes, offset)`.
 *
 * Accessors never throw and do no bounds checking; the caller establishes
 * bounds with {@link inBounds} from `bounds.ts` (nfqlb needs at least
 * `IPV4_MIN_HEADER_LEN + 1` bytes before it looks at a header).
 *
 * @example
 * ```ts
 * import { ipv4HeaderLen, ipv4Protocol } from "./ipv4.ts";
 * const hdr = new Uint8Array(21);
 * hdr[0] = 0x45; hdr[9] = 6;
 * ipv4HeaderLen(hdr, 0); // 20
 * ipv4Protocol(hdr, 0); // 6 (TCP)
 * ```
 * @module
 */

import { be16 } from "./bounds.ts";

/** Offset of the version/IHL byte. */
export const IPV4_VER_IHL = 0;
/** Offset of the DSCP/ECN byte. */
export const IPV4_TOS = 1;
/** Offset of the total length (u16 BE). */
export const IPV4_TOTAL_LEN = 2;
/** Offset of the identification (u16, wire bytes). */
export const IPV4_IDENT = 4;
/** Offset of flags + fragment offset (u16 BE). */
export const IPV4_FLAGS_FRAG = 6;
/** Offset of the TTL byte. */
export const IPV4_TTL = 8;
/** Offset of the protocol byte. */
export const IPV4_PROTOCOL = 9;
/** Offset of the header checksum. */
export const IPV4_CHECKSUM = 10;
/** Offset of the 4-byte source address. */
export const IPV4_SRC = 12;
/** Offset of the 4-byte destination address. */
export const IPV4_DST = 16;
/** Length of a header without options. */
export const IPV4_MIN_HEADER_LEN = 20;
/** Smallest valid IHL (in 32-bit words). */
export const IPV4_MIN_IHL = 5;
/** Length of an IPv4 address. */
export const IPV4_ADDR_LEN = 4;

/** "More fragments" flag in the flags/fragment field. */
export const IPV4_FLAG_MF = 0x2000;
/** Fragment offset bits (units of 8 bytes) in the flags/fragment field. */
export const IPV4_FRAG_OFFSET_MASK = 0x1fff;
/** MF + offset: non-zero means the packet is a fragment (DF is ignored). */
export const IPV4_FRAG_MASK = 0x3fff;

/** Header length in bytes: the IHL nibble (32-bit words) × 4. */
export function ipv4HeaderLen(buf: Uint8Array, off: number): number {
  return (buf[off + IPV4_VER_IHL] & 0x0f) << 2;
}

/** The flags + fragment offset field (u16 BE). */
export function ipv4FlagsFrag(buf: Uint8Array, off: number): number {
  return be16(buf, off + IPV4_FLAGS_FRAG);
}

/** The protocol byte. */
export function ipv4Protocol(buf: Uint8Array, off: number): number {
  return buf[off + IPV4_PROTOCOL] | 0;
}
