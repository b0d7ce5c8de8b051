/**
 * Tests for lib/packet.ts and lib/wire/*: golden vectors (docs/COMPATIBILITY.md#hashing-and-parsing with the
 * `fixed` expectations of docs/COMPATIBILITY.md#differences D22–D23), the Appendix B examples, robustness on
 * truncated / random input, and targeted tests of the fixed defects #13, #14.
 */

import assert from "node:assert/strict";
import { addressHash, djb2, hashKey } from "../../../lib/packet/hash.ts";
import { KEY_LEN } from "../../../lib/packet/key.ts";
import {
  ETH_P_IP,
  ETH_P_IPV6,
  KeyParse,
  parseKeyAt,
  parseKeyInto,
  parsePacket,
  RC_FIRST_FRAG,
  RC_ICMP_INNER,
  RC_ICMP_NO_INNER,
  RC_NO_PORTS,
  RC_NON_FIRST_FRAG,
  RC_UDP_ENCAP,
} from "../../../lib/packet/parse.ts";
import {
  IPV6_MAX_EXT_HEADERS,
  Ipv6ExtWalk,
  ipv6WalkExtensionHeaders,
} from "../../../lib/wire/ipv6.ts";
import { ETH_HEADER_LEN, ethertype, LINKTYPE_ETHERNET, readPcap } from "../../../testkit/pcap.ts";
import {
  type GoldenExpect,
  type GoldenRow,
  goldenRows,
  unhex,
} from "../../../testkit/golden_packets.ts";
import { prng } from "../../../testkit/prng.ts";

const DATA = new URL("../../testdata/", import.meta.url);

function hex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}
const rows = goldenRows;

const pcaps = new Map<string, Uint8Array[]>();
function frames(file: string): Uint8Array[] {
  let f = pcaps.get(file);
  if (!f) {
    const p = readPcap(Deno.readFileSync(new URL(`pcap/${file}`, DATA)));
    assert.equal(p.linktype, LINKTYPE_ETHERNET);
    f = p.frames;
    pcaps.set(file, f);
  }
  return f;
}

/** The expectation a correct implementation must meet (`fixed` where 1.2.0 was wrong). */
function expected(r: GoldenRow): GoldenExpect {
  return r.fixed ?? r;
}

const VALID_RC = new Set([-1, 0, 1, 2, 4, 5, 8, 12, 16, 17, 32, 33, 40]);

function row(file: string, index: number, udpencap = 0): GoldenRow {
  const r = rows.find((x) => x.file === file && x.index === index && x.udpencap === udpencap);
  assert.ok(r, `golden row ${file} #${index}`);
  return r;
}

// ---------------------------------------------------------------- (a) golden

Deno.test("golden: file shape", () => {
  assert.equal(rows.length, 822);
  assert.equal(rows.filter((r) => r.fixed).length, 76);
  assert.equal(rows.filter((r) => r.defect === "ipv6-extension-header-walk").length, 48);
  assert.equal(rows.filter((r) => r.defect === "ipv6-first-fragment-ports").length, 28);
});

Deno.test("golden: parseKeyInto with l3proto from the pcap ethertype", () => {
  const kp = new KeyParse();
  // A larger reused buffer with garbage after the packet: only `len` bytes may be read.
  const buf = new Uint8Array(4096);
  let checked = 0, full = 0;
  for (const r of rows) {
    const frame = frames(r.file)[r.index];
    assert.ok(frame, `${r.file} #${r.index} exists`);
    const pkt = frame.subarray(ETH_HEADER_LEN);
    assert.equal(hex(pkt), r.packet, `${r.file} #${r.index}: packet = frame minus Ethernet`);
    buf.fill(0xa5);
    buf.set(pkt);
    const e = expected(r);
    const where = `${r.file} #${r.index} hash_mode ${r.hash_mode}${
      r.defect ? ` (${r.defect})` : ""
    }`;
    const rc = parseKeyInto(kp, buf, pkt.length, ethertype(frame), r.udpencap);
    assert.equal(rc, e.rc, `${where}: rc`);
    assert.equal(kp.rc, e.rc, `${where}: out.rc`);
    checked++;
    if (e.rc >= 0) {
      assert.equal(hex(kp.key), e.key, `${where}: key`);
      assert.equal(hashKey(kp.key, r.hash_mode), e.hash, `${where}: hash`);
      assert.equal(addressHash(kp.key), e.addr_hash, `${where}: addr_hash`);
      assert.equal(kp.fragId, e.fragid, `${where}: fragid`);
      full++;
    } else {
      assert.equal(hex(kp.key), "00".repeat(KEY_LEN), `${where}: zero key on -1`);
      assert.equal(kp.fragId, 0);
    }
  }
  assert.equal(checked, 822);
  assert.equal(full, 794); // 822 rows minus the 28 that are -1 even when fixed
});

