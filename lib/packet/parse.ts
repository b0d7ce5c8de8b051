/**
 * Packet classification (docs/COMPATIBILITY.md#hashing-and-parsing): from the bytes NFQUEUE hands over (IPv4
 * or IPv6 header first) to the rc bitmask, the 40-byte flow key, the fragment
 * id and the hashes that pick a target.
 *
 * Behaviour is that of nfqlb 1.2.0 including its strict bounds test and the
 * quirks it keeps, with defects D13, D14, D22 and D23 fixed
 * (docs/COMPATIBILITY.md#differences):
 * IPv6 extension headers are walked by `(len + 1) * 8` bytes (bounded, see
 * `wire/ipv6.ts`), an IPv6 first fragment takes its ports from the L4 header
 * after the fragment header, and every byte read is bounds-checked (a packet
 * that is too short gives -1).
 *
 * Two APIs: {@link parseKeyInto} for the per-packet hot path (no allocation,
 * no exceptions) and {@link parsePacket} for everything else.
 *
 * @example
 * ```ts
 * import { KeyParse, parseKeyInto, parsePacket, ETH_P_IP } from "./parse.ts";
 * import { hashKey } from "./hash.ts";
 *
 * const pkt = Uint8Array.from(
 *   "450000280001000040061f58534dcaa70d25305e95320eda000000000000000050022000905e0000"
 *     .match(/../g)!, (h) => parseInt(h, 16));
 * parsePacket(pkt).hash; // 1487357159
 *
 * const kp = new KeyParse(); // allocate once, reuse per packet
 * if (parseKeyInto(kp, pkt, pkt.length, ETH_P_IP, 0) >= 0) hashKey(kp.key, 1); // 1487357159
 * ```
 * @module
 */

import { addressHash, hashKey } from "./hash.ts";
import {
  KEY_DPORT,
  KEY_DST,
  KEY_ID,
  KEY_LEN,
  KEY_PROTO,
  KEY_SPORT,
  KEY_SRC,
  KEY_USER,
  keyProto,
} from "./key.ts";
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_UDP } from "../wire/ip_proto.ts";
import { be16, inBounds, le16, le32 } from "../wire/bounds.ts";
import {
  IPV4_DST,
  IPV4_FLAG_MF,
  IPV4_FRAG_MASK,
  IPV4_FRAG_OFFSET_MASK,
  IPV4_IDENT,
  IPV4_MIN_HEADER_LEN,
  IPV4_SRC,
  ipv4FlagsFrag,
  ipv4HeaderLen,
  ipv4Protocol,
} from "../wire/ipv4.ts";
import {
  IPV6_DST,
  IPV6_FRAG_FLAG_M,
  IPV6_FRAG_IDENT,
  IPV6_FRAG_OFFSET_MASK,
  IPV6_HEADER_LEN,
  IPV6_SRC,
  Ipv6ExtWalk,
  ipv6FragOffLg,
  ipv6NextHeader,
  ipv6WalkExtensionHeaders,
} from "../wire/ipv6.ts";
import { hasPorts, L4_DPORT, L4_PORTS_LEN, L4_SPORT, UDP_HEADER_LEN } from "../wire/l4.ts";
import {
  ICMP_ECHO_ID,
  ICMP_ECHO_REQUEST,
  ICMP_HEADER_LEN,
  ICMP_TYPE,
  icmpIsError,
  ICMPV6_ECHO_REQUEST,
  icmpv6IsError,
} from "../wire/icmp.ts";

/** NFQUEUE / Ethernet protocol number of IPv4. */
export const ETH_P_IP = 0x0800;
/** NFQUEUE / Ethernet protocol number of IPv6. */
export const ETH_P_IPV6 = 0x86dd;

/** rc value for an unparsable packet (truncated, corrupt, unsupported): drop it. */
export const RC_INVALID: number = -1;
/** rc bit 0: first fragment (offset 0); ports valid, {@link KeyParse.fragId} set. */
export const RC_FIRST_FRAG = 1;
/** rc bit 1: non-first fragment; key in id form; never combined with other bits. */
export const RC_NON_FIRST_FRAG = 2;
/** rc bit 2: UDP to the `udpencap` port; key is SCTP with the inner SCTP ports. */
export const RC_UDP_ENCAP = 4;
/** rc bit 3: ICMP error with inner packet; key from the inner packet, src/dst and ports swapped. */
export const RC_ICMP_INNER = 8;
/** rc bit 4: ICMP/ICMPv6 without inner packet (echo etc.). */
export const RC_ICMP_NO_INNER = 16;
/** rc bit 5: protocol without ports; only addresses and protocol are valid. */
export const RC_NO_PORTS = 32;

