/**
 * Reference flow matching for `flowlb` (SPEC 6.5, 6.6, 5.4): a plain
 * priority-ordered linear scan over the flows, with nfqlb 1.2.0 semantics and
 * defect #18 of SPEC 11 fixed. The compiled classifier (`classifier.ts`) must
 * give exactly the same answers; this module is its specification in code and
 * also provides the byte-match evaluation both use.
 *
 * Per flow, in this order: `dsts` (key destination inside any CIDR), `srcs`,
 * promiscuous ping (SPEC 6.6: with the flag, a key whose protocol is ICMP 1 or
 * ICMPv6 58 matches right after the address checks, reporting no
 * `udpencap`), `protocols`, `dports`, `sports` (BE ports of the key), and the
 * byte-match statements (evaluated against the packet, see
 * {@link locateMatchL4}). An absent field matches everything; an empty
 * CIDR/port list matches nothing.
 *
 * Outcome of the scan (the flows are in matching order, priority descending):
 * - a flow with a target that matches wins: the scan ends;
 * - a helper flow (no target, `udpencap != 0`) that matches normally ends the
 *   scan without a winner and reports its `udpencap`, so the caller
 *   re-parses the UDP packet as SCTP and classifies again (defect #18 fixed:
 *   1.2.0 continued and let a lower-priority flow shadow the helper);
 * - a helper matched only through promiscuous ping reports nothing, and a flow
 *   without target and without `udpencap` never decides: the scan continues.
 *
 * Every flow that matches on the way increments its counter in
 * {@link FlowMatch.counts} when the caller provides one (`matches_count`).
 *
 * flowlb (SPEC 5.4) uses `out.udpencap` as `encap`: if the key is UDP and its
 * destination port equals it, re-parse with `udpencap = encap` and classify
 * again; the result of that second lookup is final.
 *
 * @example
 * ```ts
 * import { FlowMatch, matchFlowLinear } from "./match.ts";
 * import { KeyParse, parseKeyInto, ETH_P_IP } from "../packet/parse.ts";
 * import { PROTO_TCP, type Flow } from "./types.ts";
 *
 * const web: Flow = {
 *   name: "web", priority: 1, target: "lb-web", protocols: PROTO_TCP,
 *   dsts: [{ addr: Uint8Array.of(0,0,0,0,0,0,0,0,0,0,255,255,10,0,0,0), prefix: 120 }],
 *   srcs: undefined, dports: [{ lo: 80, hi: 80 }], sports: undefined, match: undefined,
 *   udpencap: 0,
 * };
 * // IPv4 TCP 1.2.3.4:1234 -> 10.0.0.7:80
 * const pkt = new Uint8Array(41);
 * pkt.set([0x45, 0, 0, 41, 0, 0, 0, 0, 64, 6, 0, 0, 1, 2, 3, 4, 10, 0, 0, 7, 0x04, 0xd2, 0, 80]);
 * const kp = new KeyParse();
 * parseKeyInto(kp, pkt, pkt.length, ETH_P_IP, 0); // 0
 * const out = new FlowMatch();
 * matchFlowLinear([web], kp.key, pkt, 0, pkt.length, false, out); // 0 (flow "web" wins)
 * out.udpencap; // 0
 * ```
 * @module
 */

import type { Cidr, Flow, MatchStatement, PortRange } from "./types.ts";
import { PROTO_SCTP, PROTO_TCP, PROTO_UDP } from "./types.ts";
import {
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_SCTP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  KEY_DPORT,
  KEY_DST,
  KEY_PROTO,
  KEY_SPORT,
  KEY_SRC,
} from "../packet/hash.ts";
import { IPV4_MIN_HEADER_LEN, IPV4_MIN_IHL, IPV4_PROTOCOL } from "../wire/ipv4.ts";
import {
  IPV6_HEADER_LEN,
  IPV6_NEXT_HEADER,
  Ipv6ExtWalk,
  ipv6WalkExtensionHeaders,
} from "../wire/ipv6.ts";
import { SCTP_HEADER_LEN, TCP_HEADER_LEN, UDP_HEADER_LEN } from "../wire/l4.ts";

/**
 * Per-call result and options of {@link matchFlowLinear} and
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
   * `udpencap` reported by {@link flow} (SPEC 5.4 `encap`): the flow's
   * `udpencap` for a normal match, 0 for a promiscuous-ping match or when no
   * flow decided.
   */
  udpencap = 0;
  /** True if {@link flow} matched through promiscuous ping (SPEC 6.6). */
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