Deno.test("golden: parsePacket with inferred l3proto", () => {
  for (const r of rows) {
    const e = expected(r);
    const where = `${r.file} #${r.index} hash_mode ${r.hash_mode}`;
    const res = parsePacket(unhex(r.packet), { udpencap: r.udpencap, hashMode: r.hash_mode });
    assert.equal(res.rc, e.rc, `${where}: rc`);
    if (e.rc >= 0) {
      assert.equal(hex(res.key), e.key, `${where}: key`);
      assert.equal(res.hash, e.hash, `${where}: hash`);
      assert.equal(res.addrHash, e.addr_hash, `${where}: addr_hash`);
      assert.equal(res.fragId, e.fragid, `${where}: fragid`);
    } else {
      assert.deepEqual(
        { key: hex(res.key), hash: res.hash, addrHash: res.addrHash, fragId: res.fragId },
        { key: "00".repeat(KEY_LEN), hash: 0, addrHash: 0, fragId: 0 },
      );
    }
  }
});

Deno.test("golden: parsePacket hashMode defaults to 1 and explicit l3proto wins", () => {
  const sctp = rows.find((r) => r.hash_mode === 1 && r.rc === 4 && r.udpencap === 9899);
  assert.ok(sctp);
  const res = parsePacket(unhex(sctp.packet), { udpencap: 9899 });
  assert.equal(res.hash, sctp.hash);
  const mode0 = rows.find((r) =>
    r.hash_mode === 0 && r.file === sctp.file && r.index === sctp.index
  );
  assert.ok(mode0);
  assert.notEqual(mode0.hash, sctp.hash); // the default genuinely matters here
  // An IPv4 packet forced through the IPv6 parser is not what the golden row says.
  const v4 = row("crafted.pcap", 0);
  assert.equal(parsePacket(unhex(v4.packet), { l3proto: 0x1234 }).rc, -1);
});

// ------------------------------------------------------------ (b) Appendix B

function tail(r: { key: Uint8Array }): string {
  return hex(r.key.subarray(32));
}

Deno.test("Appendix B: djb2 vectors", () => {
  assert.equal(djb2(new Uint8Array(0)), 5381);
  assert.equal(djb2(new Uint8Array(32)), 3911903493);
  assert.equal(djb2(new Uint8Array(40)), 4235337221);
});

Deno.test("Appendix B: crafted.pcap examples", () => {
  const pkt = (i: number) => frames("crafted.pcap")[i].subarray(ETH_HEADER_LEN);
  const tcp = parsePacket(pkt(0));
  assert.equal(tcp.rc, 0);
  assert.equal(
    hex(tcp.key),
    "00000000000000000000ffff534dcaa7" + "00000000000000000000ffff0d25305e" + "0000060095320eda",
  );
  assert.equal(tcp.hash, 1487357159);
  assert.equal(tcp.addrHash, 1335268178);

  const echo = parsePacket(pkt(3));
  assert.deepEqual([echo.rc, tail(echo)], [16, "de06010000000000"]);
  const icmpErr = parsePacket(pkt(4));
  assert.deepEqual([icmpErr.rc, tail(icmpErr)], [8, "0000060011e36b0e"]);
  const gre = parsePacket(pkt(6));
  assert.deepEqual([gre.rc, tail(gre)], [32, "00002f0000000000"]);

  const f4a = parsePacket(pkt(15));
  assert.deepEqual([f4a.rc, tail(f4a), f4a.fragId], [1, "0000110014f5930e", 32318]);
  const f4b = parsePacket(pkt(16));
  assert.deepEqual([f4b.rc, tail(f4b), f4b.fragId], [2, "3e7e000000000000", 0]);

  // IPv6 first fragment: 1.2.0 put the fragment header's first 4 bytes in the
  // port slots (tail 0000 1100 1100 0001); corrected, the UDP ports follow the
  // 8-byte fragment header, i.e. they are packet bytes 48..52.
  const p19 = pkt(19);
  const f6a = parsePacket(p19);
  assert.equal(f6a.rc, 1);
  assert.equal(f6a.fragId, 1444994380);
  assert.equal(tail(f6a), "00001100" + hex(p19.subarray(48, 52)));
  assert.notEqual(tail(f6a), "0000110011000001");
  const fixed19 = row("crafted.pcap", 19).fixed;
  assert.ok(fixed19);
  assert.equal(hex(f6a.key), fixed19.key);
  const f6b = parsePacket(pkt(20));
  assert.deepEqual([f6b.rc, tail(f6b), f6b.fragId], [2, "4cdd205600000000", 0]);
});

