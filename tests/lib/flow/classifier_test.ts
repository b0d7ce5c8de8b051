/**
 * Tests for lib/flow/linear.ts (the reference scan, docs/COMPATIBILITY.md#flows, #packet-decisions with
 * defect #18 fixed) and lib/flow/classifier.ts (the compiled classifier):
 * targeted tests whose expectations come from the spec, then a seeded
 * property test — thousands of random flow sets against random packets built
 * as bytes and parsed with parseKeyInto — requiring the classifier to give
 * exactly the linear scan's answer (index, deciding flow, udpencap,
 * promiscuous flag and every match counter) for both promiscuous settings.
 */

import assert from "node:assert/strict";
import type { Classifier } from "../../../lib/flow/classifier.ts";
import { compileFlows, PORT_PREFIX_LIMIT } from "../../../lib/flow/classifier_build.ts";
import { FlowMatch, locateMatchL4, MatchL4 } from "../../../lib/flow/match.ts";
import { matchFlowLinear } from "../../../lib/flow/linear.ts";
import {
  type Cidr,
  type Flow,
  type MatchStatement,
  type PortRange,
  PROTO_SCTP,
  PROTO_TCP,
  PROTO_UDP,
} from "../../../lib/flow/types.ts";
import { ETH_P_IP, ETH_P_IPV6, KeyParse, parseKeyAt } from "../../../lib/packet/parse.ts";
import { prng } from "../../../testkit/prng.ts";

// ---------------------------------------------------------------------------
// Packet construction (bytes on the wire, IP header first)

/** 16-byte address from text: `a.b.c.d` (mapped) or a full/`::` IPv6 literal. */
function addr(s: string): Uint8Array {
  const out = new Uint8Array(16);
  if (!s.includes(":")) {
    out[10] = 0xff;
    out[11] = 0xff;
    s.split(".").forEach((p, i) => out[12 + i] = Number(p));
    return out;
  }
  const [head, tail] = s.includes("::") ? s.split("::") : [s, undefined];
  const hp = head === "" ? [] : head.split(":");
  const tp = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = [...hp, ...new Array(8 - hp.length - tp.length).fill("0"), ...tp];
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 0xff;
  });
  return out;
}

function isMapped(a: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (a[i] !== 0) return false;
  return a[10] === 0xff && a[11] === 0xff;
}

/** IPv4 packet; `src`/`dst` are 16-byte mapped addresses. */
function ipv4(
  src: Uint8Array,
  dst: Uint8Array,
  proto: number,
  payload: Uint8Array,
  o: { ihl?: number; firstFrag?: boolean } = {},
): Uint8Array {
  const ihl = o.ihl ?? 5;
  const h = new Uint8Array(ihl * 4 + payload.length);
  h[0] = 0x40 | ihl;
  h[2] = h.length >> 8;
  h[3] = h.length & 0xff;
  h[4] = 0x3e;
  h[5] = 0x7e;
  if (o.firstFrag) h[6] = 0x20; // MF, offset 0
  h[8] = 64;
  h[9] = proto;
  h.set(src.subarray(12), 12);
  h.set(dst.subarray(12), 16);
  h.set(payload, ihl * 4);
  return h;
}

/** IPv6 packet with optional extension headers before `payload`. */
function ipv6(
  src: Uint8Array,
  dst: Uint8Array,
  proto: number,
  payload: Uint8Array,
  o: { hopByHop?: number; frag?: boolean } = {},
): Uint8Array {
  const exts: Uint8Array[] = [];
  const nhs: number[] = [];
  if (o.hopByHop !== undefined) {
    const e = new Uint8Array((o.hopByHop + 1) * 8);
    e[1] = o.hopByHop;
    exts.push(e);
    nhs.push(0);
  }
  if (o.frag) {
    const e = new Uint8Array(8);
    e[3] = 1; // offset 0, M set
    e[4] = 0x56;
    e[7] = 0x4c;
    exts.push(e);
    nhs.push(44);
  }
  nhs.push(proto);
  for (let i = 0; i < exts.length; i++) exts[i][0] = nhs[i + 1];
  const extLen = exts.reduce((a, e) => a + e.length, 0);
  const p = new Uint8Array(40 + extLen + payload.length);
  p[0] = 0x60;
  const pl = extLen + payload.length;
  p[4] = pl >> 8;
  p[5] = pl & 0xff;
  p[6] = nhs[0];
  p[7] = 64;
  p.set(src, 8);
  p.set(dst, 24);
  let at = 40;
  for (const e of exts) {
    p.set(e, at);
    at += e.length;
  }
  p.set(payload, at);
  return p;
}

/** L4 header (20 tcp / 8 udp / 12 sctp) with the ports, `rest` filling the bytes after them. */
function l4(
  proto: number,
  sport: number,
  dport: number,
  rest: number[] = [],
  extra = 0,
): Uint8Array {
  const size = proto === 6 ? 20 : proto === 17 ? 8 : 12;
  const h = new Uint8Array(size + extra);
  h[0] = sport >> 8;
  h[1] = sport & 0xff;
  h[2] = dport >> 8;
  h[3] = dport & 0xff;
  for (let i = 0; i < rest.length && 4 + i < h.length; i++) h[4 + i] = rest[i];
  return h;
}

function icmp(type: number, body: Uint8Array = new Uint8Array(8)): Uint8Array {
  const h = new Uint8Array(8 + body.length);
  h[0] = type;
  h[4] = 0x12;
  h[5] = 0x34;
  h.set(body, 8);
  return h;
}