/** L4 header size a byte match needs (SPEC 6.5): tcp 20, udp 8, sctp 12, else 0. */
export function matchHeaderSize(proto: number): number {
  return proto === IPPROTO_TCP
    ? TCP_HEADER_LEN
    : proto === IPPROTO_UDP
    ? UDP_HEADER_LEN
    : proto === IPPROTO_SCTP
    ? SCTP_HEADER_LEN
    : 0;
}

// Module-private scratch: workers are separate isolates and nothing here re-enters.
const walk = new Ipv6ExtWalk();

/**
 * Finds the L4 header the byte-match statements of SPEC 6.5 read, for the
 * packet at `pkt[off, off + len)` (IP header first; IPv6 if the version
 * nibble is 6, else IPv4 — the kernel delivers consistent nibbles) whose
 * flow key has protocol `keyProto`. Fills `out` and returns true, or returns
 * false when no flow with statements can match the packet:
 * - IPv4: L4 at `ihl * 4` (IHL below 5 fails), protocol from the header;
 * - IPv6: extension headers walked as the key parser does (`(len + 1) * 8`,
 *   bounded; SPEC 11b), and any fragment header fails;
 * - the header must satisfy the strict test `l4 + size < end` (size 20/8/12
 *   for tcp/udp/sctp, 0 otherwise);
 * - a UDP packet whose key protocol is SCTP (UDP-encapsulated SCTP after
 *   re-classification) moves past the 8-byte UDP header, needs
 *   `l4 + 12 < end` and is treated as SCTP.
 */
