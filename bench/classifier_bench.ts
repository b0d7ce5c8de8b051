/**
 * Flow classification cost per packet: the compiled classifier
 * (lib/classifier.ts) against the reference linear scan (lib/flow_match.ts)
 * with 1, 100, 1000 and 10000 flows, plus the compile time of 10000 flows.
 *
 * Flows are random but realistic (seeded): most have `dsts` (IPv4 /32 or
 * /24–/30, some IPv6 /128 or /64–/120) + one protocol + a few `dports`;
 * some have `srcs`, `sports`, byte matches, or are SCTP helper pairs;
 * priorities are random (many equal). Every iteration classifies the same
 * mix of {@link MIX} packets built from that flow set: 55 % aimed at a
 * random flow (its address and a port from its set), 15 % at a flow's
 * address with a random port, 20 % to unconfigured addresses, 10 % ICMP echo.
 * Keys are parsed once up front; the bench measures classification only.
 *
 * Run: `deno bench --allow-all bench/classifier_bench.ts`. Divide the time
 * per iteration by {@link MIX} for the cost of one packet. The target:
 * compiled at 10000 flows ≤ 3 × compiled at 1 flow.
 *
 * `deno run --allow-all bench/classifier_bench.ts` instead prints medians per
 * packet measured in interleaved rounds (robust against machine noise), the
 * 10000/1 ratio, the compile time of 10000 flows, and the compile time and
 * memory of a worst-case set of 10000 flows at every per-flow limit.
 */

import { compileFlows } from "../lib/flow/classifier_build.ts";
import { FlowMatch } from "../lib/flow/match.ts";
import { matchFlowLinear } from "../lib/flow/linear.ts";
import {
  type Cidr,
  type Flow,
  type MatchStatement,
  type PortRange,
  PROTO_SCTP,
  PROTO_TCP,
  PROTO_UDP,
} from "../lib/flow/types.ts";
import { ETH_P_IP, ETH_P_IPV6, KeyParse, parseKeyInto } from "../lib/packet/parse.ts";
import { prng } from "../testkit/prng.ts";

/** Packets classified per bench iteration. */
const MIX = 256;
const SIZES = [1, 100, 1000, 10000];

const rnd = prng(20240611);
const int = (n: number) => Math.floor(rnd() * n);
const chance = (p: number) => rnd() < p;
const pick = <T>(a: readonly T[]): T => a[int(a.length)];

function cidr4(prefix4: number): Cidr {
  const a = new Uint8Array(16);
  a[10] = 0xff;
  a[11] = 0xff;
  a[12] = pick([10, 172, 192]);
  for (let i = 13; i < 16; i++) a[i] = int(256);
  return masked(a, 96 + prefix4);
}
function cidr6(prefix: number): Cidr {
  const a = new Uint8Array(16);
  a[0] = 0x20;
  a[1] = 0x01;
  a[2] = 0x0d;
  a[3] = 0xb8;
  for (let i = 4; i < 16; i++) a[i] = int(256);
  return masked(a, prefix);
}
function masked(a: Uint8Array, prefix: number): Cidr {
  for (let i = 0; i < 16; i++) {
    const bits = prefix - i * 8;
    a[i] &= bits >= 8 ? 0xff : bits <= 0 ? 0 : (0xff00 >> bits) & 0xff;
  }
  return { addr: a, prefix };
}
function someCidr(): Cidr {
  const c = int(10);
  if (c < 5) return cidr4(32);
  if (c < 8) return cidr4(24 + int(7));
  if (c < 9) return cidr6(128);
  return cidr6(64 + 8 * int(8));
}
function somePorts(): PortRange[] {
  const c = int(10);
  if (c < 6) {
    const p = 1 + int(65535);
    return [{ lo: p, hi: p }];
  }
  if (c < 9) {
    const out: PortRange[] = [];
    let p = 1 + int(60000);
    for (let k = 0; k < 2 + int(3); k++) {
      out.push({ lo: p, hi: p + int(3) });
      p += 10 + int(1000);
    }
    return out;
  }
  const lo = 1024 + int(50000);
  return [{ lo, hi: lo + int(5000) }];
}