Deno.test("Appendix B: SCTP over UDP 9899", () => {
  const p = frames("sctp-encap-ipv4.pcap")[0].subarray(ETH_HEADER_LEN);
  const r = parsePacket(p, { udpencap: 9899 });
  assert.deepEqual([r.rc, tail(r)], [4, "000084008c111770"]);
  // Without udpencap it is plain UDP.
  const plain = parsePacket(p);
  assert.equal(plain.rc, 0);
  assert.equal(tail(plain).slice(0, 8), "00001100");
});

Deno.test("docs/COMPATIBILITY.md#hashing-and-parsing: udp-ipv6.pcap #0 first fragment (fixed ports, fragid 979822304)", () => {
  const p = frames("udp-ipv6.pcap")[0].subarray(ETH_HEADER_LEN);
  const r = parsePacket(p);
  assert.equal(r.rc, 1);
  assert.equal(r.fragId, 979822304);
  assert.equal(tail(r), "00001100" + hex(p.subarray(48, 52)));
});

// ----------------------------------------------------------- (c) robustness

const ka = new KeyParse();
const kb = new KeyParse();
const scratch = new Uint8Array(4096);
/**
 * Parses `pkt[0..len)` twice: as an exact-size copy and inside a larger buffer
 * whose tail is garbage. Both must agree (nothing past `len` is read), rc must
 * be valid, and rc -1 must come with a zero key and fragId. Messages are only
 * built on failure (this runs a few hundred thousand times).
 */
function robust(pkt: Uint8Array, len: number, l3: number, encap: number, fill: number): number {
  const exact = pkt.slice(0, len);
  const where = () => `${hex(exact)} l3 0x${l3.toString(16)} udpencap ${encap}`;
  let rc: number;
  try {
    rc = parseKeyInto(ka, exact, len, l3, encap);
    scratch.set(exact);
    scratch.fill(fill, len, len + 128);
    parseKeyInto(kb, scratch, len, l3, encap);
  } catch (e) {
    throw new Error(`threw on ${where()}: ${e}`);
  }
  if (!VALID_RC.has(rc)) assert.fail(`${where()}: rc ${rc}`);
  let same = kb.rc === rc && kb.fragId === ka.fragId;
  for (let i = 0; i < KEY_LEN; i++) same = same && ka.key[i] === kb.key[i];
  if (!same) assert.fail(`${where()}: result depends on bytes past len`);
  if (rc < 0) {
    let zero = ka.fragId === 0;
    for (let i = 0; i < KEY_LEN; i++) zero = zero && ka.key[i] === 0;
    if (!zero) assert.fail(`${where()}: key/fragId not zero on -1`);
  }
  return rc;
}

const uniquePackets = [...new Set(rows.map((r) => r.packet))].map(unhex);

Deno.test("robustness: every truncation of every golden packet", () => {
  let n = 0;
  for (const p of uniquePackets) {
    for (let len = 0; len <= p.length; len++) {
      for (const l3 of [ETH_P_IP, ETH_P_IPV6]) {
        robust(p, len, l3, 0, 0xff);
        robust(p, len, l3, 9899, 0x00);
        n += 2;
      }
    }
  }
  assert.ok(n > 100000, `${n} parses`);
});

Deno.test("robustness: the minimum length of a golden packet is strict (`off + n < len`)", () => {
  // crafted #1: UDP, rc 0 at full length; ports end at byte 24, so len 24 must fail, 25 pass.
  const p = unhex(row("crafted.pcap", 1).packet);
  assert.equal(robust(p, 24, ETH_P_IP, 0, 0), -1);
  assert.equal(robust(p, 25, ETH_P_IP, 0, 0), 0);
  assert.equal(robust(p, 20, ETH_P_IP, 0, 0), -1); // header needs len >= 21
});

