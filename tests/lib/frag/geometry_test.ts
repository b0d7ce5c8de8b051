/**
 * `fragmentGeometry` takes the fragment's geometry from its parse
 * (`KeyParse`). This property test keeps the former implementation, which
 * re-parsed the IPv4/IPv6 header (and walked the IPv6 extension headers)
 * itself, as an independent reference and requires the same answer (valid or
 * not, start, end, more) for every fragment among the golden packets, their
 * truncations and random mutations — the packets the deciders hand to
 * fragment tracking (parse rc with a fragment bit).
 */

import assert from "node:assert/strict";
import { FragGeometry, fragmentGeometry } from "../../../lib/frag/reassembler.ts";
import {
  ETH_P_IP,
  ETH_P_IPV6,
  KeyParse,
  parseKeyAt,
  RC_FIRST_FRAG,
  RC_NON_FIRST_FRAG,
} from "../../../lib/packet/parse.ts";
import { Ipv6ExtWalk, ipv6WalkExtensionHeaders } from "../../../lib/wire/ipv6.ts";
import { packetVariants } from "../../../testkit/packet_variants.ts";

const refWalk = new Ipv6ExtWalk();

/**
 * The re-parsing reference, over the packet `pkt[0, len)`: by version
 * nibble; IPv4 needs `len ≥ 20`, total length = `len`, 20 ≤ header ≤ `len`;
 * IPv6 needs `len > 40`, a successful extension-header walk and a fragment
 * header. start/end/more as the reassembler defines them.
 */
function geometryByReparse(pkt: Uint8Array, len: number, out: FragGeometry): boolean {
  if (!(len > 0 && len <= pkt.length) || (len | 0) !== len) return false;
  const version = pkt[0] >>> 4;
  if (version === 4) {
    if (len < 20 || ((pkt[2] << 8) | pkt[3]) !== len) return false;
    const hl = (pkt[0] & 0x0f) << 2;
    if (hl < 20 || hl > len) return false;
    const ff = (pkt[6] << 8) | pkt[7];
    out.start = (ff & 0x1fff) << 3;
    out.end = out.start + len - hl;
    out.more = (ff & 0x2000) !== 0;
    return true;
  }
  if (version === 6) {
    if (len <= 40) return false;
    if (!ipv6WalkExtensionHeaders(pkt, len, 40, pkt[6], refWalk)) return false;
    const fh = refWalk.fragOffset;
    if (fh < 0) return false;
    const offlg = (pkt[fh + 2] << 8) | pkt[fh + 3];
    out.start = offlg & 0xfff8;
    out.end = out.start + len - (fh + 8);
    out.more = (offlg & 1) !== 0;
    return true;
  }
  return false;
}

/**
 * Crafted fragments the golden captures lack: IPv6 with extension headers
 * before and after the fragment header, IPv4 with options; every offset/flag
 * combination of a few, at every length.
 */
function* craftedFragments(): Generator<{ buf: Uint8Array; off: number; len: number }> {
  for (const before of [0, 1, 2]) {
    for (const after of [0, 1, 3]) {
      for (const offlg of [0x0000, 0x0001, 0x05a8, 0x05a9]) {
        const ext = before * 8 + 8 + after * 8;
        const p = new Uint8Array(40 + ext + 8 + 5);
        const plen = p.length - 40;
        p.set([0x60, 0, 0, 0, plen >> 8, plen & 0xff, before > 0 ? 0 : 44, 64]);
        let at = 40;
        if (before > 0) {
          p.set([44, before - 1], at); // hop-by-hop of (before) × 8 bytes
          at += before * 8;
        }
        p.set([after > 0 ? 60 : 17, 0, offlg >> 8, offlg & 0xff, 1, 2, 3, 4], at);
        at += 8;
        if (after > 0) {
          p.set([17, after - 1], at); // destination options of (after) × 8 bytes
          at += after * 8;
        }
        p.set([0x12, 0x34, 0x00, 0x35], at);
        for (let len = 40; len <= p.length; len++) yield { buf: p, off: 0, len };
      }
    }
  }
  for (const ihl of [5, 6, 15]) {
    for (const ff of [0x2000, 0x0003, 0x2003]) {
      const p = new Uint8Array(ihl * 4 + 12);
      p.set([0x40 | ihl, 0, 0, p.length, 0, 9, ff >> 8, ff & 0xff, 64, 17]);
      for (let len = 20; len <= p.length; len++) {
        const q = p.slice();
        q[3] = len; // total length = the length handed over
        yield { buf: q, off: 0, len };
      }
    }
  }
}

Deno.test("property: fragmentGeometry from the KeyParse === the re-parsing reference", () => {
  const kp = new KeyParse();
  const a = new FragGeometry();
  const b = new FragGeometry();
  const outcomes = new Map<string, number>();
  const count = (k: string) => outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
  const inputs = [...craftedFragments(), ...packetVariants(0x6e0, 40000)];
  for (const v of inputs) {
    const { buf, off, len } = v;
    const nibble = buf[off] >>> 4;
    const l3 = nibble === 4 ? ETH_P_IP : nibble === 6 ? ETH_P_IPV6 : 0;
    const rc = parseKeyAt(kp, buf, off, len, l3, "udpencap" in v ? v.udpencap : 0);
    const got = fragmentGeometry(kp, buf, off, len, b);
    if (rc < 0 || (rc & (RC_FIRST_FRAG | RC_NON_FIRST_FRAG)) === 0) {
      // Not a fragment for the parser: never handed to fragment tracking, no geometry.
      assert.equal(got, false);
      count(rc < 0 ? "invalid" : "whole");
      continue;
    }
    const want = geometryByReparse(buf.subarray(off, off + len), len, a);
    const where = `rc ${rc} len ${len} off ${off} v${nibble}`;
    assert.equal(got, want, where);
    if (want) assert.deepEqual([b.start, b.end, b.more], [a.start, a.end, a.more], where);
    count(`${want ? "valid" : "ignored"} v${nibble} rc ${rc & 3}`);
  }
  // Both families, first and non-first fragments, accepted and ignored ones.
  for (const k of ["valid v4 rc 1", "valid v4 rc 2", "valid v6 rc 1", "valid v6 rc 2"]) {
    assert.ok((outcomes.get(k) ?? 0) > 20, `${k}: ${outcomes.get(k)}`);
  }
  assert.ok((outcomes.get("ignored v4 rc 2") ?? 0) > 100, `${outcomes.get("ignored v4 rc 2")}`);
  assert.ok((outcomes.get("whole") ?? 0) > 1000);
});

Deno.test("fragmentGeometry: a range outside the buffer or a non-integer length is ignored", () => {
  const kp = new KeyParse();
  const g = new FragGeometry();
  const p = new Uint8Array(28);
  p.set([0x45, 0, 0, 28, 0, 7, 0x20, 0x01, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
  assert.equal(parseKeyAt(kp, p, 0, 28, ETH_P_IP, 0), 2);
  assert.equal(fragmentGeometry(kp, p, 0, 28, g), true);
  assert.deepEqual([g.start, g.end, g.more], [8, 16, true]);
  assert.equal(fragmentGeometry(kp, p, 1, 28, g), false);
  assert.equal(fragmentGeometry(kp, p, 0, 28.5, g), false);
  assert.equal(fragmentGeometry(kp, p, -1, 28, g), false);
});