/**
 * Reusable output of {@link parseKeyAt}: everything the one parse of a packet
 * learned, so that later steps (flow byte matches, fragment tracking) never
 * parse the packet again. Allocate one per worker and reuse it.
 *
 * Offsets are absolute (indices into the buffer that was parsed). The header
 * facts below `fragId` are meaningful only when {@link rc} is ≥ 0, and they
 * describe the packet itself: for an ICMP error, the outer packet (the key
 * comes from the quoted one).
 */
export class KeyParse {
  /** rc of the last parse (-1 or a bitmask of `RC_*`). */
  rc: number = -1;
  /** Fragment id of a first fragment (wire bytes read little-endian), else 0. */
  fragId = 0;
  /** Offset of the IP header (the parsed range's start, clamped to the buffer). */
  l3Offset = 0;
  /** One past the last valid byte of the packet (the parsed range's end, clamped). */
  end = 0;
  /**
   * Offset of the L4 header: IPv4 after the header and its options, IPv6
   * after the extension headers walked. For a non-first fragment, the start
   * of the payload after the IP header (IPv4) or the fragment header (IPv6).
   */
  l4Offset = 0;
  /** Protocol of the header at {@link l4Offset} (IPv4 protocol byte, last IPv6 next header). */
  l4Proto = 0;
  /** Offset of the IPv6 fragment header, or -1 (always -1 for IPv4). */
  fragHeader: number = -1;
  /**
   * Fragment offset in bytes (IPv4 offset × 8, IPv6 `offlg & 0xfff8`). Set
   * only for fragments (rc with `RC_FIRST_FRAG` or `RC_NON_FIRST_FRAG`).
   */
  fragOffset = 0;
  /** More fragments follow (IPv4 MF, IPv6 M flag). Set only for fragments, as {@link fragOffset}. */
  fragMore = false;
  /** The 40-byte flow key (docs/COMPATIBILITY.md#hashing-and-parsing); all zero when rc is -1. */
  readonly key: Uint8Array = new Uint8Array(KEY_LEN);
  /** The same 40 bytes as ten u32 words (lets the parser clear the key in ten stores). */
  readonly keyWords: Uint32Array = new Uint32Array(
    this.key.buffer,
    this.key.byteOffset,
    KEY_LEN >>> 2,
  );

  /** Length of the IP header: IPv4 with options, IPv6 with the extension headers walked. */
  get l3HeaderLen(): number {
    return this.l4Offset - this.l3Offset;
  }
}

function clearKey(out: KeyParse): void {
  const w = out.keyWords;
  w[0] = 0;
  w[1] = 0;
  w[2] = 0;
  w[3] = 0;
  w[4] = 0;
  w[5] = 0;
  w[6] = 0;
  w[7] = 0;
  w[8] = 0;
  w[9] = 0;
}

// Shared scratch for the IPv6 walker (module-private, so parsing stays allocation-free).
const walk = new Ipv6ExtWalk();

function setProto(key: Uint8Array, proto: number): void {
  key[KEY_PROTO] = proto & 0xff;
  key[KEY_PROTO + 1] = (proto >>> 8) & 0xff;
}

/** Writes `::ffff:a.b.c.d` at key[dst..dst+16] from the 4 bytes at pkt[src]. */
function setMapped(key: Uint8Array, dst: number, pkt: Uint8Array, src: number): void {
  key[dst + 10] = 0xff;
  key[dst + 11] = 0xff;
  key[dst + 12] = pkt[src];
  key[dst + 13] = pkt[src + 1];
  key[dst + 14] = pkt[src + 2];
  key[dst + 15] = pkt[src + 3];
}

function copy16(key: Uint8Array, dst: number, pkt: Uint8Array, src: number): void {
  for (let i = 0; i < 16; i++) key[dst + i] = pkt[src + i];
}

/**
 * Writes the ports of the TCP/UDP/SCTP header at `l4` (after the udpencap
 * re-classification on the destination port) and returns the rc bits to add,
 * or -1 if the header is out of bounds.
 */
function ports(
  key: Uint8Array,
  pkt: Uint8Array,
  len: number,
  l4: number,
  udpencap: number,
): number {
  if (!inBounds(len, l4, L4_PORTS_LEN)) return -1;
  let rc = 0;
  if (udpencap !== 0 && keyProto(key) === IPPROTO_UDP && be16(pkt, l4 + L4_DPORT) === udpencap) {
    l4 += UDP_HEADER_LEN;
    if (!inBounds(len, l4, L4_PORTS_LEN)) return -1;
    setProto(key, IPPROTO_SCTP);
    rc = RC_UDP_ENCAP;
  }
  key[KEY_SPORT] = pkt[l4 + L4_SPORT];
  key[KEY_SPORT + 1] = pkt[l4 + L4_SPORT + 1];
  key[KEY_DPORT] = pkt[l4 + L4_DPORT];
  key[KEY_DPORT + 1] = pkt[l4 + L4_DPORT + 1];
  return rc;
}

