/**
 * What a packet trace line says about the packet it is about (docs/COMPATIBILITY.md D60): 1.2.0's
 * per-packet lines (`Load-balance packet. fw=%d`, `Packet; proto=%u, len=%u, fwmark=%u`,
 * `Failed flowLookup`, the fragment lines) name no address, so an operator cannot tell which
 * connection a line is about. {@link packetEndpoints} is the text appended to them after `, `:
 * the addresses and ports of the packet as it arrived, the ICMP type and code, the fragment id
 * and offset, and for an ICMP error the flow it was balanced as (the quoted packet, swapped).
 *
 * Read from the packet bytes and the parse, not from the key: the key of a first fragment is in
 * id form by the time its `Packet;` line is printed. Built only when a trace bit asks for the
 * line: strings are fine here, this is not the per-packet path of untraced traffic.
 *
 * @example
 * ```ts
 * import { packetEndpoints } from "./packet_lines.ts";
 * import { ETH_P_IP, KeyParse, parseKeyAt } from "../packet/parse.ts";
 * const pkt = new Uint8Array(28); // UDP 192.168.77.1:46651 -> 10.77.0.7:5000
 * pkt.set([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 192, 168, 77, 1, 10, 77, 0, 7]);
 * pkt.set([0xb6, 0x3b, 0x13, 0x88, 0, 8, 0, 0], 20);
 * const p = new KeyParse();
 * parseKeyAt(p, pkt, 0, 28, ETH_P_IP, 0);
 * packetEndpoints(p, pkt); // "192.168.77.1:46651 -> 10.77.0.7:5000"
 * ```
 * @module
 */
import { formatIPv6 } from "../ccompat/inet.ts";
import { KEY_DPORT, KEY_DST, KEY_SPORT, KEY_SRC } from "../packet/key.ts";
import {
  type KeyParse,
  RC_FIRST_FRAG,
  RC_ICMP_INNER,
  RC_NON_FIRST_FRAG,
  RC_UDP_ENCAP,
} from "../packet/parse.ts";
import { be16 } from "../wire/bounds.ts";
import { ICMP_CODE, ICMP_TYPE } from "../wire/icmp.ts";
import { IPPROTO_ICMP, IPPROTO_ICMPV6 } from "../wire/ip_proto.ts";
import { IPV4_DST, IPV4_IDENT, IPV4_SRC } from "../wire/ipv4.ts";
import { IPV6_DST, IPV6_FRAG_IDENT, IPV6_SRC } from "../wire/ipv6.ts";
import { hasPorts, L4_DPORT, L4_SPORT } from "../wire/l4.ts";

/** `a.b.c.d` of the four bytes at `off`. */
function dotted(b: Uint8Array, off: number): string {
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}

/** `addr:port`, IPv6 in brackets; the address alone when `port` is undefined. */
function endpoint(addr: string, v6: boolean, port: number | undefined): string {
  if (port === undefined) return addr;
  return v6 ? `[${addr}]:${port}` : `${addr}:${port}`;
}

/**
 * What follows 1.2.0's text in a packet trace line: `, ` and {@link packetEndpoints}, or nothing
 * when the packet did not parse (the line is then 1.2.0's exactly).
 *
 * @example
 * ```ts
 * import { endpointsTail } from "./packet_lines.ts";
 * import { KeyParse } from "../packet/parse.ts";
 * const p = new KeyParse();
 * p.rc = -1; // not parsed
 * endpointsTail(p, new Uint8Array(0)); // ""
 * ```
 */
export function endpointsTail(p: KeyParse, buf: Uint8Array): string {
  const text = packetEndpoints(p, buf);
  return text === "" ? "" : `, ${text}`;
}

/**
 * `<src>[:<sport>] -> <dst>[:<dport>]` of the packet `p` parsed in `buf` (IPv6 addresses in
 * brackets when a port follows), then, where they apply, `, icmp type=<t> code=<c>` (`icmp6`
 * for ICMPv6), `, flow <src>:<sport> -> <dst>:<dport>` (an ICMP error: the key it was hashed
 * with, from the quoted packet), `, sctp <sport> -> <dport>` (SCTP over UDP: the inner ports the
 * key was re-computed with) and `, frag id=<id> offset=<bytes>` (the id as on the wire, as
 * tcpdump shows it). Ports are printed for TCP, UDP and SCTP headers that are in the packet (not
 * for non-first fragments). Empty when the parse failed.
 */
export function packetEndpoints(p: KeyParse, buf: Uint8Array): string {
  if (p.rc < 0) return "";
  const l3 = p.l3Offset;
  const v6 = (buf[l3] >> 4) === 6;
  const src = v6 ? formatIPv6(buf, l3 + IPV6_SRC) : dotted(buf, l3 + IPV4_SRC);
  const dst = v6 ? formatIPv6(buf, l3 + IPV6_DST) : dotted(buf, l3 + IPV4_DST);
  const l4 = p.l4Offset;
  const nonFirst = (p.rc & RC_NON_FIRST_FRAG) !== 0;
  const withPorts = !nonFirst && hasPorts(p.l4Proto) && l4 + L4_DPORT + 2 <= p.end;
  const sport = withPorts ? be16(buf, l4 + L4_SPORT) : undefined;
  const dport = withPorts ? be16(buf, l4 + L4_DPORT) : undefined;
  let s = `${endpoint(src, v6, sport)} -> ${endpoint(dst, v6, dport)}`;
  const icmp = p.l4Proto === IPPROTO_ICMP || p.l4Proto === IPPROTO_ICMPV6;
  if (icmp && !nonFirst && l4 + ICMP_CODE + 1 <= p.end) {
    const name = p.l4Proto === IPPROTO_ICMP ? "icmp" : "icmp6";
    s += `, ${name} type=${buf[l4 + ICMP_TYPE]} code=${buf[l4 + ICMP_CODE]}`;
  }
  if ((p.rc & RC_ICMP_INNER) !== 0) s += `, flow ${keyFlow(p.key, v6)}`;
  if ((p.rc & (RC_UDP_ENCAP | RC_FIRST_FRAG)) === RC_UDP_ENCAP) {
    s += `, sctp ${keyPort(p.key, KEY_SPORT)} -> ${keyPort(p.key, KEY_DPORT)}`;
  }
  if ((p.rc & (RC_FIRST_FRAG | RC_NON_FIRST_FRAG)) !== 0) {
    const id = v6
      ? ((be16(buf, p.fragHeader + IPV6_FRAG_IDENT) << 16) >>> 0) +
        be16(buf, p.fragHeader + IPV6_FRAG_IDENT + 2)
      : be16(buf, l3 + IPV4_IDENT);
    s += `, frag id=${id} offset=${p.fragOffset}`;
  }
  return s;
}

/** The 5-tuple of a key in port form (IPv4 keys, `::ffff:a.b.c.d`, as `a.b.c.d`). */
function keyFlow(key: Uint8Array, v6: boolean): string {
  const addr = (off: number) => v6 ? formatIPv6(key, off) : dotted(key, off + 12);
  const sport = keyPort(key, KEY_SPORT);
  const dport = keyPort(key, KEY_DPORT);
  return `${endpoint(addr(KEY_SRC), v6, sport)} -> ${endpoint(addr(KEY_DST), v6, dport)}`;
}

/** The port (wire bytes) at `off` of a key in port form. */
function keyPort(key: Uint8Array, off: number): number {
  return (key[off] << 8) | key[off + 1];
}
