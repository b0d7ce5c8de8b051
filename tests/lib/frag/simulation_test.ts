/**
 * A long run of the fragment table with an injected clock (issue: "no silent
 * loss"): 10,000 fragmented datagrams per second for 300 simulated seconds,
 * three fragments each in a random order, with 1.2.0's suggested sizes
 * `ft_size = ft_buckets = 1999`. Stored fragments are fed back as the tun
 * device would (docs/COMPATIBILITY.md#fragments). Nothing may be lost: every
 * fragment is accepted with its datagram's fwmark, no counter of a drop moves.
 */
import assert from "node:assert/strict";
import { FRAG_STORED, FragTable } from "../../../lib/frag/table.ts";
import { FTSHM_EXT_SIZE, readStats, readStatsExt } from "../../../lib/frag/stats.ts";
import { fragParse, ipv4Frag, ipv4Key, T0 } from "../../../testkit/frag_packets.ts";
import { prng } from "../../../testkit/prng.ts";

const RATE = 10_000; // datagrams per second
const SECONDS = 300;
const SPACING_NS = 50_000; // between the fragments of one datagram
const SOURCES = 64;

Deno.test("simulation: 10k fragmented datagrams/s for 300 s with ft_size = ft_buckets = 1999 lose nothing", () => {
  const stats = new ArrayBuffer(FTSHM_EXT_SIZE);
  // Re-injected through the "tun device": copies in two preallocated buffers (a datagram has at
  // most two stored fragments).
  const back = [new Uint8Array(28), new Uint8Array(28)];
  let backed = 0;
  const ft = new FragTable({
    size: 1999,
    buckets: 1999,
    frags: 100,
    mtu: 1500,
    ttlMs: 200,
    stats,
    inject: (b, len) => {
      back[backed++].set(b.subarray(0, len));
    },
  });
  // Three fragment templates (offsets 0, 1, 2 in 8-byte units) and their parses, patched per
  // datagram: source address bytes 12..15 and id bytes 4..5 in the packet, the same in the key.
  const pkts = [ipv4Frag(0, 0, true, 8), ipv4Frag(0, 1, true, 8), ipv4Frag(0, 2, false, 8)];
  const parses = pkts.map((p) => fragParse(ipv4Key(0), p, p.length));
  const rnd = prng(13);
  const order = [0, 1, 2];
  let accepted = 0;
  let wrong = 0;
  // A re-injected fragment belongs to the datagram whose first fragment just came: its parse is
  // that datagram's template parse for the fragment's offset (byte 7, in 8-byte units).
  const feedBack = (fw: number, now: number) => {
    for (let j = 0; j < backed; j++) {
      const b = back[j];
      const got = ft.nonFirst(parses[b[7]], b, 0, b.length, now);
      if (got === fw) accepted++;
      else wrong++;
    }
    backed = 0;
  };
  const total = RATE * SECONDS;
  const interval = 1e9 / RATE;
  const src = [10, 1, 0, 0];
  for (let i = 0; i < total; i++) {
    const id = i & 0xffff;
    src[2] = (i >> 16) & 0xff;
    src[3] = i % SOURCES;
    const fw = 100 + (i % 4);
    for (let k = 0; k < 3; k++) {
      const pkt = pkts[k];
      pkt[4] = id >> 8;
      pkt[5] = id & 0xff;
      pkt.set(src, 12);
      const key = parses[k].key;
      key.fill(0, 32);
      key[32] = id >> 8;
      key[33] = id & 0xff;
      key.set(src, 12);
    }
    // A random order of the three fragments.
    for (let k = 2; k > 0; k--) {
      const j = Math.floor(rnd() * (k + 1));
      [order[k], order[j]] = [order[j], order[k]];
    }
    const t = T0 + i * interval;
    for (let n = 0; n < 3; n++) {
      const k = order[n];
      const now = t + n * SPACING_NS;
      const pkt = pkts[k];
      if (k === 0) {
        if (ft.first(parses[0], fw, pkt, 0, pkt.length, now)) accepted++;
        else wrong++;
        feedBack(fw, now);
      } else {
        const got = ft.nonFirst(parses[k], pkt, 0, pkt.length, now);
        if (got === fw) accepted++;
        else if (got !== -1 || ft.lastStatus !== FRAG_STORED) wrong++;
      }
    }
  }
  const s = readStats(stats);
  const ext = readStatsExt(stats);
  const detail = JSON.stringify({ ...s, ttlNanos: undefined, ...ext });
  assert.equal(wrong, 0, detail);
  assert.equal(accepted, 3 * total, detail);
  assert.equal(s.rejected, 0);
  assert.equal(s.fragsDiscarded, 0);
  assert.equal(ext?.fragsInjected, s.fragsAllocated);
  assert.ok(s.fragsAllocated > total / 2, "fragments were stored and re-injected");
  for (const [k, v] of Object.entries(ext ?? {})) {
    if (k.startsWith("fragsDropped")) assert.equal(v, 0, k);
  }
});