/**
 * Parses `pkt[off, off + len)` (family from its version nibble) into a fresh
 * KeyParse (key and header facts), or returns null if rc < 0.
 */
function parseOf(pkt: Uint8Array, udpencap = 0, len = pkt.length, off = 0): KeyParse | null {
  const l3 = pkt[off] >> 4 === 6 ? ETH_P_IPV6 : ETH_P_IP;
  const kp = new KeyParse();
  if (parseKeyAt(kp, pkt, off, len, l3, udpencap) < 0) return null;
  return kp;
}

// ---------------------------------------------------------------------------
// Flow construction

interface FlowSpec {
  name?: string;
  priority?: number;
  target?: string | null;
  protocols?: number;
  dsts?: string[];
  srcs?: string[];
  dports?: [number, number][];
  sports?: [number, number][];
  match?: MatchStatement[];
  udpencap?: number;
}

function cidr(s: string): Cidr {
  const [a, p] = s.split("/");
  const prefix = Number(p) + (a.includes(":") ? 0 : 96);
  const bytes = addr(a);
  for (let i = 0; i < 16; i++) {
    const bits = prefix - i * 8;
    bytes[i] &= bits >= 8 ? 0xff : bits <= 0 ? 0 : (0xff00 >> bits) & 0xff;
  }
  return { addr: bytes, prefix };
}

function mkFlow(s: FlowSpec): Flow {
  return {
    name: s.name ?? "f",
    priority: s.priority ?? 0,
    target: s.target === null ? undefined : s.target ?? "t",
    protocols: s.protocols,
    dsts: s.dsts?.map(cidr),
    srcs: s.srcs?.map(cidr),
    dports: s.dports?.map(([lo, hi]) => ({ lo, hi })),
    sports: s.sports?.map(([lo, hi]) => ({ lo, hi })),
    match: s.match,
    udpencap: s.udpencap ?? 0,
  };
}

function st(
  proto: "tcp" | "udp" | "sctp",
  offset: number,
  nbytes: number,
  value: number,
  mask = 0,
) {
  return { proto, offset, nbytes, mask, value };
}

interface Outcome {
  index: number;
  flow: number;
  udpencap: number;
  promiscuous: boolean;
  counts: number[];
}

/** Runs both implementations on the parse `p` of a packet in `pkt`, asserts they agree. */
function classifyBoth(
  flows: Flow[],
  pkt: Uint8Array,
  p: KeyParse,
  promisc: boolean,
  anyFlowWins = false,
  cls: Classifier = compileFlows(flows, { anyFlowWins }),
): Outcome {
  const a = new FlowMatch();
  a.counts = new Uint32Array(flows.length);
  const ia = matchFlowLinear(flows, p, pkt, promisc, a, anyFlowWins);
  const b = new FlowMatch();
  b.counts = new Uint32Array(flows.length);
  const ib = cls.classify(p, pkt, promisc, b);
  const oa = { index: ia, flow: a.flow, udpencap: a.udpencap, promiscuous: a.promiscuous };
  const ob = { index: ib, flow: b.flow, udpencap: b.udpencap, promiscuous: b.promiscuous };
  assert.deepEqual(ob, oa);
  assert.deepEqual([...b.counts], [...a.counts]);
  return { ...oa, counts: [...a.counts] };
}

/** Classifies a packet built as bytes; the key comes from parseKeyAt. */
function run(flows: Flow[], pkt: Uint8Array, promisc = false, udpencap = 0): Outcome {
  const p = parseOf(pkt, udpencap);
  assert.ok(p !== null, "packet must parse");
  return classifyBoth(flows, pkt, p, promisc);
}

const V4A = addr("10.0.0.1");
const V4B = addr("192.168.1.7");
const V6A = addr("2001:db8::1");
const V6B = addr("2001:db8:1::7");

function tcp4(sport: number, dport: number, rest: number[] = [], src = V4B, dst = V4A) {
  return ipv4(src, dst, 6, l4(6, sport, dport, rest, 4));
}
function udp4(sport: number, dport: number, extra = 4, src = V4B, dst = V4A) {
  return ipv4(src, dst, 17, l4(17, sport, dport, [], extra));
}

// ---------------------------------------------------------------------------
// Targeted tests (expectations from docs/COMPATIBILITY.md#flows, #packet-decisions; #differences D18)

Deno.test("6.5: first flow that matches and has a target wins; absent fields match all", () => {
  const flows = [
    mkFlow({ name: "a", dsts: ["10.0.1.0/24"] }),
    mkFlow({ name: "b", dsts: ["10.0.0.0/24"], protocols: PROTO_UDP }),
    mkFlow({ name: "c", dsts: ["10.0.0.0/24"], protocols: PROTO_TCP, dports: [[80, 80]] }),
    mkFlow({ name: "d" }),
  ];
  assert.equal(run(flows, tcp4(1234, 80)).index, 2);
  assert.equal(run(flows, tcp4(1234, 81)).index, 3);
  assert.equal(run(flows, udp4(1234, 81)).index, 1);
  assert.deepEqual(run(flows, tcp4(1234, 80)).counts, [0, 0, 1, 0]);
});

