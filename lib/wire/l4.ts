/**
 * The parts of TCP, UDP and SCTP headers nfqlb looks at: the two 16-bit
 * ports, which all three protocols keep at the same offsets, and the header
 * sizes (the one definition of them: flow byte matches are bounded by them).
 *
 * @example
 * ```ts
 * import { hasPorts, l4HeaderLen, L4_DPORT, UDP_HEADER_LEN } from "./l4.ts";
 * hasPorts(17); // true (UDP)
 * l4HeaderLen(6); // 20 (TCP without options)
 * hasPorts(47); // false (GRE)
 * L4_DPORT; // 2
 * UDP_HEADER_LEN; // 8: an encapsulated SCTP header follows the UDP header
 * ```
 * @module
 */

import { IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP } from "./ip_proto.ts";

/** Offset of the source port (u16 BE) in TCP, UDP and SCTP. */
export const L4_SPORT = 0;
/** Offset of the destination port (u16 BE) in TCP, UDP and SCTP. */
export const L4_DPORT = 2;
/** Bytes covering both ports. */
export const L4_PORTS_LEN = 4;
/** Length of a UDP header. */
export const UDP_HEADER_LEN = 8;
/** Length of a TCP header without options. */
export const TCP_HEADER_LEN = 20;
/** Length of an SCTP common header. */
export const SCTP_HEADER_LEN = 12;

/** True for the protocols whose keys carry ports (TCP, UDP, SCTP). */
export function hasPorts(proto: number): boolean {
  return proto === IPPROTO_TCP || proto === IPPROTO_UDP || proto === IPPROTO_SCTP;
}

/** Fixed header length of `proto`: TCP 20, UDP 8, SCTP 12, any other protocol 0. */
export function l4HeaderLen(proto: number): number {
  return proto === IPPROTO_TCP
    ? TCP_HEADER_LEN
    : proto === IPPROTO_UDP
    ? UDP_HEADER_LEN
    : proto === IPPROTO_SCTP
    ? SCTP_HEADER_LEN
    : 0;
}
