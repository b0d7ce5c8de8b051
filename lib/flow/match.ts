/**
 * What the compiled classifier (`classifier.ts`) and the linear reference
 * matcher (`linear.ts`) share (docs/COMPATIBILITY.md#flows): the per-call
 * result {@link FlowMatch}, where the byte-match statements of a flow read
 * the packet ({@link locateMatchL4}) and how one statement is evaluated.
 *
 * Byte matches take the L4 header location from the packet's one parse
 * (`KeyParse`): they never parse the packet themselves.
 *
 * @example
 * ```ts
 * import { locateMatchL4, MatchL4 } from "./match.ts";
 * import { KeyParse, parseKeyAt, ETH_P_IP } from "../packet/parse.ts";
 *
 * // IPv4 UDP 1.2.3.4:4000 -> 5.6.7.8:53 with a 4-byte payload
 * const pkt = new Uint8Array(32);
 * pkt.set([0x45, 0, 0, 32, 0, 0, 0, 0, 64, 17, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0x0f, 0xa0, 0, 53]);
 * const kp = new KeyParse();
 * parseKeyAt(kp, pkt, 0, pkt.length, ETH_P_IP, 0); // 0
 * const where = new MatchL4();
 * locateMatchL4(kp, where); // true
 * [where.offset, where.proto]; // [20, 17]
 * ```
 * @module
 */

import type { MatchStatement } from "./types.ts";
import type { KeyParse } from "../packet/parse.ts";
import { keyProto } from "../packet/key.ts";
import { IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP } from "../wire/ip_proto.ts";
import { inBounds } from "../wire/bounds.ts";
import { l4HeaderLen, SCTP_HEADER_LEN, UDP_HEADER_LEN } from "../wire/l4.ts";

/**
 * Per-call result and options of `matchFlowLinear` and
 * `Classifier.classify`. Allocate one per worker and reuse it.
 */
export class FlowMatch {
  /**
   * Index of the flow that ended the scan: the winner (a flow with a target),
   * or a helper flow whose `udpencap` must trigger re-classification; -1 if
   * no flow decided.
   */
  flow = -1;
  /**
   * `udpencap` reported by {@link flow} (docs/COMPATIBILITY.md#packet-decisions `encap`): the flow's
   * `udpencap` for a normal match, 0 for a promiscuous-ping match or when no
   * flow decided.
   */
  udpencap = 0;
  /** True if {@link flow} matched through promiscuous ping (docs/COMPATIBILITY.md#flows). */
  promiscuous = false;
  /**
   * Optional `matches_count` counters indexed like the flows: every flow
   * that matches during the scan (winner, helper, or a flow without target
   * passed over) gets `+1`. Left alone when null.
   */
  counts: Uint32Array | null = null;
}

/** Scratch of {@link locateMatchL4}: where the byte-match statements apply. */
export class MatchL4 {
  /** Absolute offset of the L4 header in the packet buffer. */
  offset = 0;
  /** The L4 protocol the statements are compared with (6, 17, 132 or other). */
  proto = 0;
}

/**
 * Finds the L4 header the byte-match statements read, from the parse `p` of
 * the packet (docs/COMPATIBILITY.md#flows). Fills `out` and returns true, or
 * returns false when no flow with statements can match the packet:
 * - `p` is not a successful parse (rc < 0);
 * - the packet has an IPv6 fragment header (first fragments included);
 * - the header at `p.l4Offset` (protocol `p.l4Proto`) fails the strict
 *   bounds test for its size (tcp 20, udp 8, sctp 12, other 0): at least one
 *   byte must follow it in the packet;
 * - a UDP packet whose key protocol is SCTP (UDP-encapsulated SCTP after
 *   re-classification) moves past the 8-byte UDP header, needs an SCTP
 *   header followed by a byte, and is treated as SCTP.
 *
 * IPv4 fragments keep their header location (1.2.0 reads the payload of a
 * non-first fragment as if it were the L4 header). The IP header checks
 * 1.2.0 made here (IPv4 `off + 20 < len` and IHL ≥ 5; IPv6 `off + 40 < len`
 * and the bounded extension-header walk) are exactly those of a successful
 * parse; the family is the parse's L3 protocol (NFQUEUE's), which the kernel
 * keeps consistent with the version nibble 1.2.0 looked at.
 */
export function locateMatchL4(p: KeyParse, out: MatchL4): boolean {
  if (p.rc < 0 || p.fragHeader >= 0) return false;
  const end = p.end;
  let l4 = p.l4Offset;
  let proto = p.l4Proto;
  if (!inBounds(end, l4, l4HeaderLen(proto))) return false;
  if (proto === IPPROTO_UDP && keyProto(p.key) === IPPROTO_SCTP) {
    l4 += UDP_HEADER_LEN;
    if (!inBounds(end, l4, SCTP_HEADER_LEN)) return false;
    proto = IPPROTO_SCTP;
  }
  out.offset = l4;
  out.proto = proto;
  return true;
}

/**
 * One statement: the `nbytes` (1, 2 or 4) big-endian bytes at `p`, ANDed
 * with `mask` unless it is 0, equal `value` (u32). Bytes past `pkt` read as 0.
 */
export function statementHolds(
  pkt: Uint8Array,
  p: number,
  nbytes: number,
  mask: number,
  value: number,
): boolean {
  let x: number;
  if (nbytes === 1) x = pkt[p] | 0;
  else if (nbytes === 2) x = ((pkt[p] << 8) | pkt[p + 1]) & 0xffff;
  else x = (pkt[p] << 24) | (pkt[p + 1] << 16) | (pkt[p + 2] << 8) | pkt[p + 3];
  if (mask !== 0) x &= mask;
  return (x | 0) === (value | 0);
}

/** Protocol number of a {@link MatchStatement}. */
export function statementProto(s: MatchStatement): number {
  return s.proto === "tcp" ? IPPROTO_TCP : s.proto === "udp" ? IPPROTO_UDP : IPPROTO_SCTP;
}