Deno.test("6.5: CIDRs over mapped keys: IPv4 CIDRs match only IPv4, ::/0 matches all", () => {
  const v4all = [mkFlow({ dsts: ["0.0.0.0/0"] })];
  const all = [mkFlow({ dsts: ["::/0"] })];
  const pkt6 = ipv6(V6B, V6A, 6, l4(6, 1, 2, [], 4));
  assert.equal(run(v4all, tcp4(1, 2)).index, 0);
  assert.equal(run(v4all, pkt6).index, -1);
  assert.equal(run(all, tcp4(1, 2)).index, 0);
  assert.equal(run(all, pkt6).index, 0);
  // /128 and /32 hit exactly one address; srcs use the key source.
  assert.equal(run([mkFlow({ dsts: ["2001:db8::1/128"] })], pkt6).index, 0);
  assert.equal(run([mkFlow({ dsts: ["2001:db8::2/128"] })], pkt6).index, -1);
  assert.equal(run([mkFlow({ srcs: ["192.168.1.7/32"] })], tcp4(1, 2)).index, 0);
  assert.equal(run([mkFlow({ srcs: ["10.0.0.1/32"] })], tcp4(1, 2)).index, -1);
  // Any of several CIDRs; /1 boundaries.
  const multi = [mkFlow({ dsts: ["1.1.1.1/32", "10.0.0.0/31"] })];
  assert.equal(run(multi, tcp4(1, 2)).index, 0);
  assert.equal(run([mkFlow({ dsts: ["8000::/1"] })], pkt6).index, -1);
  assert.equal(run([mkFlow({ dsts: ["::/1"] })], pkt6).index, 0);
});

Deno.test("6.5: protocols and port sets (an empty set matches nothing)", () => {
  const sctp = ipv4(V4B, V4A, 132, l4(132, 5000, 5001));
  assert.equal(run([mkFlow({ protocols: PROTO_SCTP })], sctp).index, 0);
  assert.equal(run([mkFlow({ protocols: PROTO_TCP | PROTO_UDP })], sctp).index, -1);
  assert.equal(run([mkFlow({ dports: [[5001, 5001]], sports: [[4000, 5000]] })], sctp).index, 0);
  assert.equal(run([mkFlow({ dports: [[1, 5000], [5002, 65535]] })], sctp).index, -1);
  assert.equal(run([mkFlow({ sports: [[5001, 6000]] })], sctp).index, -1);
  assert.equal(run([mkFlow({ dports: [] })], sctp).index, -1);
  // GRE: protocol 47 is in no protocol set, its ports are 0.
  const gre = ipv4(V4B, V4A, 47, new Uint8Array(8));
  assert.equal(run([mkFlow({ protocols: 7 })], gre).index, -1);
  assert.equal(run([mkFlow({ dports: [[1, 65535]] })], gre).index, -1);
  assert.equal(run([mkFlow({ dsts: ["10.0.0.1/32"] })], gre).index, 0);
});

Deno.test("6.5: ICMP without promiscuous ping matches only flows without protocols/ports", () => {
  const echo = ipv4(V4B, V4A, 1, icmp(8));
  const flows = [
    mkFlow({ protocols: PROTO_TCP | PROTO_UDP | PROTO_SCTP }),
    mkFlow({ dports: [[1, 65535]] }),
    mkFlow({ dsts: ["10.0.0.0/8"] }),
  ];
  assert.equal(run(flows, echo).index, 2);
  assert.equal(run(flows, echo).promiscuous, false);
});

Deno.test("6.6: promiscuous ping: every ICMP/ICMPv6 without inner packet, after the address checks", () => {
  const flows = [
    mkFlow({ dsts: ["10.9.0.0/16"], protocols: PROTO_TCP }),
    mkFlow({ dsts: ["10.0.0.0/24"], protocols: PROTO_TCP, dports: [[80, 80]], udpencap: 7 }),
  ];
  for (const type of [8, 0, 13]) { // echo request, echo reply, timestamp
    const r = run(flows, ipv4(V4B, V4A, 1, icmp(type)), true);
    assert.equal(r.index, 1);
    assert.equal(r.promiscuous, true);
    assert.equal(r.udpencap, 0); // udpencap not reported
    assert.equal(run(flows, ipv4(V4B, V4A, 1, icmp(type)), false).index, -1);
  }
  const flows6 = [
    mkFlow({ dsts: ["2001:db8::/64"], protocols: PROTO_SCTP, match: [st("sctp", 0, 4, 1)] }),
  ];
  for (const type of [128, 129, 3, 4]) { // ICMPv6 3/4 are "no inner" in nfqlb
    assert.equal(run(flows6, ipv6(V6B, V6A, 58, icmp(type)), true).index, 0);
  }
  // Address checks still apply.
  assert.equal(run(flows, ipv4(V4B, addr("10.1.0.1"), 1, icmp(8)), true).index, -1);
});

Deno.test("6.5/6.6: ICMP errors are classified by the inner, swapped key; outer ICMP ignores statements", () => {
  // Inner: TCP 10.0.0.1:80 -> 192.168.1.7:1234 (the reply the router could not deliver).
  const inner = ipv4(V4A, V4B, 6, l4(6, 80, 1234, [], 4));
  const err = ipv4(addr("172.16.0.1"), V4A, 1, icmp(3, inner));
  const key = parseOf(err)!;
  // Swapped: key dst = inner src (10.0.0.1), key dport = inner sport (80).
  const flows = [
    mkFlow({ name: "wrong-way", dsts: ["192.168.1.7/32"] }),
    mkFlow({
      name: "web",
      dsts: ["10.0.0.1/32"],
      protocols: PROTO_TCP,
      dports: [[80, 80]],
      sports: [[1234, 1234]],
      match: [st("tcp", 0, 2, 0xdead)],
    }),
  ];
  const r = classifyBoth(flows, err, key, false);
  assert.equal(r.index, 1);
  // Promiscuous ping does not apply: the key protocol is the inner TCP.
  assert.equal(classifyBoth(flows, err, key, true).promiscuous, false);
});