function makeFlow(i: number): Flow[] {
  const dsts = Array.from({ length: chance(0.8) ? 1 : 2 }, someCidr);
  const priority = int(50);
  const srcs = chance(0.1) ? [cidr4(8 + int(17))] : undefined;
  if (chance(0.03)) {
    // SCTP over UDP: helper + main flow (docs/COMPATIBILITY.md#flows).
    const port = 9000 + int(1000);
    return [
      {
        name: `#s${i}`,
        priority,
        target: undefined,
        protocols: PROTO_UDP,
        dsts,
        srcs,
        dports: [{ lo: port, hi: port }],
        sports: undefined,
        match: undefined,
        udpencap: port,
      },
      {
        name: `s${i}`,
        priority,
        target: `t${i % 7}`,
        protocols: PROTO_SCTP,
        dsts,
        srcs,
        dports: somePorts(),
        sports: undefined,
        match: undefined,
        udpencap: port,
      },
    ];
  }
  const match: MatchStatement[] | undefined = chance(0.05)
    ? [{ proto: "tcp", offset: 13, nbytes: 1, mask: 0x02, value: 0x02 }]
    : undefined;
  return [{
    name: `f${i}`,
    priority,
    target: `t${i % 7}`,
    protocols: match !== undefined
      ? PROTO_TCP
      : chance(0.9)
      ? pick([PROTO_TCP, PROTO_UDP])
      : undefined,
    dsts,
    srcs,
    dports: chance(0.95) ? somePorts() : undefined,
    sports: chance(0.05) ? [{ lo: 1024, hi: 65535 }] : undefined,
    match,
    udpencap: 0,
  }];
}

/** `n` flows in matching order (priority descending, stable). */
function makeFlows(n: number): Flow[] {
  const out: Flow[] = [];
  for (let i = 0; out.length < n; i++) out.push(...makeFlow(i));
  out.length = n;
  return out.map((f, i) => ({ f, i })).sort((a, b) => b.f.priority - a.f.priority || a.i - b.i)
    .map((x) => x.f);
}

function inside(c: Cidr): Uint8Array {
  const a = c.addr.slice();
  for (let b = c.prefix; b < 128; b++) if (chance(0.5)) a[b >> 3] |= 0x80 >> (b & 7);
  return a;
}
function isMapped(a: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (a[i] !== 0) return false;
  return a[10] === 0xff && a[11] === 0xff;
}

function packet(src: Uint8Array, dst: Uint8Array, proto: number, sport: number, dport: number) {
  const v4 = isMapped(src) && isMapped(dst);
  const l4 = new Uint8Array(proto === 1 || proto === 58 ? 16 : 24);
  if (proto === 1 || proto === 58) {
    l4[0] = proto === 1 ? 8 : 128;
    l4[5] = 7;
  } else {
    l4.set([sport >> 8, sport & 0xff, dport >> 8, dport & 0xff]);
    l4[13] = chance(0.5) ? 0x02 : 0x10;
  }
  if (v4) {
    const p = new Uint8Array(20 + l4.length);
    p[0] = 0x45;
    p[3] = p.length;
    p[8] = 64;
    p[9] = proto === 58 ? 1 : proto;
    p.set(src.subarray(12), 12);
    p.set(dst.subarray(12), 16);
    p.set(l4, 20);
    return p;
  }
  const p = new Uint8Array(40 + l4.length);
  p[0] = 0x60;
  p[5] = l4.length;
  p[6] = proto === 1 ? 58 : proto;
  p[7] = 64;
  p.set(src, 8);
  p.set(dst, 24);
  p.set(l4, 40);
  return p;
}

interface Sample {
  /** The packet's parse (key and header facts). */
  parse: KeyParse;
  pkt: Uint8Array;
}

function makeMix(flows: Flow[]): Sample[] {
  const out: Sample[] = [];
  while (out.length < MIX) {
    const f = pick(flows);
    const c = int(100);
    let dst: Uint8Array;
    let proto = pick([6, 17]);
    let dport = 1 + int(65535);
    if (c < 70 && f.dsts !== undefined) {
      dst = inside(pick(f.dsts));
      if (c < 55) {
        if (f.dports !== undefined && f.dports.length > 0) {
          const r = pick(f.dports);
          dport = r.lo + int(r.hi - r.lo + 1);
        }
        if (f.protocols === PROTO_TCP) proto = 6;
        else if (f.protocols === PROTO_UDP) proto = 17;
        else if (f.protocols === PROTO_SCTP) proto = 132;
      }
    } else if (c < 90) {
      dst = inside(chance(0.7) ? cidr4(32) : cidr6(128));
    } else {
      dst = inside(pick(f.dsts ?? [cidr4(32)]));
      proto = 1;
    }
    const src = isMapped(dst)
      ? (f.srcs !== undefined && chance(0.8) ? inside(f.srcs[0]) : inside(cidr4(32)))
      : inside(cidr6(128));
    const pkt = packet(src, dst, proto, 1024 + int(60000), dport);
    const l3 = pkt[0] >> 4 === 6 ? ETH_P_IPV6 : ETH_P_IP;
    const kp = new KeyParse();
    if (parseKeyInto(kp, pkt, pkt.length, l3, 0) < 0) continue;
    out.push({ parse: kp, pkt });
  }
  return out;
}

const out = new FlowMatch();
let sink = 0;

interface Config {
  n: number;
  compiled: () => void;
  linear: () => void;
}

