/**
 * Reference flow matching for `flowlb` (docs/COMPATIBILITY.md#flows, #packet-decisions): a plain
 * priority-ordered linear scan over the flows, with nfqlb 1.2.0 semantics and
 * defect D18 fixed (docs/COMPATIBILITY.md#differences). The compiled classifier (`classifier.ts`) must
 * give exactly the same answers (tests/lib/flow/classifier_test.ts); this
 * module is its specification in code.
 *
 * Per flow, in this order: `dsts` (key destination inside any CIDR), `srcs`,
 * promiscuous ping (docs/COMPATIBILITY.md#flows: with the flag, a key whose protocol is ICMP 1 or
 * ICMPv6 58 matches right after the address checks, reporting no
 * `udpencap`), `protocols`, `dports`, `sports` (BE ports of the key), and the
 * byte-match statements (evaluated against the packet, see `locateMatchL4`
 * in `match.ts`). An absent field matches everything; an empty CIDR/port
 * list matches nothing.
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
 * flowlb (docs/COMPATIBILITY.md#packet-decisions) uses `out.udpencap` as `encap`: if the key is UDP and its
 * destination port equals it, re-parse with `udpencap = encap` and classify
 * again; the result of that second lookup is final.
 *
 * @example
 * ```ts
 * import { matchFlowLinear } from "./linear.ts";
 * import { FlowMatch } from "./match.ts";
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
 * matchFlowLinear([web], kp, pkt, false, out); // 0 (flow "web" wins)
 * out.udpencap; // 0
 * ```
 * @module
 */

import type { Cidr, Flow, PortRange } from "./types.ts";
import { PROTO_SCTP, PROTO_TCP, PROTO_UDP } from "./types.ts";
import { FlowMatch, locateMatchL4, MatchL4, statementHolds, statementProto } from "./match.ts";
import type { KeyParse } from "../packet/parse.ts";
import { KEY_DPORT, KEY_DST, KEY_SPORT, KEY_SRC, keyProto } from "../packet/key.ts";
import {
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_SCTP,
  IPPROTO_TCP,
  IPPROTO_UDP,
} from "../wire/ip_proto.ts";

/** The flow protocol bit (`PROTO_*`) of key protocol `proto`, 0 for one a flow cannot name. */
export function protoBit(proto: number): number {
  return proto === IPPROTO_TCP
    ? PROTO_TCP
    : proto === IPPROTO_UDP
    ? PROTO_UDP
    : proto === IPPROTO_SCTP
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
 * Matches one flow (docs/COMPATIBILITY.md#flows steps 1–7); `l4State` is the lazily located L4
 * header (see `locateMatchL4`) shared by the flows of one scan.
 */
function flowMatches(
  f: Flow,
  p: KeyParse,
  kp: number,
  promiscuous: boolean,
  pkt: Uint8Array,
  l4State: number[],
): number {
  const key = p.key;
  if (f.dsts !== undefined && !cidrsContain(f.dsts, key, KEY_DST)) return NO_MATCH;
  if (f.srcs !== undefined && !cidrsContain(f.srcs, key, KEY_SRC)) return NO_MATCH;
  if (promiscuous && (kp === IPPROTO_ICMP || kp === IPPROTO_ICMPV6)) {
    return MATCH_PROMISCUOUS;
  }
  if (f.protocols !== undefined && (f.protocols & protoBit(kp)) === 0) return NO_MATCH;
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
    if (l4State[0] === L4_UNKNOWN) l4State[0] = locateMatchL4(p, l4) ? L4_FOUND : L4_NONE;
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
 * descending, stable) — the reference semantics of docs/COMPATIBILITY.md#flows, #packet-decisions with
 * defect #18 fixed (see the module documentation).
 *
 * `p` is the packet's parse (its key and header facts; rc ≥ 0) and `pkt`
 * the buffer it was parsed from (read only by byte matches). With
 * `anyFlowWins` every matching flow can win regardless of its target (trace
 * flows, docs/COMPATIBILITY.md#trace-and-log; pass `promiscuousPing` true for them).
 *
 * Returns the index of the winning flow (it has a target), or -1; details in
 * `out` (which flow decided, the reported `udpencap`, counters).
 */
export function matchFlowLinear(
  flows: readonly Flow[],
  p: KeyParse,
  pkt: Uint8Array,
  promiscuousPing: boolean,
  out: FlowMatch = new FlowMatch(),
  anyFlowWins = false,
): number {
  const kp = keyProto(p.key);
  const counts = out.counts;
  l4StateBox[0] = L4_UNKNOWN;
  for (let i = 0; i < flows.length; i++) {
    const f = flows[i];
    const r = flowMatches(f, p, kp, promiscuousPing, pkt, l4StateBox);
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