Deno.test("6.5: byte matches read the packet's L4 header, big-endian, with mask", () => {
  // TCP flags byte 13 = 0x12 (SYN+ACK), window at 14..15 = 0x1389.
  const rest = [0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x12, 0x13, 0x89];
  const pkt = tcp4(1234, 80, rest);
  const one = (m: MatchStatement[]) => run([mkFlow({ match: m })], pkt).index;
  assert.equal(one([st("tcp", 13, 1, 0x02, 0x02)]), 0);
  assert.equal(one([st("tcp", 13, 1, 0x12)]), 0);
  assert.equal(one([st("tcp", 13, 1, 0x02)]), -1);
  assert.equal(one([st("tcp", 14, 2, 0x1389)]), 0);
  assert.equal(one([st("tcp", 12, 4, 0x50121389)]), 0);
  assert.equal(one([st("tcp", 12, 4, 0x00120000, 0x00ff0000)]), 0);
  assert.equal(one([st("tcp", 0, 2, 1234), st("tcp", 2, 2, 80)]), 0);
  assert.equal(one([st("tcp", 0, 2, 1234), st("tcp", 2, 2, 81)]), -1);
  // Statements for other protocols are ignored.
  assert.equal(one([st("udp", 0, 2, 9), st("sctp", 0, 4, 9)]), 0);
  // All-ones 32-bit value.
  const ff = tcp4(0xffff, 0xffff);
  assert.equal(run([mkFlow({ match: [st("tcp", 0, 4, 0xffffffff)] })], ff).index, 0);
});

Deno.test("6.5: strict bounds: the L4 header must be followed by a byte", () => {
  const m = [mkFlow({ match: [st("tcp", 0, 1, 0)] })];
  // UDP with no payload: 8-byte header, inBounds(l4, 8) fails even for tcp statements.
  assert.equal(run(m, udp4(1, 2, 0)).index, -1);
  assert.equal(run(m, udp4(1, 2, 1)).index, 0);
  // A TCP packet of exactly 20 header bytes fails, 21 passes.
  const t20 = ipv4(V4B, V4A, 6, l4(6, 1, 2));
  assert.equal(run(m, t20).index, -1);
  assert.equal(run(m, ipv4(V4B, V4A, 6, l4(6, 0, 2, [], 1))).index, 0);
  // Without statements the same packets match.
  assert.equal(run([mkFlow({})], t20).index, 0);
  // The parsed `len` bounds the packet, not the buffer.
  const pkt = tcp4(0, 2);
  assert.equal(classifyBoth(m, pkt, parseOf(pkt, 0, 40)!, false, false).index, -1);
  assert.equal(classifyBoth(m, pkt, parseOf(pkt, 0, 41)!, false, false).index, 0);
});

Deno.test("6.5: IPv6: extension headers walked, any fragment header => no match with statements", () => {
  const m = [mkFlow({ match: [st("udp", 2, 2, 53)] })];
  const plain = ipv6(V6B, V6A, 17, l4(17, 1000, 53, [], 4));
  const hbh = ipv6(V6B, V6A, 17, l4(17, 1000, 53, [], 4), { hopByHop: 0 });
  const hbh2 = ipv6(V6B, V6A, 17, l4(17, 1000, 53, [], 4), { hopByHop: 1 });
  const frag = ipv6(V6B, V6A, 17, l4(17, 1000, 53, [], 4), { frag: true });
  assert.equal(run(m, plain).index, 0);
  assert.equal(run(m, hbh).index, 0);
  assert.equal(run(m, hbh2).index, 0);
  assert.equal(run(m, frag).index, -1);
  // Without statements the first fragment matches by its (fixed, docs/COMPATIBILITY.md#differences D22–D23) ports.
  assert.equal(run([mkFlow({ dports: [[53, 53]], protocols: PROTO_UDP })], frag).index, 0);
  // IPv4 first fragments keep their L4 header: statements apply.
  const f4 = ipv4(V4B, V4A, 17, l4(17, 1000, 53, [], 4), { firstFrag: true });
  assert.equal(run(m, f4).index, 0);
  // IPv4 options move the L4 header (ihl * 4).
  const opt = ipv4(V4B, V4A, 17, l4(17, 1000, 53, [], 4), { ihl: 7 });
  assert.equal(run(m, opt).index, 0);
  const where = new MatchL4();
  assert.ok(locateMatchL4(parseOf(opt)!, where));
  assert.deepEqual([where.offset, where.proto], [28, 17]);
});

Deno.test("6.5/6.7: UDP-encapsulated SCTP: statements read the SCTP header after the UDP header", () => {
  // UDP 1.2.3.4:40000 -> 10.0.0.1:9899 carrying SCTP 5000 -> 6000, vtag 0x01020304.
  const sctp = l4(132, 5000, 6000, [1, 2, 3, 4], 2);
  const udp = new Uint8Array(8 + sctp.length);
  udp.set([0x9c, 0x40, 0x26, 0xab]);
  udp.set(sctp, 8);
  const pkt = ipv4(addr("1.2.3.4"), V4A, 17, udp);
  const flows = [
    mkFlow({
      name: "#s",
      protocols: PROTO_UDP,
      dports: [[9899, 9899]],
      udpencap: 9899,
      target: null,
    }),
    mkFlow({
      name: "s",
      protocols: PROTO_SCTP,
      dports: [[6000, 6000]],
      match: [st("sctp", 4, 4, 0x01020304), st("udp", 2, 2, 1)],
      udpencap: 9899,
    }),
  ];
  const first = run(flows, pkt, false, 0);
  assert.deepEqual([first.index, first.flow, first.udpencap], [-1, 0, 9899]);
  const again = run(flows, pkt, false, 9899); // re-parsed: rc 4, key proto SCTP
  assert.deepEqual([again.index, again.udpencap], [1, 9899]);
  // The SCTP header must be followed by a byte: l4 + 8 + 12 < len.
  const short = ipv4(addr("1.2.3.4"), V4A, 17, udp.subarray(0, 8 + 12));
  assert.equal(run(flows, short, false, 9899).index, -1);
  const ok = ipv4(addr("1.2.3.4"), V4A, 17, udp.subarray(0, 8 + 13));
  assert.equal(run(flows, ok, false, 9899).index, 1);
});