const configs: Config[] = [];
const info: string[] = [];
for (const n of SIZES) {
  const flows = makeFlows(n);
  const mix = makeMix(flows);
  const cls = compileFlows(flows);
  let won = 0;
  for (const s of mix) if (cls.classify(s.parse, s.pkt, true, out) >= 0) won++;
  // Printed by `deno run` only: stdout must stay pure JSON for `deno bench --json`.
  info.push(
    `${n} flows: ${won}/${MIX} packets won by a flow, classifier ${
      (cls.memoryBytes() / 1024).toFixed(0)
    } KiB`,
  );
  const compiled = () => {
    for (let i = 0; i < MIX; i++) {
      const s = mix[i];
      sink ^= cls.classify(s.parse, s.pkt, true, out);
    }
  };
  const linear = () => {
    for (let i = 0; i < MIX; i++) {
      const s = mix[i];
      sink ^= matchFlowLinear(flows, s.parse, s.pkt, true, out);
    }
  };
  configs.push({ n, compiled, linear });
  Deno.bench(`compiled ${n} flows (x${MIX} packets)`, {
    group: "classify",
    baseline: n === 1,
  }, compiled);
  Deno.bench(`linear ${n} flows (x${MIX} packets)`, { group: "linear" }, linear);
}

const flows10k = makeFlows(10000);
Deno.bench("compileFlows 10000 flows", { group: "compile" }, () => {
  sink ^= compileFlows(flows10k).size;
});

globalThis.addEventListener("unload", () => {
  if (sink === 0.5) console.log(sink); // keep `sink` observable
});

/**
 * Medians per packet (ns) of `pick(config)` for each of `cs`, measured in
 * interleaved rounds so that machine noise hits every size alike.
 */
function interleavedMedians(
  cs: Config[],
  pick: (c: Config) => () => void,
  rounds: number,
): number[] {
  const fns = cs.map(pick);
  for (const fn of fns) for (let i = 0; i < Math.min(50, rounds); i++) fn(); // warm up
  const samples = fns.map(() => [] as number[]);
  for (let r = 0; r < rounds; r++) {
    for (let c = 0; c < fns.length; c++) {
      const t0 = performance.now();
      fns[c]();
      samples[c].push(performance.now() - t0);
    }
  }
  return samples.map((t) => {
    t.sort((a, b) => a - b);
    return (t[t.length >> 1] * 1e6) / MIX;
  });
}

/** The largest flow set the index is designed for: 10000 flows at every per-flow limit. */
function worstFlows(): Flow[] {
  const out: Flow[] = [];
  const wide = (): PortRange[] => {
    // Four ranges with odd ends: ≈ 60 aligned blocks, just under PORT_PREFIX_LIMIT.
    const r: PortRange[] = [];
    let p = 1 + int(1000);
    for (let k = 0; k < 4; k++) {
      const hi = p + 2000 + int(3000);
      r.push({ lo: p | 1, hi: hi & ~1 });
      p = hi + 3;
    }
    return r;
  };
  // Distinct CIDRs (every one a separate prefix), half IPv4.
  const anyCidr = () => (chance(0.5) ? cidr4(20 + int(13)) : cidr6(48 + int(81)));
  for (let i = 0; i < 10000; i++) {
    out.push({
      name: `w${i}`,
      priority: 0,
      target: "t",
      protocols: PROTO_TCP | PROTO_UDP | PROTO_SCTP,
      dsts: Array.from({ length: 32 }, anyCidr),
      srcs: Array.from({ length: 32 }, anyCidr),
      dports: wide(),
      sports: wide(),
      match: [{ proto: "tcp", offset: 0, nbytes: 4, mask: 0, value: 1 }],
      udpencap: 0,
    });
  }
  return out;
}

if (import.meta.main) {
  // `deno run -A bench/classifier_bench.ts`: interleaved medians per packet, compile times
  // and the worst-case memory, without the bench harness.
  for (const line of info) console.log(line);
  const c = interleavedMedians(configs, (x) => x.compiled, 401);
  const l = [
    ...interleavedMedians(configs.slice(0, -1), (x) => x.linear, 31),
    ...interleavedMedians(configs.slice(-1), (x) => x.linear, 5),
  ];
  console.log("flows\tcompiled ns/pkt\tlinear ns/pkt");
  SIZES.forEach((n, i) => console.log(`${n}\t${c[i].toFixed(1)}\t${l[i].toFixed(1)}`));
  console.log(`compiled 10000/1 ratio: ${(c[c.length - 1] / c[0]).toFixed(2)}`);
  const t: number[] = [];
  for (let r = 0; r < 21; r++) {
    const t0 = performance.now();
    sink ^= compileFlows(flows10k).size;
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  console.log(`compileFlows(10000 realistic flows): median ${t[10].toFixed(1)} ms`);
  const worst = worstFlows();
  const t0 = performance.now();
  const cw = compileFlows(worst);
  console.log(
    `worst case (10000 flows x 32 dsts + 32 srcs, ~60-block dports/sports): compile ${
      (performance.now() - t0).toFixed(0)
    } ms, ${(cw.memoryBytes() / 1e6).toFixed(1)} MB`,
  );
}