/**
 * Ports of the L4 header quoted in an ICMP error at `p` (proto already in the
 * key): udpencap is tested on the inner SOURCE port and the ports are swapped.
 * Returns 8, 12 or -1.
 */
function innerPorts(
  key: Uint8Array,
  pkt: Uint8Array,
  len: number,
  p: number,
  udpencap: number,
): number {
  if (!inBounds(len, p, L4_PORTS_LEN)) return -1;
  let rc = RC_ICMP_INNER;
  if (udpencap !== 0 && keyProto(key) === IPPROTO_UDP && be16(pkt, p + L4_SPORT) === udpencap) {
    p += UDP_HEADER_LEN;
    if (!inBounds(len, p, L4_PORTS_LEN)) return -1;
    setProto(key, IPPROTO_SCTP);
    rc = RC_ICMP_INNER | RC_UDP_ENCAP;
  }
  key[KEY_SPORT] = pkt[p + L4_DPORT];
  key[KEY_SPORT + 1] = pkt[p + L4_DPORT + 1];
  key[KEY_DPORT] = pkt[p + L4_SPORT];
  key[KEY_DPORT + 1] = pkt[p + L4_SPORT + 1];
  return rc;
}

/** IPv4 header at `b`; `end` is one past the last valid byte. */
function parseIpv4(
  out: KeyParse,
  pkt: Uint8Array,
  b: number,
  end: number,
  udpencap: number,
): number {
  const key = out.key;
  if (!inBounds(end, b, IPV4_MIN_HEADER_LEN)) return -1;
  const hl = ipv4HeaderLen(pkt, b);
  if (hl < IPV4_MIN_HEADER_LEN) return -1;
  const fo = ipv4FlagsFrag(pkt, b);
  const proto = ipv4Protocol(pkt, b);
  const l4 = b + hl;
  out.l4Offset = l4;
  out.l4Proto = proto;
  out.fragHeader = -1;
  let rc = 0;
  if ((fo & IPV4_FRAG_MASK) !== 0) {
    out.fragOffset = (fo & IPV4_FRAG_OFFSET_MASK) << 3;
    out.fragMore = (fo & IPV4_FLAG_MF) !== 0;
    if ((fo & IPV4_FRAG_OFFSET_MASK) === 0) {
      out.fragId = le16(pkt, b + IPV4_IDENT);
      rc = RC_FIRST_FRAG;
    } else {
      setMapped(key, KEY_SRC, pkt, b + IPV4_SRC);
      setMapped(key, KEY_DST, pkt, b + IPV4_DST);
      key[KEY_ID] = pkt[b + IPV4_IDENT];
      key[KEY_ID + 1] = pkt[b + IPV4_IDENT + 1];
      return RC_NON_FIRST_FRAG;
    }
  }
  let icmpType = -1;
  if (proto === IPPROTO_ICMP) {
    if (!inBounds(end, l4, 1)) return -1; // #14: type byte must be in the packet
    icmpType = pkt[l4 + ICMP_TYPE];
    if (icmpIsError(icmpType)) {
      if ((rc & RC_FIRST_FRAG) !== 0) return -1; // fragmented ICMP error
      return inner4(key, pkt, end, l4 + ICMP_HEADER_LEN, udpencap);
    }
  }
  setMapped(key, KEY_SRC, pkt, b + IPV4_SRC);
  setMapped(key, KEY_DST, pkt, b + IPV4_DST);
  if (proto === IPPROTO_ICMP) {
    return icmpNoInner(key, pkt, end, l4, icmpType === ICMP_ECHO_REQUEST, IPPROTO_ICMP, rc);
  }
  return transport(key, pkt, end, l4, proto, rc, udpencap);
}

/**
 * Key bytes 32–39 of an ICMP/ICMPv6 packet without an inner packet (addresses
 * already set): the echo request identifier, then the protocol (docs/COMPATIBILITY.md#hashing-and-parsing).
 */