Deno.test("5.4/11 #18: a matching helper flow stops the scan and reports its udpencap", () => {
  const flows = [
    mkFlow({ name: "passive", target: null }), // no target, no udpencap: never decides
    mkFlow({
      name: "#s",
      protocols: PROTO_UDP,
      dports: [[9899, 9899]],
      udpencap: 9899,
      target: null,
    }),
    mkFlow({ name: "s", protocols: PROTO_SCTP, udpencap: 9899 }),
    mkFlow({ name: "catch-all" }), // 1.2.0 let this shadow the helper
  ];
  const r = run(flows, udp4(40000, 9899));
  assert.deepEqual([r.index, r.flow, r.udpencap], [-1, 1, 9899]);
  assert.deepEqual(r.counts, [1, 1, 0, 0]);
  // Other UDP ports: the helper does not match, the catch-all wins and reports 0.
  const o = run(flows, udp4(40000, 9898));
  assert.deepEqual([o.index, o.flow, o.udpencap], [3, 3, 0]);
  assert.deepEqual(o.counts, [1, 0, 0, 1]);
  // A helper matched only by promiscuous ping reports nothing and does not stop.
  const p = run(flows, ipv4(V4B, V4A, 1, icmp(8)), true);
  assert.deepEqual([p.index, p.flow, p.udpencap, p.promiscuous], [2, 2, 0, true]);
  assert.deepEqual(p.counts, [1, 1, 1, 0]);
  // Flows without target never win.
  assert.equal(run([mkFlow({ target: null })], udp4(1, 2)).index, -1);
});

Deno.test("trace flows: anyFlowWins lets the first matching flow win without a target", () => {
  const flows = [mkFlow({ target: null, dsts: ["10.0.0.0/8"] })];
  const pkt = tcp4(1, 2);
  assert.equal(classifyBoth(flows, pkt, parseOf(pkt)!, true, true).index, 0);
  assert.equal(classifyBoth(flows, pkt, parseOf(pkt)!, true, false).index, -1);
});

Deno.test("classifier: port sets beyond the index limit are verified per candidate", () => {
  const many: [number, number][] = [];
  for (let p = 1; many.length < PORT_PREFIX_LIMIT + 5; p += 4) many.push([p, p + 1]);
  const flows = [mkFlow({ dports: many, sports: many }), mkFlow({ dports: [[2, 2]] })];
  assert.equal(run(flows, tcp4(1, 2)).index, 0);
  assert.equal(run(flows, tcp4(3, 2)).index, 1);
  assert.equal(run(flows, tcp4(1, 3)).index, -1);
});

Deno.test("classifier: no flows, and packets in a larger buffer at an offset", () => {
  const pkt = tcp4(1, 80, [0, 0, 0, 7]);
  assert.equal(compileFlows([]).classify(parseOf(pkt)!, pkt, true, new FlowMatch()), -1);
  const buf = new Uint8Array(pkt.length + 50).fill(0xaa);
  buf.set(pkt, 17);
  const flows = [mkFlow({ match: [st("tcp", 7, 1, 7)] })];
  const at = (len: number) => parseOf(buf, 0, len, 17)!;
  assert.equal(classifyBoth(flows, buf, at(pkt.length), false, false).index, 0);
  // 20 + 20 header bytes and nothing after them: the garbage after `len` does not count.
  assert.equal(classifyBoth(flows, buf, at(40), false, false).index, -1);
});

// ---------------------------------------------------------------------------
// Property test: compiled classifier === linear scan

class Gen {
  readonly r: () => number;
  constructor(seed: number) {
    this.r = prng(seed);
  }
  int(n: number): number {
    return Math.floor(this.r() * n);
  }
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.r() < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }
}

/** Sorts and merges ranges (overlapping or adjacent), as the flow parser does. */
function normalize(ranges: PortRange[]): PortRange[] {
  const s = [...ranges].sort((a, b) => a.lo - b.lo);
  const out: PortRange[] = [];
  for (const r of s) {
    const last = out[out.length - 1];
    if (last !== undefined && r.lo <= last.hi + 1) {
      out[out.length - 1] = { lo: last.lo, hi: Math.max(last.hi, r.hi) };
    } else out.push(r);
  }
  return out;
}

function maskCidr(a: Uint8Array, prefix: number): Cidr {
  const b = a.slice();
  for (let i = 0; i < 16; i++) {
    const bits = prefix - i * 8;
    b[i] &= bits >= 8 ? 0xff : bits <= 0 ? 0 : (0xff00 >> bits) & 0xff;
  }
  return { addr: b, prefix };
}

interface World {
  flows: Flow[];
  addrPool: Uint8Array[];
  portPool: number[];
  encapPorts: number[];
}

