/**
 * IPv6 header (RFC 8200): field offsets, accessors over `(bytes, offset)`,
 * and a reusable, allocation-free extension-header walker.
 *
 * The walker ({@link ipv6WalkExtensionHeaders}) is the corrected form of the
 * 1.2.0 walk (docs/COMPATIBILITY.md#differences D22–D23, defect #13): hop-by-hop (0), routing (43) and
 * destination options (60) headers are skipped by `(len + 1) * 8` bytes
 * (`len` 0 is valid), the fragment header (44) by exactly 8 bytes; at most
 * {@link IPV6_MAX_EXT_HEADERS} headers are walked, and every header must lie
 * inside the packet under the strict bounds test (`off + size < len`). The
 * walk stops after a non-first fragment's header (what follows is payload).
 * AH and ESP are not walked (nfqlb treats them as protocols without ports).
 *
 * @example
 * ```ts
 * import { Ipv6ExtWalk, ipv6WalkExtensionHeaders, IPV6_HEADER_LEN, ipv6NextHeader } from "./ipv6.ts";
 * // 40-byte header, hop-by-hop (len 0) -> TCP, then a TCP header
 * const pkt = new Uint8Array(40 + 8 + 20);
 * pkt[0] = 0x60; pkt[6] = 0; pkt[40] = 6;
 * const walk = new Ipv6ExtWalk();
 * ipv6WalkExtensionHeaders(pkt, pkt.length, IPV6_HEADER_LEN, ipv6NextHeader(pkt, 0), walk); // true
 * walk.nextHeader; // 6
 * walk.offset; // 48
 * walk.fragOffset; // -1 (no fragment header)
 * ```
 * @module
 */

import { be16, inBounds } from "./bounds.ts";

/** Offset of the payload length (u16 BE). */
export const IPV6_PAYLOAD_LEN = 4;
/** Offset of the next-header byte. */
export const IPV6_NEXT_HEADER = 6;
/** Offset of the hop limit byte. */
export const IPV6_HOP_LIMIT = 7;
/** Offset of the 16-byte source address. */
export const IPV6_SRC = 8;
/** Offset of the 16-byte destination address. */
export const IPV6_DST = 24;
/** Length of the fixed header. */
export const IPV6_HEADER_LEN = 40;
/** Length of an IPv6 address. */
export const IPV6_ADDR_LEN = 16;

/** Next-header value: hop-by-hop options. */
export const IPV6_NH_HOPOPTS = 0;
/** Next-header value: routing header. */
export const IPV6_NH_ROUTING = 43;
/** Next-header value: fragment header. */
export const IPV6_NH_FRAGMENT = 44;
/** Next-header value: destination options. */
export const IPV6_NH_DSTOPTS = 60;

/** Offset of the next-header byte in any extension header. */
export const IPV6_EXT_NEXT_HEADER = 0;
/** Offset of the length byte (8-octet units, not counting the first 8). */
export const IPV6_EXT_LEN = 1;

/** Offset of the reserved byte in the fragment header. */
export const IPV6_FRAG_RESERVED = 1;
/** Offset of the fragment offset + flags field (u16 BE). */
export const IPV6_FRAG_OFFLG = 2;
/** Offset of the 32-bit identification (wire bytes). */
export const IPV6_FRAG_IDENT = 4;
/** Length of the fragment header. */
export const IPV6_FRAG_HEADER_LEN = 8;
/** Fragment offset bits of the offset/flags field. */
export const IPV6_FRAG_OFFSET_MASK = 0xfff8;
/** "More fragments" bit of the offset/flags field. */
export const IPV6_FRAG_FLAG_M = 0x0001;

/** Upper bound on the number of extension headers walked before giving up. */
export const IPV6_MAX_EXT_HEADERS = 8;

/** The next-header byte of the fixed header. */
export function ipv6NextHeader(buf: Uint8Array, off: number): number {
  return buf[off + IPV6_NEXT_HEADER] | 0;
}

/** True for the extension headers nfqlb walks: 0, 43, 44, 60. */
export function ipv6IsExtensionHeader(nh: number): boolean {
  return nh === IPV6_NH_HOPOPTS || nh === IPV6_NH_ROUTING || nh === IPV6_NH_FRAGMENT ||
    nh === IPV6_NH_DSTOPTS;
}

/** Size in bytes of the hop-by-hop/routing/destination-options header at `off`: `(len + 1) * 8`. */
export function ipv6ExtHeaderLen(buf: Uint8Array, off: number): number {
  return ((buf[off + IPV6_EXT_LEN] | 0) + 1) << 3;
}

/** The fragment offset + flags field of the fragment header at `off`. */
export function ipv6FragOffLg(buf: Uint8Array, off: number): number {
  return be16(buf, off + IPV6_FRAG_OFFLG);
}

/** True if the fragment header at `off` has offset 0 (the M flag is not considered). */
export function ipv6FragIsFirst(buf: Uint8Array, off: number): boolean {
  return (be16(buf, off + IPV6_FRAG_OFFLG) & IPV6_FRAG_OFFSET_MASK) === 0;
}

/** Result of {@link ipv6WalkExtensionHeaders}; reuse one instance to stay allocation-free. */
export class Ipv6ExtWalk {
  /** Protocol after the last header walked (the L4 protocol unless the walk stopped at a non-first fragment). */
  nextHeader = 0;
  /** Offset of the header that `nextHeader` describes (the L4 header). */
  offset = 0;
  /** Offset of the fragment header, or -1 if there is none. */
  fragOffset: number = -1;
  /** True if the fragment header (if any) has offset 0. */
  fragFirst = false;
  /** Number of extension headers walked. */
  count = 0;
}

/**
 * Walks the extension headers that start at `off` (normally 40) when the
 * fixed header's next header is `nh`, filling `out`. Returns false if a
 * header does not fit in the packet (strict test against `len`), more than
 * {@link IPV6_MAX_EXT_HEADERS} headers are chained, or a second fragment
 * header appears. Stops after a non-first fragment header
 * (`out.fragFirst === false`, `out.offset` just past it). Never throws.
 */
export function ipv6WalkExtensionHeaders(
  buf: Uint8Array,
  len: number,
  off: number,
  nh: number,
  out: Ipv6ExtWalk,
): boolean {
  out.fragOffset = -1;
  out.fragFirst = false;
  out.count = 0;
  let count = 0;
  while (ipv6IsExtensionHeader(nh)) {
    if (count >= IPV6_MAX_EXT_HEADERS) return false;
    count++;
    if (nh === IPV6_NH_FRAGMENT) {
      if (out.fragOffset >= 0 || !inBounds(len, off, IPV6_FRAG_HEADER_LEN)) return false;
      out.fragOffset = off;
      nh = buf[off + IPV6_EXT_NEXT_HEADER];
      off += IPV6_FRAG_HEADER_LEN;
      if (!ipv6FragIsFirst(buf, out.fragOffset)) {
        // Payload of a non-first fragment follows: nothing more to walk.
        out.nextHeader = nh;
        out.offset = off;
        out.count = count;
        return true;
      }
      out.fragFirst = true;
    } else {
      if (!inBounds(len, off, 2)) return false;
      const size = ipv6ExtHeaderLen(buf, off);
      if (!inBounds(len, off, size)) return false;
      nh = buf[off + IPV6_EXT_NEXT_HEADER];
      off += size;
    }
  }
  out.nextHeader = nh;
  out.offset = off;
  out.count = count;
  return true;
}