function icmpNoInner(
  key: Uint8Array,
  pkt: Uint8Array,
  end: number,
  l4: number,
  echoRequest: boolean,
  proto: number,
  rc: number,
): number {
  if (echoRequest) {
    if (!inBounds(end, l4 + ICMP_ECHO_ID, 2)) return -1; // #14: identifier must be in the packet
    key[KEY_USER] = pkt[l4 + ICMP_ECHO_ID];
    key[KEY_USER + 1] = pkt[l4 + ICMP_ECHO_ID + 1];
  }
  setProto(key, proto);
  return rc + RC_ICMP_NO_INNER;
}

/** Key bytes 32–39 of any other packet (addresses already set): protocol, then ports if it has them. */
function transport(
  key: Uint8Array,
  pkt: Uint8Array,
  end: number,
  l4: number,
  proto: number,
  rc: number,
  udpencap: number,
): number {
  setProto(key, proto);
  if (!hasPorts(proto)) return rc + RC_NO_PORTS;
  const p = ports(key, pkt, end, l4, udpencap);
  return p < 0 ? -1 : rc + p;
}

/** The packet quoted by an ICMP error; `h` is the start of its IPv4 header. */
function inner4(
  key: Uint8Array,
  pkt: Uint8Array,
  len: number,
  h: number,
  udpencap: number,
): number {
  if (!inBounds(len, h, IPV4_MIN_HEADER_LEN)) return -1;
  const hl = ipv4HeaderLen(pkt, h);
  if (hl < IPV4_MIN_HEADER_LEN) return -1;
  setMapped(key, KEY_SRC, pkt, h + IPV4_DST); // inner destination
  setMapped(key, KEY_DST, pkt, h + IPV4_SRC); // inner source
  const proto = ipv4Protocol(pkt, h);
  setProto(key, proto);
  if (!hasPorts(proto)) return RC_ICMP_INNER | RC_NO_PORTS;
  return innerPorts(key, pkt, len, h + hl, udpencap);
}

/** IPv6 header at `b`; `end` is one past the last valid byte. */
function parseIpv6(
  out: KeyParse,
  pkt: Uint8Array,
  b: number,
  end: number,
  udpencap: number,
): number {
  const key = out.key;
  if (!inBounds(end, b, IPV6_HEADER_LEN)) return -1;
  if (!ipv6WalkExtensionHeaders(pkt, end, b + IPV6_HEADER_LEN, ipv6NextHeader(pkt, b), walk)) {
    return -1;
  }
  const nh = walk.nextHeader;
  const off = walk.offset;
  const fh = walk.fragOffset;
  out.l4Offset = off;
  out.l4Proto = nh;
  out.fragHeader = fh;
  let rc = 0;
  if (fh >= 0) {
    const offlg = ipv6FragOffLg(pkt, fh);
    out.fragOffset = offlg & IPV6_FRAG_OFFSET_MASK;
    out.fragMore = (offlg & IPV6_FRAG_FLAG_M) !== 0;
    const ident = fh + IPV6_FRAG_IDENT;
    if (!walk.fragFirst) {
      copy16(key, KEY_SRC, pkt, b + IPV6_SRC);
      copy16(key, KEY_DST, pkt, b + IPV6_DST);
      key[KEY_ID] = pkt[ident];
      key[KEY_ID + 1] = pkt[ident + 1];
      key[KEY_ID + 2] = pkt[ident + 2];
      key[KEY_ID + 3] = pkt[ident + 3];
      return RC_NON_FIRST_FRAG;
    }
    out.fragId = le32(pkt, ident);
    rc = RC_FIRST_FRAG;
  }
  let icmpType = -1;
  if (nh === IPPROTO_ICMPV6) {
    if (!inBounds(end, off, 1)) return -1; // #14: type byte must be in the packet
    icmpType = pkt[off + ICMP_TYPE];
    if (icmpv6IsError(icmpType)) {
      if ((rc & RC_FIRST_FRAG) !== 0) return -1;
      return inner6(key, pkt, end, off + ICMP_HEADER_LEN, udpencap);
    }
  }
  copy16(key, KEY_SRC, pkt, b + IPV6_SRC);
  copy16(key, KEY_DST, pkt, b + IPV6_DST);
  if (nh === IPPROTO_ICMPV6) {
    return icmpNoInner(key, pkt, end, off, icmpType === ICMPV6_ECHO_REQUEST, IPPROTO_ICMPV6, rc);
  }
  return transport(key, pkt, end, off, nh, rc, udpencap);
}

/**
 * The packet quoted by an ICMPv6 error; `h` is the start of its IPv6 header.
 * Its extension headers are walked like the outer ones; a quoted non-first
 * fragment has no L4 header, so it gives addresses and protocol only (40).
 */