function randomAddr(g: Gen, v4: boolean): Uint8Array {
  const a = new Uint8Array(16);
  if (v4) {
    a[10] = 0xff;
    a[11] = 0xff;
    // Few distinct top bytes so CIDRs overlap and nest.
    a[12] = g.pick([10, 10, 192, 0, 255, 128]);
    for (let i = 13; i < 16; i++) a[i] = g.chance(0.5) ? g.int(4) : g.int(256);
  } else {
    a[0] = g.pick([0x20, 0x20, 0xfd, 0x00, 0xff, 0x80]);
    a[1] = g.chance(0.7) ? 0x01 : g.int(256);
    for (let i = 2; i < 16; i++) a[i] = g.chance(0.7) ? g.int(3) : g.int(256);
  }
  return a;
}

/** Addresses at the edges of the IPv4-mapped range `::ffff:0:0/96`. */
const EDGES = [
  addr("0.0.0.0"),
  addr("255.255.255.255"),
  addr("0.0.0.1"),
  addr("255.255.255.254"),
  addr("::fffe:ffff:ffff"),
  addr("::1:0:0:0"),
  addr("::"),
];

function randomCidr(g: Gen, w: World): Cidr {
  if (g.chance(0.05)) return maskCidr(g.pick(EDGES), g.range(64, 128));
  const base = g.pick(w.addrPool);
  const v4 = isMapped(base);
  let prefix: number;
  if (v4) {
    prefix = 96 + (g.chance(0.3) ? g.pick([0, 1, 8, 16, 24, 31, 32]) : g.range(0, 32));
  } else if (g.chance(0.1)) prefix = g.pick([0, 1, 127, 128]);
  else prefix = g.chance(0.3) ? g.pick([0, 1, 16, 48, 64, 96, 120, 128]) : g.range(0, 128);
  return maskCidr(base, prefix);
}

function randomPorts(g: Gen, w: World): PortRange[] {
  if (g.chance(0.04)) return [];
  const out: PortRange[] = [];
  const many = g.chance(0.05);
  const n = many ? g.range(20, 90) : g.range(1, 4);
  for (let k = 0; k < n; k++) {
    const c = g.int(10);
    if (many) {
      const lo = g.range(1, 65000);
      out.push({ lo, hi: lo + g.int(3) * g.int(40) });
    } else if (c < 5) {
      const p = g.pick(w.portPool);
      out.push({ lo: p, hi: p });
    } else if (c < 8) {
      const p = g.pick(w.portPool);
      const lo = Math.max(1, p - g.int(5));
      out.push({ lo, hi: Math.min(65535, p + g.int(5)) });
    } else if (c < 9) out.push({ lo: 1, hi: 65535 });
    else {
      const lo = g.range(1, 65535);
      out.push({ lo, hi: g.range(lo, 65535) });
    }
  }
  return normalize(out);
}

function randomStatement(g: Gen, w: World): MatchStatement {
  const proto = g.pick(["tcp", "udp", "sctp"] as const);
  const size = proto === "tcp" ? 20 : proto === "udp" ? 8 : 12;
  const c = g.int(4);
  if (c === 0) {
    return { proto, offset: g.pick([0, 2]), nbytes: 2, mask: 0, value: g.pick(w.portPool) };
  }
  const nbytes = g.pick([1, 2, 4]);
  const offset = g.range(0, size - nbytes);
  if (c === 1) return { proto, offset, nbytes, mask: 0, value: nbytes === 1 ? g.int(2) : 0 };
  if (c === 2) {
    // One bit: roughly half the packets satisfy it.
    return { proto, offset, nbytes, mask: 1 << g.int(nbytes * 8), value: 0 };
  }
  const mask = g.chance(0.5) ? 0 : (g.int(2 ** 32) >>> 0);
  return { proto, offset, nbytes, mask, value: mask === 0 ? 0 : (mask & 0x01010101) >>> 0 };
}

function randomFlow(g: Gen, w: World, i: number): Flow {
  const helper = g.chance(0.08);
  const encap = g.pick(w.encapPorts);
  if (helper) {
    const sameShape = g.chance(0.7);
    return {
      name: `#h${i}`,
      priority: g.range(-2, 3),
      target: undefined,
      protocols: sameShape ? PROTO_UDP : (g.chance(0.5) ? undefined : g.int(8)),
      dsts: g.chance(0.5)
        ? undefined
        : Array.from({ length: g.range(1, 3) }, () => randomCidr(g, w)),
      srcs: g.chance(0.8) ? undefined : [randomCidr(g, w)],
      dports: sameShape
        ? [{ lo: encap, hi: encap }]
        : (g.chance(0.5) ? undefined : randomPorts(g, w)),
      sports: undefined,
      match: !sameShape && g.chance(0.2) ? [randomStatement(g, w)] : undefined,
      udpencap: encap,
    };
  }
  const nd = g.chance(0.05) ? 0 : g.chance(0.05) ? g.range(5, 32) : g.range(1, 3);
  return {
    name: `f${i}`,
    priority: g.range(-2, 3),
    target: g.chance(0.12) ? undefined : `t${g.int(3)}`,
    protocols: g.chance(0.35) ? undefined : g.int(8),
    dsts: g.chance(0.35) ? undefined : Array.from({ length: nd }, () => randomCidr(g, w)),
    srcs: g.chance(0.7) ? undefined : Array.from({ length: g.range(0, 3) }, () => randomCidr(g, w)),
    dports: g.chance(0.4) ? undefined : randomPorts(g, w),
    sports: g.chance(0.75) ? undefined : randomPorts(g, w),
    match: g.chance(0.75)
      ? undefined
      : Array.from({ length: g.range(0, 3) }, () => randomStatement(g, w)),
    udpencap: g.chance(0.1) ? encap : 0,
  };
}

