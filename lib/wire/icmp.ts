/**
 * ICMP (RFC 792) and ICMPv6 (RFC 4443) header fields nfqlb uses: the type,
 * the echo identifier, and where the quoted packet of an error message begins.
 *
 * @example
 * ```ts
 * import { icmpIsError, icmpv6IsError, ICMP_ECHO_REQUEST } from "./icmp.ts";
 * icmpIsError(3); // true (destination unreachable)
 * icmpIsError(ICMP_ECHO_REQUEST); // false
 * icmpv6IsError(3); // false: nfqlb only looks inside types 1 and 2
 * ```
 * @module
 */

/** Offset of the type byte. */
export const ICMP_TYPE = 0;
/** Offset of the code byte. */
export const ICMP_CODE = 1;
/** Offset of the echo identifier (wire bytes). */
export const ICMP_ECHO_ID = 4;
/** Offset of the echo sequence number. */
export const ICMP_ECHO_SEQ = 6;
/** Length of the ICMP/ICMPv6 header; an error's quoted packet starts here. */
export const ICMP_HEADER_LEN = 8;

/** ICMP destination unreachable. */
export const ICMP_DEST_UNREACH = 3;
/** ICMP source quench. */
export const ICMP_SOURCE_QUENCH = 4;
/** ICMP redirect. */
export const ICMP_REDIRECT = 5;
/** ICMP echo request. */
export const ICMP_ECHO_REQUEST = 8;
/** ICMP time exceeded. */
export const ICMP_TIME_EXCEEDED = 11;

/** ICMPv6 destination unreachable. */
export const ICMPV6_DEST_UNREACH = 1;
/** ICMPv6 packet too big. */
export const ICMPV6_PACKET_TOO_BIG = 2;
/** ICMPv6 echo request. */
export const ICMPV6_ECHO_REQUEST = 128;

/** ICMP types whose body quotes the offending IPv4 packet (3, 4, 5, 11). */
export function icmpIsError(type: number): boolean {
  return type === ICMP_DEST_UNREACH || type === ICMP_SOURCE_QUENCH ||
    type === ICMP_REDIRECT || type === ICMP_TIME_EXCEEDED;
}

/**
 * ICMPv6 types nfqlb treats as carrying an inner packet (1, 2). Types 3 and 4
 * also quote a packet but 1.2.0 classifies them as "no inner" (kept).
 */
export function icmpv6IsError(type: number): boolean {
  return type === ICMPV6_DEST_UNREACH || type === ICMPV6_PACKET_TOO_BIG;
}
