/**
 * `locateMatchL4` takes the byte-match L4 header from the packet's one parse
 * (`KeyParse`). This property test keeps the former implementation, which
 * re-parsed the IPv4/IPv6 header with its own bounds tests, as an
 * independent reference and requires the same answer (found or not, offset,
 * protocol) for every golden packet, every truncation and random mutations,
 * with and without UDP-encapsulated SCTP.
 */

import assert from "node:assert/strict";
import { locateMatchL4, MatchL4 } from "../../../lib/flow/match.ts";
import { ETH_P_IP, ETH_P_IPV6, KeyParse, parseKeyAt } from "../../../lib/packet/parse.ts";
import { KEY_DPORT, keyProto } from "../../../lib/packet/key.ts";
import { Ipv6ExtWalk, ipv6WalkExtensionHeaders } from "../../../lib/wire/ipv6.ts";
import { packetVariants } from "../../../testkit/packet_variants.ts";

const refWalk = new Ipv6ExtWalk();

/**
 * The re-parsing reference (nfqlb 1.2.0's rules, with the bounded walk):
 * IPv6 if the version nibble is 6, else IPv4; IPv4 needs `off + 20 < end`
 * and IHL ≥ 5, L4 at `ihl * 4`; IPv6 needs `off + 40 < end`, a successful
 * extension-header walk and no fragment header; then `l4 + size < end`
 * (tcp 20, udp 8, sctp 12, else 0), and UDP with an SCTP key moves past the
 * UDP header and needs `l4 + 12 < end`.
 */
function locateByReparse(
  pkt: Uint8Array,
  off: number,
  len: number,
  kp: number,
  out: MatchL4,
): boolean {
  let end = off + len;
  if (end > pkt.length) end = pkt.length;
  let l4 = 0;
  let proto = 0;
  if (pkt[off] >>> 4 === 6) {
    if (!(off + 40 < end)) return false;
    if (!ipv6WalkExtensionHeaders(pkt, end, off + 40, pkt[off + 6], refWalk)) return false;
    if (refWalk.fragOffset >= 0) return false;
    l4 = refWalk.offset;
    proto = refWalk.nextHeader;
  } else {
    if (!(off + 20 < end)) return false;
    const ihl = pkt[off] & 0x0f;
    if (ihl < 5) return false;
    l4 = off + (ihl << 2);
    proto = pkt[off + 9];
  }
  const size = proto === 6 ? 20 : proto === 17 ? 8 : proto === 132 ? 12 : 0;
  if (!(l4 + size < end)) return false;
  if (proto === 17 && kp === 132) {
    l4 += 8;
    if (!(l4 + 12 < end)) return false;
    proto = 132;
  }
  out.offset = l4;
  out.proto = proto;
  return true;
}

Deno.test("property: locateMatchL4 from the KeyParse === the re-parsing reference", () => {
  const kp = new KeyParse();
  const a = new MatchL4();
  const b = new MatchL4();
  const outcomes = new Map<string, number>();
  let compared = 0;
  const compare = (buf: Uint8Array, off: number, len: number, udpencap: number) => {
    // The family the reference chose (the version nibble), as NFQUEUE's L3 protocol.
    const l3 = buf[off] >>> 4 === 6 ? ETH_P_IPV6 : ETH_P_IP;
    if (parseKeyAt(kp, buf, off, len, l3, udpencap) < 0) return;
    a.offset =
      b.offset =
      a.proto =
      b.proto =
        -1;
    const want = locateByReparse(buf, off, len, keyProto(kp.key), a);
    const got = locateMatchL4(kp, b);
    const where = `len ${len} off ${off} udpencap ${udpencap} rc ${kp.rc}`;
    assert.equal(got, want, where);
    if (want) assert.deepEqual([b.offset, b.proto], [a.offset, a.proto], where);
    compared++;
    const k = want ? `found proto ${a.proto}` : `none rc ${kp.rc}`;
    outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
  };
  for (const v of packetVariants(0x10ca7e)) {
    compare(v.buf, v.off, v.len, v.udpencap);
    // flowlb's second parse: a UDP key re-parsed with its destination port as udpencap.
    if (kp.rc >= 0 && keyProto(kp.key) === 17) {
      const dport = (kp.key[KEY_DPORT] << 8) | kp.key[KEY_DPORT + 1];
      if (dport !== 0) compare(v.buf, v.off, v.len, dport);
    }
  }
  // The inputs exercised every answer, including the strict bound at exact header sizes.
  for (const k of ["found proto 6", "found proto 17", "found proto 132", "found proto 1"]) {
    assert.ok((outcomes.get(k) ?? 0) > 50, `${k}: ${outcomes.get(k)}`);
  }
  const none = [...outcomes].filter(([k]) => k.startsWith("none")).reduce((s, [, n]) => s + n, 0);
  assert.ok(none > 1000, `none: ${none}`);
  assert.ok(compared > 50000, `${compared} comparisons`);
});

Deno.test("locateMatchL4: a failed parse and IPv6 fragments locate nothing", () => {
  const kp = new KeyParse();
  const out = new MatchL4();
  parseKeyAt(kp, new Uint8Array(10), 0, 10, ETH_P_IP, 0);
  assert.equal(kp.rc, -1);
  assert.equal(locateMatchL4(kp, out), false);
  // IPv6 first fragment (offset 0, M): UDP ports parsed, but no byte matches.
  const p = new Uint8Array(40 + 8 + 12);
  p.set([0x60, 0, 0, 0, 0, 20, 44, 64]);
  p.set([17, 0, 0, 1, 0, 0, 0, 9], 40);
  p.set([0x12, 0x34, 0, 53], 48);
  assert.equal(parseKeyAt(kp, p, 0, p.length, ETH_P_IPV6, 0), 1);
  assert.equal(kp.fragHeader, 40);
  assert.equal(locateMatchL4(kp, out), false);
});