function randomWorld(g: Gen): World {
  const nf = g.chance(0.5) ? g.range(1, 20) : g.range(1, 300);
  const addrPool = Array.from({ length: g.range(1, 12) }, () => randomAddr(g, g.chance(0.5)));
  // Siblings: pool addresses differing only in their last byte(s), so that long prefixes
  // are ordered by their lowest bits.
  for (let k = g.int(6); k > 0; k--) {
    const a = g.pick(addrPool).slice();
    a[15] = g.int(256);
    if (g.chance(0.3)) a[14] ^= 1 << g.int(8);
    addrPool.push(a);
  }
  const portPool = Array.from(
    { length: g.range(1, 8) },
    () => g.pick([1, 2, 53, 80, 443, 9899, 65535, g.range(1, 65535)]),
  );
  const encapPorts = [9899, g.pick(portPool)];
  const w: World = { flows: [], addrPool, portPool, encapPorts };
  const flows = Array.from({ length: nf }, (_, i) => randomFlow(g, w, i));
  // The store's order: priority descending, stable.
  w.flows = flows.map((f, i) => ({ f, i })).sort((a, b) => b.f.priority - a.f.priority || a.i - b.i)
    .map((x) => x.f);
  return w;
}

/** An address biased to fall inside (or just outside) the world's CIDRs. */
function packetAddr(g: Gen, w: World, v4only: boolean): Uint8Array {
  const c = g.int(10);
  if (c < 6 && w.flows.length > 0) {
    const f = g.pick(w.flows);
    const list = g.chance(0.5) ? f.dsts : f.srcs;
    if (list !== undefined && list.length > 0) {
      const cd = g.pick(list);
      if (!v4only || (isMapped(cd.addr) && cd.prefix >= 96)) {
        const a = cd.addr.slice();
        // Random host bits (sometimes flip a prefix bit to land just outside).
        for (let b = cd.prefix; b < 128; b++) if (g.chance(0.5)) a[b >> 3] |= 0x80 >> (b & 7);
        if (g.chance(0.1) && cd.prefix > 0) {
          const b = cd.prefix - 1;
          a[b >> 3] ^= 0x80 >> (b & 7);
        }
        if (!v4only || isMapped(a)) return a;
      }
    }
  }
  if (c === 6 && g.chance(0.3)) {
    const a = g.pick(EDGES);
    if (!v4only || isMapped(a)) return a.slice();
  }
  if (c < 8) {
    const a = g.pick(w.addrPool).slice();
    if (!v4only || isMapped(a)) {
      if (g.chance(0.5)) a[15] ^= g.int(4);
      return a;
    }
  }
  return randomAddr(g, v4only || g.chance(0.5));
}

function packetPort(g: Gen, w: World): number {
  const c = g.int(6);
  if (c < 3) return g.pick(w.portPool);
  if (c < 4) return Math.max(0, Math.min(65535, g.pick(w.portPool) + g.range(-2, 2)));
  if (c < 5) return g.pick([0, 1, 65535, 9899]);
  return g.int(65536);
}

/** L4 bytes after the ports: mostly 0/1 so byte matches hit often. */
function l4Rest(g: Gen): number[] {
  return Array.from({ length: 24 }, () => g.chance(0.8) ? g.int(2) : g.int(256));
}

interface Sample {
  pkt: Uint8Array;
  udpencap: number;
}

function randomL4(g: Gen, w: World, proto: number): Uint8Array {
  const extra = g.pick([0, 0, 1, 2, 4, 16]);
  return l4(proto, packetPort(g, w), packetPort(g, w), l4Rest(g), extra);
}

function randomPacket(g: Gen, w: World): Sample {
  let src = packetAddr(g, w, false);
  let dst = packetAddr(g, w, false);
  const v4 = isMapped(src) && isMapped(dst) && g.chance(0.9);
  if (!v4 && g.chance(0.3)) {
    // Mostly-IPv6 world: make sure both are v6-looking sometimes.
    if (isMapped(src)) src = randomAddr(g, false);
    if (isMapped(dst)) dst = randomAddr(g, false);
  }
  const ip = (proto: number, payload: Uint8Array) => {
    if (v4) {
      return ipv4(src, dst, proto, payload, {
        ihl: g.chance(0.1) ? g.range(6, 8) : 5,
        firstFrag: g.chance(0.05),
      });
    }
    return ipv6(src, dst, proto, payload, {
      hopByHop: g.chance(0.1) ? g.int(2) : undefined,
      frag: g.chance(0.05),
    });
  };
  const c = g.int(20);
  let udpencap = 0;
  let pkt: Uint8Array;
  if (c < 9) {
    const proto = g.pick([6, 17, 132]);
    pkt = ip(proto, randomL4(g, w, proto));
  } else if (c < 11) {
    // UDP to an encap port carrying SCTP; parsed with or without udpencap.
    const encap = g.pick(w.encapPorts);
    const inner = randomL4(g, w, 132);
    const udp = new Uint8Array(8 + inner.length);
    const sp = packetPort(g, w);
    udp.set([sp >> 8, sp & 0xff, encap >> 8, encap & 0xff]);
    udp.set(inner, 8);
    pkt = ip(17, udp);
    udpencap = g.chance(0.6) ? encap : 0;
  } else if (c < 14) {
    const type = v4 ? g.pick([8, 8, 0, 13]) : g.pick([128, 128, 129, 3]);
    pkt = ip(v4 ? 1 : 58, icmp(type));
  } else if (c < 17) {
    // ICMP error quoting a packet (addresses swapped back: the quoted packet went dst -> src).
    const proto = g.pick([6, 17, 132, 1, 47]);
    const payload = proto === 1
      ? icmp(8)
      : proto === 47
      ? new Uint8Array(8)
      : randomL4(g, w, proto);
    const inner = v4
      ? ipv4(dst, src, proto, payload)
      : ipv6(dst, src, proto === 1 ? 58 : proto, payload);
    pkt = v4
      ? ipv4(packetAddr(g, w, true), dst, 1, icmp(g.pick([3, 11]), inner))
      : ipv6(randomAddr(g, false), dst, 58, icmp(g.pick([1, 2]), inner));
    if (g.chance(0.3)) udpencap = g.pick(w.encapPorts);
  } else if (c < 18) {
    pkt = ip(47, new Uint8Array(g.range(1, 12)));
  } else {
    // Short/truncated L4 headers (still parsable: ports present).
    const proto = g.pick([6, 17, 132]);
    const full = randomL4(g, w, proto);
    pkt = ip(proto, full.subarray(0, g.range(4, full.length)));
  }
  return { pkt, udpencap };
}

