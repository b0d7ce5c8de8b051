/**
 * Packet inputs for property tests that compare two implementations over
 * "every golden packet and random mutations": each distinct golden packet
 * (with its udpencap), every truncation of it, copies inside a larger buffer
 * at an offset, and seeded random bit flips and header patches.
 *
 * @example
 * ```ts
 * import { packetVariants } from "./packet_variants.ts";
 * let n = 0;
 * for (const v of packetVariants(1)) if (v.len <= v.buf.length - v.off) n++;
 * n > 10000; // true
 * ```
 * @module
 */

import { goldenRows, unhex } from "./golden_packets.ts";
import { prng } from "./prng.ts";

/** One input: the packet is `buf[off, off + len)`, to be parsed with `udpencap`. */
export interface PacketVariant {
  readonly buf: Uint8Array;
  readonly off: number;
  readonly len: number;
  readonly udpencap: number;
}

/** The distinct (udpencap, packet) pairs of the golden rows. */
export function goldenPackets(): { pkt: Uint8Array; udpencap: number }[] {
  const seen = new Set<string>();
  const out: { pkt: Uint8Array; udpencap: number }[] = [];
  for (const r of goldenRows) {
    const id = `${r.udpencap}/${r.packet}`;
    if (seen.has(id)) continue;
    seen.add(id);
    out.push({ pkt: unhex(r.packet), udpencap: r.udpencap });
  }
  return out;
}

/**
 * Every golden packet whole and at every truncated length, each also at a
 * random offset inside garbage, then `mutations` seeded random mutations
 * (1–4 bit flips biased to the headers, IPv4 IHL / flags / total length and
 * IPv6 next-header patches, sometimes truncated or placed at an offset).
 */
export function* packetVariants(seed: number, mutations = 20000): Generator<PacketVariant> {
  const rnd = prng(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const golden = goldenPackets();
  const placed = (pkt: Uint8Array, len: number, udpencap: number): PacketVariant => {
    const off = 1 + int(40);
    const buf = new Uint8Array(off + pkt.length + int(40)).fill(int(256));
    buf.set(pkt, off);
    return { buf, off, len, udpencap };
  };
  for (const { pkt, udpencap } of golden) {
    for (let len = 0; len <= pkt.length; len++) {
      yield { buf: pkt, off: 0, len, udpencap };
      if (len === pkt.length || rnd() < 0.1) yield placed(pkt, len, udpencap);
    }
  }
  for (let i = 0; i < mutations; i++) {
    const g = golden[int(golden.length)];
    const p = g.pkt.slice();
    if (p.length === 0) continue;
    const v6 = p[0] >> 4 === 6;
    const kind = int(4);
    if (kind === 0 && !v6 && p.length > 7) {
      p[0] = 0x40 | int(16); // IHL, including < 5 and options past the end
      if (rnd() < 0.5) p[6] = (p[6] & 0x1f) | (int(8) << 5); // flags
    } else if (kind === 1 && v6 && p.length > 6) {
      p[6] = [0, 6, 17, 43, 44, 58, 60, 132][int(8)];
    } else {
      const flips = 1 + int(4);
      for (let k = 0; k < flips; k++) {
        const pos = int(Math.min(p.length, rnd() < 0.8 ? 80 : p.length));
        p[pos] ^= 1 << int(8);
      }
    }
    const len = rnd() < 0.3 ? int(p.length + 1) : p.length;
    if (!v6 && p.length > 3 && rnd() < 0.5) {
      p[2] = len >> 8; // IPv4 total length = the length handed over
      p[3] = len & 0xff;
    }
    const udpencap = rnd() < 0.2 ? 9899 : g.udpencap;
    yield rnd() < 0.3 ? placed(p, len, udpencap) : { buf: p, off: 0, len, udpencap };
  }
}