export function locateMatchL4(
  pkt: Uint8Array,
  off: number,
  len: number,
  keyProto: number,
  out: MatchL4,
): boolean {
  let end = off + len;
  if (end > pkt.length) end = pkt.length;
  let l4 = 0;
  let proto = 0;
  if (pkt[off] >>> 4 === 6) {
    if (!(off + IPV6_HEADER_LEN < end)) return false;
    if (
      !ipv6WalkExtensionHeaders(pkt, end, off + IPV6_HEADER_LEN, pkt[off + IPV6_NEXT_HEADER], walk)
    ) {
      return false;
    }
    if (walk.fragOffset >= 0) return false;
    l4 = walk.offset;
    proto = walk.nextHeader;
  } else {
    if (!(off + IPV4_MIN_HEADER_LEN < end)) return false;
    const ihl = pkt[off] & 0x0f;
    if (ihl < IPV4_MIN_IHL) return false;
    l4 = off + (ihl << 2);
    proto = pkt[off + IPV4_PROTOCOL];
  }
  if (!(l4 + matchHeaderSize(proto) < end)) return false;
  if (proto === IPPROTO_UDP && keyProto === IPPROTO_SCTP) {
    l4 += UDP_HEADER_LEN;
    if (!(l4 + SCTP_HEADER_LEN < end)) return false;
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

/** The `PROTO_*` bit of a key protocol, 0 for protocols a flow cannot name. */
export function protoBit(keyProto: number): number {
  return keyProto === IPPROTO_TCP
    ? PROTO_TCP
    : keyProto === IPPROTO_UDP
    ? PROTO_UDP
    : keyProto === IPPROTO_SCTP
    ? PROTO_SCTP
    : 0;
}

/** True if the 16 key bytes at `at` lie inside any of `cidrs` (addresses stored masked). */
export function cidrsContain(cidrs: readonly Cidr[], key: Uint8Array, at: number): boolean {
  for (const c of cidrs) {
    const full = c.prefix >>> 3;
    let ok = true;
    for (let i = 0; i < full; i++) {
      if (key[at + i] !== c.addr[i]) {
        ok = false;
        break;
      }
    }
    const rest = c.prefix & 7;
    if (ok && rest !== 0) {
      const m = (0xff00 >>> rest) & 0xff;
      ok = (key[at + full] & m) === (c.addr[full] & m);
    }
    if (ok) return true;
  }
  return false;
}

/** True if `port` lies in any of the ranges (set membership; order not relied upon). */
export function portsContain(ranges: readonly PortRange[], port: number): boolean {
  for (const r of ranges) if (port >= r.lo && port <= r.hi) return true;
  return false;
}

// Byte-match state of one scan: the L4 header is located at most once per packet.
const L4_UNKNOWN = 0;
const L4_FOUND = 1;
const L4_NONE = 2;
const l4 = new MatchL4();

/** Flow-level outcome of {@link flowMatches}. */
const NO_MATCH = 0;
const MATCH = 1;
const MATCH_PROMISCUOUS = 2;

/**
 * Matches one flow (SPEC 6.5 steps 1–7); `l4State` is the lazily located L4
 * header (see {@link locateMatchL4}) shared by the flows of one scan.
 */
function flowMatches(
  f: Flow,
  key: Uint8Array,
  keyProto: number,
  promiscuous: boolean,
  pkt: Uint8Array,
  off: number,
  len: number,
  l4State: number[],
): number {
  if (f.dsts !== undefined && !cidrsContain(f.dsts, key, KEY_DST)) return NO_MATCH;
  if (f.srcs !== undefined && !cidrsContain(f.srcs, key, KEY_SRC)) return NO_MATCH;
  if (promiscuous && (keyProto === IPPROTO_ICMP || keyProto === IPPROTO_ICMPV6)) {
    return MATCH_PROMISCUOUS;
  }
  if (f.protocols !== undefined && (f.protocols & protoBit(keyProto)) === 0) return NO_MATCH;
  if (
    f.dports !== undefined && !portsContain(f.dports, (key[KEY_DPORT] << 8) | key[KEY_DPORT + 1])
  ) {
    return NO_MATCH;
  }
  if (
    f.sports !== undefined && !portsContain(f.sports, (key[KEY_SPORT] << 8) | key[KEY_SPORT + 1])
  ) {
    return NO_MATCH;
  }
  const m = f.match;
  if (m !== undefined && m.length > 0) {
    if (l4State[0] === L4_UNKNOWN) {
      l4State[0] = locateMatchL4(pkt, off, len, keyProto, l4) ? L4_FOUND : L4_NONE;
    }
    if (l4State[0] === L4_NONE) return NO_MATCH;
    for (const s of m) {
      if (
        statementProto(s) === l4.proto &&
        !statementHolds(pkt, l4.offset + s.offset, s.nbytes, s.mask, s.value)
      ) {
        return NO_MATCH;
      }
    }
  }
  return MATCH;
}

const l4StateBox = [L4_UNKNOWN];

/**
 * Classifies one packet by scanning `flows` (matching order: priority
 * descending, stable) — the reference semantics of SPEC 6.5/6.6/5.4 with
 * defect #18 fixed (see the module documentation).
 *
 * `key` is the packet's 40-byte key (`packet.ts`), `pkt[off, off + len)` the
 * packet (IP header first; used only by byte matches). With
 * `anyFlowWins` every matching flow can win regardless of its target (trace
 * flows, SPEC 9.4; pass `promiscuousPing` true for them).
 *
 * Returns the index of the winning flow (it has a target), or -1; details in
 * `out` (which flow decided, the reported `udpencap`, counters).
 */
export function matchFlowLinear(
  flows: readonly Flow[],
  key: Uint8Array,
  pkt: Uint8Array,
  off: number,
  len: number,
  promiscuousPing: boolean,
  out: FlowMatch = new FlowMatch(),
  anyFlowWins = false,
): number {
  const keyProto = key[KEY_PROTO] | (key[KEY_PROTO + 1] << 8);
  const counts = out.counts;
  l4StateBox[0] = L4_UNKNOWN;
  for (let i = 0; i < flows.length; i++) {
    const f = flows[i];
    const r = flowMatches(f, key, keyProto, promiscuousPing, pkt, off, len, l4StateBox);
    if (r === NO_MATCH) continue;
    if (counts !== null) counts[i]++;
    if (anyFlowWins || f.target !== undefined) {
      out.flow = i;
      out.promiscuous = r === MATCH_PROMISCUOUS;
      out.udpencap = r === MATCH_PROMISCUOUS ? 0 : f.udpencap;
      return i;
    }
    if (r === MATCH && f.udpencap !== 0) {
      out.flow = i;
      out.promiscuous = false;
      out.udpencap = f.udpencap;
      return -1;
    }
  }
  out.flow = -1;
  out.promiscuous = false;
  out.udpencap = 0;
  return -1;
}
