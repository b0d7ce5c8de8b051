/**
 * The lines a trace flow prints for a packet it matches
 * (docs/COMPATIBILITY.md#trace-and-log, trace flows; bit `flows`): a blank
 * line, the match, an ICMP line for ICMP/ICMPv6 packets, the key's 5-tuple,
 * the `udpencap` the flow lookup reported, and after the decision one result
 * line. Built only when the bit is on and a trace flow matched: strings are
 * fine here, this is not the per-packet path of untraced traffic.
 *
 * @example
 * ```ts
 * import { traceFlowHeader, traceFlowResult } from "./flow_lines.ts";
 * import { ETH_P_IP, KeyParse, parseKeyAt } from "../packet/parse.ts";
 * const pkt = new Uint8Array(28); // UDP 192.168.77.1:46651 -> 10.77.0.7:5000
 * pkt.set([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 192, 168, 77, 1, 10, 77, 0, 7]);
 * pkt.set([0xb6, 0x3b, 0x13, 0x88, 0, 8, 0, 0], 20);
 * const p = new KeyParse();
 * parseKeyAt(p, pkt, 0, 28, ETH_P_IP, 0);
 * traceFlowHeader("tr", p, pkt, 28, 0);
 * // ["", "Match for trace-flow: tr",
 * //  "proto=udp, len=28, ::ffff:192.168.77.1 46651 -> ::ffff:10.77.0.7 5000"]
 * traceFlowResult(103, "lb-t", -1, -1); // "target=lb-t, fwmark=103"
 * ```
 * @module
 */
import { formatIPv6 } from "../ccompat/inet.ts";
import { KEY_DPORT, KEY_DST, KEY_SPORT, KEY_SRC, keyProto } from "../packet/key.ts";
import type { KeyParse } from "../packet/parse.ts";
import { be16 } from "../wire/bounds.ts";
import {
  ICMP_CODE,
  ICMP_DEST_UNREACH,
  ICMP_ECHO_ID,
  ICMP_ECHO_REQUEST,
  ICMP_ECHO_SEQ,
  ICMP_HEADER_LEN,
  ICMP_TYPE,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_PACKET_TOO_BIG,
} from "../wire/icmp.ts";
import {
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_SCTP,
  IPPROTO_TCP,
  IPPROTO_UDP,
} from "../wire/ip_proto.ts";

/** ICMP code "fragmentation needed" of destination unreachable. */
const ICMP_FRAG_NEEDED = 4;
/** Offset of the next-hop MTU (IPv4, u16) and of the MTU (ICMPv6, u32) in the header. */
const ICMP_MTU = 6;
const ICMPV6_MTU = 4;

/** `tcp`, `udp`, `sctp`, `icmp`, `icmp6`, or the decimal protocol number. */
export function protoName(proto: number): string {
  switch (proto) {
    case IPPROTO_TCP:
      return "tcp";
    case IPPROTO_UDP:
      return "udp";
    case IPPROTO_SCTP:
      return "sctp";
    case IPPROTO_ICMP:
      return "icmp";
    case IPPROTO_ICMPV6:
      return "icmp6";
    default:
      return String(proto);
  }
}

/**
 * The ICMP line of the outer packet (`p` its parse), or undefined when the
 * packet is not ICMP/ICMPv6 or its header is cut short.
 */
export function icmpLine(p: KeyParse, buf: Uint8Array): string | undefined {
  const l4 = p.l4Offset;
  if (l4 + ICMP_HEADER_LEN > p.end || p.end > buf.length) return undefined;
  const type = buf[l4 + ICMP_TYPE];
  const code = buf[l4 + ICMP_CODE];
  if (p.l4Proto === IPPROTO_ICMP) {
    if (type === ICMP_DEST_UNREACH) {
      return code === ICMP_FRAG_NEEDED
        ? `ICMP_DEST_UNREACH/FRAG_NEEDED: mtu=${be16(buf, l4 + ICMP_MTU)}`
        : `ICMP_DEST_UNREACH: code=${code}`;
    }
    if (type === ICMP_ECHO_REQUEST) {
      return `ICMP_ECHO: id=${be16(buf, l4 + ICMP_ECHO_ID)}, seq=${be16(buf, l4 + ICMP_ECHO_SEQ)}`;
    }
    return `ICMP ${type}, ${code}`;
  }
  if (p.l4Proto === IPPROTO_ICMPV6) {
    if (type === ICMPV6_PACKET_TOO_BIG) {
      const mtu = ((be16(buf, l4 + ICMPV6_MTU) << 16) >>> 0) + be16(buf, l4 + ICMPV6_MTU + 2);
      return `ICMP6_PACKET_TOO_BIG: mtu=${mtu}`;
    }
    if (type === ICMPV6_ECHO_REQUEST) {
      const id = be16(buf, l4 + ICMP_ECHO_ID);
      return `ICMP6_ECHO_REQUEST: id=${id}, seq=${be16(buf, l4 + ICMP_ECHO_SEQ)}`;
    }
    return `ICMP6 ${type}, ${code}`;
  }
  return undefined;
}

/**
 * The lines printed when trace flow `name` matches the packet `buf` (copied
 * length `len`, parse `p`), before the decision; `udpencap` is what the flow
 * lookup reported (printed for UDP keys when not 0).
 */
export function traceFlowHeader(
  name: string,
  p: KeyParse,
  buf: Uint8Array,
  len: number,
  udpencap: number,
): string[] {
  const key = p.key;
  const out = ["", `Match for trace-flow: ${name}`];
  const icmp = icmpLine(p, buf);
  if (icmp !== undefined) out.push(icmp);
  const proto = keyProto(key);
  const sport = (key[KEY_SPORT] << 8) | key[KEY_SPORT + 1];
  const dport = (key[KEY_DPORT] << 8) | key[KEY_DPORT + 1];
  out.push(
    `proto=${protoName(proto)}, len=${len}, ${formatIPv6(key, KEY_SRC)} ${sport} -> ` +
      `${formatIPv6(key, KEY_DST)} ${dport}`,
  );
  if (proto === IPPROTO_UDP && udpencap !== 0) out.push(`udpencap=${udpencap}`);
  return out;
}

/**
 * The result line after the decision: no flow (`nolbFwmark` is the verdict),
 * a flow whose table has no target (`notargetsFwmark`), or the target and fwmark.
 * `fw` is the fwmark the table gave (-1: none); `target` undefined means no flow matched.
 */
export function traceFlowResult(
  fw: number,
  target: string | undefined,
  nolbFwmark: number,
  notargetsFwmark: number,
): string {
  if (target === undefined) return `NO target, fwmark=${nolbFwmark}`;
  if (fw < 0) return `NO servers, target=${target}, fwmark=${notargetsFwmark}`;
  return `target=${target}, fwmark=${fw}`;
}