Deno.test("robustness: random and bit-flipped byte strings", () => {
  const rnd = prng(0x6e66716c); // "nfql"
  const seen = new Map<number, number>();
  const count = (rc: number) => seen.set(rc, (seen.get(rc) ?? 0) + 1);
  // Random strings with an IPv4/IPv6-looking first byte.
  for (let i = 0; i < 3000; i++) {
    const len = Math.floor(rnd() * 160);
    const p = new Uint8Array(len);
    for (let j = 0; j < len; j++) p[j] = Math.floor(rnd() * 256);
    if (len > 0) p[0] = (rnd() < 0.5 ? 0x40 : 0x60) | (p[0] & 0x0f);
    if (len > 6 && p[0] >> 4 === 6 && rnd() < 0.5) p[6] = [0, 43, 44, 60, 58][i % 5];
    const l3 = p.length > 0 && p[0] >> 4 === 6 ? ETH_P_IPV6 : ETH_P_IP;
    count(robust(p, len, l3, i % 3 === 0 ? Math.floor(rnd() * 65536) : 0, i & 0xff));
  }
  // Bit flips (1–4 bits) of golden packets, sometimes truncated.
  for (let i = 0; i < 4000; i++) {
    const p = uniquePackets[Math.floor(rnd() * uniquePackets.length)].slice();
    if (p.length === 0) continue;
    const flips = 1 + Math.floor(rnd() * 4);
    for (let k = 0; k < flips; k++) {
      // Bias flips towards the headers, where they matter.
      const pos = Math.floor(rnd() * Math.min(p.length, rnd() < 0.8 ? 120 : p.length));
      p[pos] ^= 1 << Math.floor(rnd() * 8);
    }
    const len = rnd() < 0.25 ? Math.floor(rnd() * (p.length + 1)) : p.length;
    const l3 = p[0] >> 4 === 6 ? ETH_P_IPV6 : ETH_P_IP;
    count(robust(p, len, l3, rnd() < 0.3 ? 9899 : 0, 0x5a));
  }
  // Both kinds produced a spread of outcomes (the inputs really exercised the parser).
  for (const rc of [-1, 0, 2, 8, 16, 32]) assert.ok((seen.get(rc) ?? 0) > 0, `rc ${rc} seen`);
});

Deno.test("robustness: len beyond the buffer, odd l3proto values", () => {
  const p = unhex(row("crafted.pcap", 0).packet);
  const kp = new KeyParse();
  assert.equal(parseKeyInto(kp, p, p.length + 1000, ETH_P_IP, 0), 0);
  assert.equal(parseKeyInto(kp, p, -5, ETH_P_IP, 0), -1);
  assert.equal(parseKeyInto(kp, p, NaN, ETH_P_IP, 0), -1);
  for (const l3 of [0, 0x0806, 0x9000, -1, 0x10800]) {
    assert.equal(parseKeyInto(kp, p, p.length, l3, 0), -1);
    assert.ok(kp.key.every((b) => b === 0));
  }
  assert.equal(parsePacket(new Uint8Array(0)).rc, -1);
});

// ------------------------------------------------- (d) fixed defects, crafted

const SRC6 = unhex("fd000000000000000000000000000001");
const DST6 = unhex("fd000000000000000000000000000002");