function inner6(
  key: Uint8Array,
  pkt: Uint8Array,
  len: number,
  h: number,
  udpencap: number,
): number {
  if (!inBounds(len, h, IPV6_HEADER_LEN)) return -1;
  if (!ipv6WalkExtensionHeaders(pkt, len, h + IPV6_HEADER_LEN, ipv6NextHeader(pkt, h), walk)) {
    return -1;
  }
  copy16(key, KEY_SRC, pkt, h + IPV6_DST); // inner destination
  copy16(key, KEY_DST, pkt, h + IPV6_SRC); // inner source
  const nh = walk.nextHeader;
  setProto(key, nh);
  if (!hasPorts(nh) || (walk.fragOffset >= 0 && !walk.fragFirst)) {
    return RC_ICMP_INNER | RC_NO_PORTS;
  }
  return innerPorts(key, pkt, len, walk.offset, udpencap);
}

/**
 * Hot-path parse (docs/COMPATIBILITY.md#hashing-and-parsing with the 11/11b fixes) of the packet at
 * `buf[off, off + len)` (the IP header first), in place: zeroes and fills
 * `out.key`, sets `out.fragId` (first fragments only, else 0), `out.rc` and
 * the header facts of {@link KeyParse} (valid when rc ≥ 0), and returns rc. The range is clamped to `buf`; `l3proto` is
 * {@link ETH_P_IP} or {@link ETH_P_IPV6} (anything else gives -1); `udpencap`
 * is a UDP port (u16, 0 = off). On -1 the key is all zero. Never allocates,
 * never throws, and reads nothing outside the range.
 */
export function parseKeyAt(
  out: KeyParse,
  buf: Uint8Array,
  off: number,
  len: number,
  l3proto: number,
  udpencap: number,
): number {
  clearKey(out);
  out.fragId = 0;
  let b = off | 0;
  if (b < 0 || b > buf.length) b = buf.length;
  let end = b + (len | 0);
  if (end > buf.length || len < 0) end = len < 0 ? b : buf.length;
  out.l3Offset = b;
  out.end = end;
  const encap = udpencap & 0xffff;
  let rc = -1;
  if (l3proto === ETH_P_IP) rc = parseIpv4(out, buf, b, end, encap);
  else if (l3proto === ETH_P_IPV6) rc = parseIpv6(out, buf, b, end, encap);
  if (rc < 0) {
    rc = -1;
    clearKey(out);
    out.fragId = 0;
  }
  out.rc = rc;
  return rc;
}

/** {@link parseKeyAt} for a packet that starts at `pkt[0]`: `len` valid bytes. */
export function parseKeyInto(
  out: KeyParse,
  pkt: Uint8Array,
  len: number,
  l3proto: number,
  udpencap: number,
): number {
  return parseKeyAt(out, pkt, 0, len, l3proto, udpencap);
}

/** Options of {@link parsePacket}. */
export interface ParseOptions {
  /** UDP destination port carrying encapsulated SCTP (0 = off, the default). */
  udpencap?: number;
  /** Hash mode for {@link hashKey} (default 1: SCTP hashes the ports only). */
  hashMode?: number;
  /** {@link ETH_P_IP} or {@link ETH_P_IPV6}; default: from the version nibble (4, 6, else -1). */
  l3proto?: number;
}

/** Result of {@link parsePacket}. */
export interface ParsedPacket {
  /** -1 or a bitmask of `RC_*`. */
  rc: number;
  /** The 40-byte key (a fresh array; all zero when rc is -1). */
  key: Uint8Array;
  /** `hashKey(key, hashMode)`, or 0 when rc is -1. */
  hash: number;
  /** `addressHash(key)`, or 0 when rc is -1. */
  addrHash: number;
  /** Fragment id of a first fragment, else 0. */
  fragId: number;
}

/**
 * Library API: classifies `packet` (starting at the IP header) and hashes the
 * key. Allocates a result; use {@link parseKeyInto} on the hot path.
 */
export function parsePacket(packet: Uint8Array, opts: ParseOptions = {}): ParsedPacket {
  let l3proto = opts.l3proto;
  if (l3proto === undefined) {
    const v = packet.length > 0 ? packet[0] >>> 4 : 0;
    l3proto = v === 4 ? ETH_P_IP : v === 6 ? ETH_P_IPV6 : 0;
  }
  const kp = new KeyParse();
  const rc = parseKeyInto(kp, packet, packet.length, l3proto, opts.udpencap ?? 0);
  if (rc < 0) return { rc, key: kp.key, hash: 0, addrHash: 0, fragId: 0 };
  return {
    rc,
    key: kp.key,
    hash: hashKey(kp.key, opts.hashMode ?? 1),
    addrHash: addressHash(kp.key),
    fragId: kp.fragId,
  };
}