Deno.test("property: compiled classifier === linear scan (seeded, thousands of flow sets)", () => {
  const SETS = 3000;
  const PACKETS = 40;
  const g = new Gen(0x5eed1234);
  let checked = 0;
  let decided = 0;
  let helpers = 0;
  let promiscWins = 0;
  let byteMatchWins = 0;
  let flowsTotal = 0;
  for (let s = 0; s < SETS; s++) {
    const w = randomWorld(g);
    flowsTotal += w.flows.length;
    const anyFlowWins = g.chance(0.05);
    const cls = compileFlows(w.flows, { anyFlowWins });
    for (let p = 0; p < PACKETS; p++) {
      const { pkt, udpencap } = randomPacket(g, w);
      // Sometimes place the packet at an offset in a larger buffer with trailing garbage.
      let buf = pkt;
      let off = 0;
      if (g.chance(0.2)) {
        off = g.range(1, 30);
        buf = new Uint8Array(off + pkt.length + g.range(0, 30)).fill(g.int(256));
        buf.set(pkt, off);
      }
      const parsed = parseOf(buf, udpencap, pkt.length, off);
      if (parsed === null) continue;
      for (const promisc of [false, true]) {
        let r: Outcome;
        try {
          r = classifyBoth(w.flows, buf, parsed, promisc, anyFlowWins, cls);
        } catch (e) {
          console.error(`set ${s} packet ${p} promisc ${promisc}`);
          throw e;
        }
        checked++;
        if (r.index >= 0) decided++;
        if (r.index < 0 && r.flow >= 0) helpers++;
        if (r.promiscuous) promiscWins++;
        if (r.index >= 0 && w.flows[r.index].match?.length) byteMatchWins++;
      }
    }
  }
  console.log(
    `  ${SETS} flow sets (${flowsTotal} flows), ${checked} classifications: ` +
      `${decided} won, ${helpers} helper stops, ${promiscWins} promiscuous, ` +
      `${byteMatchWins} won by flows with byte matches`,
  );
  // The generator must exercise every outcome substantially.
  assert.ok(decided > checked / 5);
  assert.ok(helpers > 100);
  assert.ok(promiscWins > 100);
  assert.ok(byteMatchWins > 100);
});

Deno.test("property: large flow sets (≥ 65536 indexed CIDRs: 16-bit radix digits) === linear scan", () => {
  const g = new Gen(0xb16b00b5);
  for (let s = 0; s < 2; s++) {
    const w = randomWorld(g);
    // 2100 flows with 32 destination CIDRs each: the address index takes its large-set path.
    // Long, mostly distinct prefixes (so that a packet aimed at one matches few flows),
    // clustered enough to nest: 10.x.y.z/20-32 or 2001:db8:x::/56-128.
    const longCidr = (): Cidr => {
      const a = new Uint8Array(16);
      if (g.chance(0.6)) {
        a.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, g.int(4), g.int(256), g.int(256)]);
        return maskCidr(a, 96 + g.range(20, 32));
      }
      a.set([0x20, 0x01, 0x0d, 0xb8, 0, g.int(4), g.int(256)]);
      for (let i = 7; i < 16; i++) a[i] = g.int(256);
      return maskCidr(a, g.range(56, 128));
    };
    const flows: Flow[] = [];
    for (let i = 0; i < 2100; i++) {
      const f = randomFlow(g, w, i);
      flows.push({
        ...f,
        dsts: Array.from({ length: 32 }, longCidr),
        srcs: g.chance(0.3) ? Array.from({ length: 32 }, longCidr) : undefined,
      });
    }
    w.flows = flows.map((f, i) => ({ f, i })).sort((a, b) =>
      b.f.priority - a.f.priority || a.i - b.i
    ).map((x) => x.f);
    const cls = compileFlows(w.flows);
    let won = 0;
    w.addrPool = w.flows.slice(0, 50).map((f) => f.dsts![0].addr);
    for (let p = 0; p < 600; p++) {
      const { pkt, udpencap } = randomPacket(g, w);
      const parsed = parseOf(pkt, udpencap);
      if (parsed === null) continue;
      for (const promisc of [false, true]) {
        if (classifyBoth(w.flows, pkt, parsed, promisc, false, cls).index >= 0) won++;
      }
    }
    assert.ok(won > 100, `won ${won}`);
  }
});