function cat(...parts: (Uint8Array | number[])[]): Uint8Array {
  const n = parts.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
function ip6(nh: number, src = SRC6, dst = DST6): Uint8Array {
  const h = new Uint8Array(40);
  h[0] = 0x60;
  h[6] = nh;
  h[7] = 64;
  h.set(src, 8);
  h.set(dst, 24);
  return h;
}
/** Hop-by-hop / routing / destination options header of `(len + 1) * 8` bytes. */
function ext(nh: number, len = 0): number[] {
  const h = new Array<number>((len + 1) * 8).fill(0);
  h[0] = nh;
  h[1] = len;
  return h;
}
function frag(nh: number, offset8: number, more: boolean, ident: number[]): number[] {
  const offlg = (offset8 << 3) | (more ? 1 : 0);
  return [nh, 0, offlg >> 8, offlg & 0xff, ...ident];
}
const TCP = [0x12, 0x34, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0x20, 0, 0, 0, 0, 0];
const UDP = [0x30, 0x39, 0x00, 0x35, 0, 12, 0, 0, 0xde, 0xad, 0xbe, 0xef];

function parse6(p: Uint8Array, udpencap = 0): KeyParse {
  const kp = new KeyParse();
  parseKeyInto(kp, p, p.length, ETH_P_IPV6, udpencap);
  return kp;
}
function parse4(p: Uint8Array, udpencap = 0): KeyParse {
  const kp = new KeyParse();
  parseKeyInto(kp, p, p.length, ETH_P_IP, udpencap);
  return kp;
}

Deno.test("#13: fragment header followed by extension headers is walked, not looped on", () => {
  // 1.2.0 loops forever here: fragment (first, next header 60, reserved 0), then
  // destination options (len 0) -> TCP. Fixed: rc 1, TCP ports, fragid.
  const p = cat(ip6(44), frag(60, 0, true, [1, 2, 3, 4]), ext(6), TCP);
  // 1.2.0 never returns from this call; returning at all is the property.
  const kp = parse6(p);
  assert.equal(kp.rc, RC_FIRST_FRAG);
  assert.equal(kp.fragId, 0x04030201);
  assert.equal(hex(kp.key.subarray(32)), "0000060012340050");
  assert.equal(hex(kp.key.subarray(0, 32)), hex(SRC6) + hex(DST6));
});

Deno.test("#13: an unbounded chain after the fragment header returns -1 quickly", () => {
  // Fragment -> destination options chained to itself hundreds of times.
  const chain: number[] = [];
  for (let i = 0; i < 500; i++) chain.push(...ext(60));
  const p = cat(ip6(44), frag(60, 0, true, [9, 9, 9, 9]), chain, TCP);
  // Every header advances the walk by at least 8 bytes, so it ends within the packet: returning
  // at all is the property (how fast is bench/packet_bench.ts's business, not a test's).
  assert.equal(parse6(p).rc, -1);
  // The same chain before the fragment header, and without any fragment header.
  assert.equal(parse6(cat(ip6(60), chain, TCP)).rc, -1);
});

Deno.test("#13: a post-fragment walk that leaves the packet returns -1", () => {
  // Destination options claiming (255 + 1) * 8 bytes in a short packet.
  assert.equal(
    parse6(cat(ip6(44), frag(60, 0, true, [1, 2, 3, 4]), ext(6, 255).slice(0, 8), TCP)).rc,
    -1,
  );
  // Fragment header whose next header is an extension header, then nothing.
  assert.equal(parse6(cat(ip6(44), frag(0, 0, true, [1, 2, 3, 4]), [0])).rc, -1);
});

Deno.test("extension header walk: bound is IPV6_MAX_EXT_HEADERS", () => {
  const build = (n: number) => {
    const parts: number[][] = [];
    for (let i = 0; i < n; i++) parts.push(ext(i === n - 1 ? 6 : 60));
    return cat(ip6(60), ...parts, TCP);
  };
  const ok = parse6(build(IPV6_MAX_EXT_HEADERS));
  assert.equal(ok.rc, 0);
  assert.equal(hex(ok.key.subarray(32)), "0000060012340050");
  assert.equal(parse6(build(IPV6_MAX_EXT_HEADERS + 1)).rc, -1);
});

Deno.test("extension header walk: (len + 1) * 8, len 0 allowed, as the golden `fixed` rows", () => {
  // Hop-by-hop with a router-alert option (len 0), the case 1.2.0 dropped.
  const ra = [17, 0, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00];
  const r1 = parse6(cat(ip6(0), ra, UDP));
  assert.equal(r1.rc, 0);
  assert.equal(hex(r1.key.subarray(32)), "0000110030390035");
  // Routing header of 24 bytes (len 2), then destination options (len 1) -> TCP.
  const r2 = parse6(cat(ip6(43), ext(60, 2), ext(6, 1), TCP));
  assert.equal(r2.rc, 0);
  assert.equal(hex(r2.key.subarray(32)), "0000060012340050");
  // The golden walk rows are the same shape: hop-by-hop len 0 -> dest opts len 0 -> TCP.
  const g = row("crafted.pcap", 13);
  assert.equal(g.rc, -1); // 1.2.0
  assert.ok(g.fixed);
  assert.equal(parsePacket(unhex(g.packet)).rc, g.fixed.rc);
});

Deno.test("extension headers: non-first fragment behind an extension header", () => {
  const p = cat(ip6(0), ext(44), frag(6, 100, true, [0xaa, 0xbb, 0xcc, 0xdd]), [1, 2, 3, 4, 5]);
  const kp = parse6(p);
  assert.equal(kp.rc, RC_NON_FIRST_FRAG);
  assert.equal(kp.fragId, 0);
  assert.equal(hex(kp.key.subarray(32)), "aabbccdd00000000");
  // A non-first fragment whose next header names an extension header: the
  // payload after the fragment header is not walked.
  const q = cat(ip6(44), frag(60, 1, false, [1, 1, 1, 1]), [60, 255, 0, 0]);
  assert.equal(parse6(q).rc, RC_NON_FIRST_FRAG);
  // A second fragment header is corrupt.
  const two = cat(ip6(44), frag(44, 0, true, [1, 1, 1, 1]), frag(6, 0, true, [2, 2, 2, 2]), TCP);
  assert.equal(parse6(two).rc, -1);
});

Deno.test("IPv6 first fragment: udpencap, ICMPv6 echo, no-ports protocol", () => {
  const sctp = [0x0b, 0xb8, 0x0b, 0xb9, 0, 0, 0, 0, 0, 0, 0, 0];
  const udpEncap = [0x11, 0x11, 0x26, 0xab, 0, 20, 0, 0]; // dport 9899
  const p = cat(ip6(44), frag(17, 0, true, [0, 0, 0, 7]), udpEncap, sctp);
  const kp = parse6(p, 9899);
  assert.equal(kp.rc, RC_FIRST_FRAG | RC_UDP_ENCAP);
  assert.equal(hex(kp.key.subarray(32)), "000084000bb80bb9");
  assert.equal(kp.fragId, 0x07000000);
  const echo = parse6(
    cat(ip6(44), frag(58, 0, true, [0, 0, 0, 1]), [128, 0, 0, 0, 0x12, 0x34, 0, 1, 0]),
  );
  assert.equal(echo.rc, RC_FIRST_FRAG | RC_ICMP_NO_INNER);
  assert.equal(hex(echo.key.subarray(32)), "12343a0000000000");
  const gre = parse6(cat(ip6(44), frag(47, 0, true, [0, 0, 0, 1]), [0, 0, 0, 0]));
  assert.equal(gre.rc, RC_FIRST_FRAG | RC_NO_PORTS);
  assert.equal(hex(gre.key.subarray(32)), "00002f0000000000");
  // Fragmented ICMPv6 error: -1 (as 1.2.0).
  const err = cat(ip6(44), frag(58, 0, true, [0, 0, 0, 1]), [1, 0, 0, 0, 0, 0, 0, 0], ip6(6), TCP);
  assert.equal(parse6(err).rc, -1);
});

Deno.test("ICMPv6 error: the inner packet's extension headers use the fixed walk", () => {
  const icmp = [1, 4, 0, 0, 0, 0, 0, 0]; // destination unreachable
  // Inner packet: from DST6 to SRC6, hop-by-hop (len 0) -> UDP 12345 -> 53.
  const p = cat(ip6(58, SRC6, DST6), icmp, ip6(0, DST6, SRC6), ext(17), UDP);
  const kp = parse6(p);
  assert.equal(kp.rc, RC_ICMP_INNER);
  // Addresses and ports swapped: key src = inner dst (SRC6), sport = inner dport.
  assert.equal(hex(kp.key.subarray(0, 32)), hex(SRC6) + hex(DST6));
  assert.equal(hex(kp.key.subarray(32)), "0000110000353039");
  // Inner first fragment: ports after the fragment header.
  const f = cat(ip6(58), icmp, ip6(44, DST6, SRC6), frag(6, 0, true, [1, 2, 3, 4]), TCP);
  const kf = parse6(f);
  assert.equal(kf.rc, RC_ICMP_INNER);
  assert.equal(hex(kf.key.subarray(32)), "0000060000501234");
  assert.equal(kf.fragId, 0);
  // Inner non-first fragment: no L4 header, so addresses and protocol only.
  const nf = cat(ip6(58), icmp, ip6(44, DST6, SRC6), frag(6, 3, true, [1, 2, 3, 4]), TCP);
  const knf = parse6(nf);
  assert.equal(knf.rc, RC_ICMP_INNER | RC_NO_PORTS);
  assert.equal(hex(knf.key.subarray(32)), "0000060000000000");
  // Inner walk that runs off the end: -1.
  const bad = cat(ip6(58), icmp, ip6(0, DST6, SRC6), ext(17, 10).slice(0, 8), UDP);
  assert.equal(parse6(bad).rc, -1);
  // udpencap applies to the inner SOURCE port.
  const sctpPorts = [0x0b, 0xb8, 0x0b, 0xb9, 0, 0, 0, 0, 0, 0, 0, 0];
  const enc = cat(
    ip6(58),
    icmp,
    ip6(17, DST6, SRC6),
    [0x26, 0xab, 0x11, 0x11, 0, 20, 0, 0],
    sctpPorts,
  );
  const ke = parse6(enc, 9899);
  assert.equal(ke.rc, RC_ICMP_INNER | RC_UDP_ENCAP);
  assert.equal(hex(ke.key.subarray(32)), "000084000bb90bb8");
});

function ip4(proto: number, totalLen: number, ihl = 5): Uint8Array {
  const h = new Uint8Array(ihl * 4);
  h[0] = 0x40 | ihl;
  h[2] = totalLen >> 8;
  h[3] = totalLen & 0xff;
  h[8] = 64;
  h[9] = proto;
  h.set([10, 0, 0, 1], 12);
  h.set([10, 0, 0, 2], 16);
  return h;
}

Deno.test("#14: ICMP type and echo identifier must be inside the packet", () => {
  // IHL 15 (60-byte header) but the packet ends before the ICMP type byte.
  const long = ip4(1, 30, 15).slice(0, 30);
  assert.equal(parse4(long).rc, -1);
  // The type byte is the last byte: not strictly in bounds.
  assert.equal(parse4(cat(ip4(1, 21), [0])).rc, -1);
  // Echo reply with 2 bytes after the type: rc 16 (no identifier read).
  const reply = parse4(cat(ip4(1, 22), [0, 0]));
  assert.equal(reply.rc, RC_ICMP_NO_INNER);
  assert.equal(hex(reply.key.subarray(32)), "0000010000000000");
  // Echo request: identifier at bytes 4..6 needs a 7th ICMP byte.
  const req = [8, 0, 0, 0, 0xbe, 0xef, 0];
  assert.equal(parse4(cat(ip4(1, 26), req.slice(0, 6))).rc, -1);
  const ok = parse4(cat(ip4(1, 27), req));
  assert.equal(ok.rc, RC_ICMP_NO_INNER);
  assert.equal(hex(ok.key.subarray(32)), "beef010000000000");
  assert.equal(hex(ok.key.subarray(0, 16)), "00000000000000000000ffff0a000001");
});

Deno.test("#14: ICMPv6 type and identifier must be inside the packet", () => {
  assert.equal(parse6(cat(ip6(58), [129])).rc, -1);
  const reply = parse6(cat(ip6(58), [129, 0]));
  assert.equal(reply.rc, RC_ICMP_NO_INNER);
  assert.equal(hex(reply.key.subarray(32)), "00003a0000000000");
  assert.equal(parse6(cat(ip6(58), [128, 0, 0, 0, 0xca, 0xfe])).rc, -1);
  const req = parse6(cat(ip6(58), [128, 0, 0, 0, 0xca, 0xfe, 0]));
  assert.equal(req.rc, RC_ICMP_NO_INNER);
  assert.equal(hex(req.key.subarray(32)), "cafe3a0000000000");
  // ICMPv6 type after an extension header (1.2.0 read it unchecked).
  assert.equal(parse6(cat(ip6(60), ext(58))).rc, -1);
});

Deno.test("#14: IPv6 fragment header must be inside the packet", () => {
  const full = cat(ip6(44), frag(17, 5, false, [1, 2, 3, 4]), [0]);
  assert.equal(parse6(full).rc, RC_NON_FIRST_FRAG);
  for (let cut = 40; cut < full.length; cut++) {
    assert.equal(parse6(full.slice(0, cut)).rc, -1, `cut ${cut}`);
  }
});

Deno.test("IPv4: fragments, udpencap and inner packets (docs/COMPATIBILITY.md#hashing-and-parsing)", () => {
  // First fragment (MF, offset 0) keeps ports and reports the id little-endian.
  const f = cat(ip4(17, 32), UDP);
  f[4] = 0x3e;
  f[5] = 0x7e;
  f[6] = 0x20; // MF
  const kf = parse4(f);
  assert.deepEqual([kf.rc, kf.fragId, hex(kf.key.subarray(32))], [1, 32318, "0000110030390035"]);
  // DF alone is not a fragment.
  f[6] = 0x40;
  assert.equal(parse4(f).rc, 0);
  // Non-first fragment: id form.
  f[6] = 0x00;
  f[7] = 0x10;
  const kn = parse4(f);
  assert.deepEqual([kn.rc, kn.fragId, hex(kn.key.subarray(32))], [2, 0, "3e7e000000000000"]);
  // Fragmented ICMP error: -1.
  const e = cat(ip4(1, 56), [3, 1, 0, 0, 0, 0, 0, 0], ip4(6, 40), TCP);
  assert.equal(parse4(e).rc, RC_ICMP_INNER);
  e[6] = 0x20;
  assert.equal(parse4(e).rc, -1);
  // ICMP error with inner GRE: 40.
  const g = cat(ip4(1, 56), [11, 0, 0, 0, 0, 0, 0, 0], ip4(47, 40), [0, 0, 0, 0]);
  const kg = parse4(g);
  assert.deepEqual([kg.rc, hex(kg.key.subarray(32))], [40, "00002f0000000000"]);
  // Inner header with IHL < 5: -1.
  const bad = cat(ip4(1, 56), [3, 1, 0, 0, 0, 0, 0, 0], ip4(6, 40), TCP);
  bad[28] = 0x44;
  assert.equal(parse4(bad).rc, -1);
});

Deno.test("wire/ipv6: walker reports L4 offset and fragment header", () => {
  const w = new Ipv6ExtWalk();
  const p = cat(ip6(0), ext(44, 1), frag(6, 0, true, [1, 2, 3, 4]), TCP);
  assert.ok(ipv6WalkExtensionHeaders(p, p.length, 40, 0, w));
  assert.deepEqual(
    { nh: w.nextHeader, off: w.offset, frag: w.fragOffset, first: w.fragFirst, n: w.count },
    { nh: 6, off: 40 + 16 + 8, frag: 56, first: true, n: 2 },
  );
  const q = cat(ip6(6), TCP);
  assert.ok(ipv6WalkExtensionHeaders(q, q.length, 40, 6, w));
  assert.deepEqual([w.nextHeader, w.offset, w.fragOffset, w.count], [6, 40, -1, 0]);
  // Strict bounds: a header ending exactly at the end of the packet does not fit.
  const r = cat(ip6(60), ext(59));
  assert.equal(ipv6WalkExtensionHeaders(r, r.length, 40, 60, w), false);
  assert.equal(ipv6WalkExtensionHeaders(r, r.length + 1, 40, 60, w), true);
});

Deno.test("parseKeyAt: every golden packet parsed in place at an offset inside garbage", () => {
  const big = new Uint8Array(70000);
  let seed = 7;
  for (let i = 0; i < big.length; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    big[i] = seed >>> 24;
  }
  const a = new KeyParse();
  const b = new KeyParse();
  for (const row of goldenRows) {
    const pkt = unhex(row.packet);
    const l3 = pkt.length > 0 && pkt[0] >> 4 === 6 ? 0x86dd : 0x0800;
    for (const off of [1, 333, big.length - pkt.length]) {
      const buf = big.slice();
      buf.set(pkt, off);
      const rc = parseKeyAt(a, buf, off, pkt.length, l3, row.udpencap);
      assert.equal(
        rc,
        parseKeyInto(b, pkt, pkt.length, l3, row.udpencap),
        `${row.file}#${row.index}`,
      );
      assert.deepEqual(a.key, b.key);
      assert.equal(a.fragId, b.fragId);
      if (rc < 0) continue;
      // The header facts are absolute offsets: shifted by `off`, otherwise the same.
      assert.deepEqual(
        [a.l3Offset - off, a.end - off, a.l4Offset - off, a.l4Proto, a.l3HeaderLen],
        [b.l3Offset, b.end, b.l4Offset, b.l4Proto, b.l3HeaderLen],
      );
      assert.equal(a.fragHeader < 0 ? -1 : a.fragHeader - off, b.fragHeader);
      if ((rc & 3) !== 0) assert.deepEqual([a.fragOffset, a.fragMore], [b.fragOffset, b.fragMore]);
    }
  }
});

Deno.test("KeyParse: the header facts of the one parse (offsets, L4 protocol, fragment)", () => {
  const facts = (kp: KeyParse) => [
    kp.rc,
    kp.l3Offset,
    kp.end,
    kp.l3HeaderLen,
    kp.l4Offset,
    kp.l4Proto,
    kp.fragHeader,
  ];
  // IPv4 with 8 bytes of options, TCP.
  const opt = cat(ip4(6, 48, 7), TCP);
  assert.deepEqual(facts(parse4(opt)), [0, 0, 48, 28, 28, 6, -1]);
  // IPv4 non-first fragment (offset 3 × 8, MF): the payload start and the protocol byte.
  const nf = cat(ip4(17, 28), UDP.slice(0, 8));
  nf[6] = 0x20;
  nf[7] = 3;
  const k = parse4(nf);
  assert.deepEqual([...facts(k), k.fragOffset, k.fragMore], [2, 0, 28, 20, 20, 17, -1, 24, true]);
  // IPv6 hop-by-hop (16 bytes), fragment header (offset 0, no M: a first fragment), TCP.
  const f6 = cat(ip6(0), ext(44, 1), frag(6, 0, false, [1, 2, 3, 4]), TCP);
  const k6 = parse6(f6);
  assert.deepEqual([...facts(k6), k6.fragOffset, k6.fragMore], [1, 0, 84, 64, 64, 6, 56, 0, false]);
  // ICMP error: the facts describe the outer packet, the key comes from the quoted one.
  const inner = cat(ip4(17, 32), UDP);
  const err = cat(ip4(1, 20 + 8 + inner.length), [3, 1, 0, 0, 0, 0, 0, 0], inner);
  assert.deepEqual(facts(parse4(err)), [RC_ICMP_INNER, 0, err.length, 20, 20, 1, -1]);
});
