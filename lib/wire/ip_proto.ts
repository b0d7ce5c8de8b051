/**
 * IP protocol numbers (IANA "Protocol Numbers": the IPv4 protocol byte and
 * the IPv6 next-header value) that nfqlb knows by name.
 *
 * @example
 * ```ts
 * import { IPPROTO_SCTP, IPPROTO_UDP } from "./ip_proto.ts";
 * IPPROTO_UDP; // 17
 * IPPROTO_SCTP; // 132
 * ```
 * @module
 */

/** ICMP (IPv4). */
export const IPPROTO_ICMP = 1;
/** TCP. */
export const IPPROTO_TCP = 6;
/** UDP. */
export const IPPROTO_UDP = 17;
/** ICMPv6. */
export const IPPROTO_ICMPV6 = 58;
/** SCTP. */
export const IPPROTO_SCTP = 132;
