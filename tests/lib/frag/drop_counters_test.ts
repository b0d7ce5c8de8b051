/**
 * Our fragment counters beyond 1.2.0's (docs/COMPATIBILITY.md#fragments, the
 * `ftshm` extension): every fragment the table drops is counted under one
 * reason, and stored fragments under injected or dropped, so that no loss is
 * silent. Scenarios follow the entry states of docs/COMPATIBILITY.md#fragments.
 */
import assert from "node:assert/strict";
import { FragTable, type FragTableOptions } from "../../../lib/frag/table.ts";
import {
  formatStats,
  FTSHM_EXT_SIZE,
  FTSHM_SIZE,
  type FtStatsExt,
  initFtStats,
  readStats,
  readStatsExt,
} from "../../../lib/frag/stats.ts";
import { first, ipv4Frag, ipv4Key, MS, nonFirst, T0 } from "../../../testkit/frag_packets.ts";

const ZERO: FtStatsExt = {
  fragsInjected: 0,
  fragsDroppedTtl: 0,
  fragsDroppedPoolFull: 0,
  fragsDroppedTooLong: 0,
  fragsDroppedNoTun: 0,
  fragsDroppedTunWrite: 0,
  fragsDroppedLostDatagram: 0,
  fragsDroppedRepeatedFirst: 0,
  kernelReassembled: 0,
};

function table(opts: Partial<FragTableOptions> = {}, inject = (): boolean | void => {}) {
  const stats = new ArrayBuffer(FTSHM_EXT_SIZE);
  const ft = new FragTable({
    size: 100,
    buckets: 100,
    frags: 10,
    mtu: 1500,
    ttlMs: 200,
    stats,
    inject,
    ...opts,
  });
  const ext = () => readStatsExt(stats) as FtStatsExt;
  return { ft, stats, ext };
}

const frag = (id: number, off8: number, more = true) => ipv4Frag(id, off8, more, 8);

Deno.test("counters: stored fragments injected when their first fragment comes", () => {
  const { ft, ext } = table();
  const key = ipv4Key(1);
  nonFirst(ft, key, frag(1, 1), 28, T0);
  nonFirst(ft, key, frag(1, 2, false), 28, T0);
  assert.equal(first(ft, key, 5, frag(1, 0), 28, T0), true);
  assert.deepEqual(ext(), { ...ZERO, fragsInjected: 2 });
});

Deno.test("counters: a failed tun write counts the fragment as dropped, not injected", () => {
  let calls = 0;
  const { ft, ext } = table({}, () => ++calls !== 1); // the first write fails
  const key = ipv4Key(2);
  nonFirst(ft, key, frag(2, 1), 28, T0);
  nonFirst(ft, key, frag(2, 2, false), 28, T0);
  assert.equal(first(ft, key, 5, frag(2, 0), 28, T0), true);
  assert.deepEqual(ext(), { ...ZERO, fragsInjected: 1, fragsDroppedTunWrite: 1 });
  assert.equal(ft.fragsFree, 10);
});

Deno.test("counters: an inject that throws leaves nothing uncounted and frees every buffer", () => {
  const { ft, ext } = table({}, () => {
    throw new Error("tun gone");
  });
  const key = ipv4Key(3);
  for (let o = 1; o <= 3; o++) nonFirst(ft, key, frag(3, o), 28, T0);
  assert.throws(() => first(ft, key, 5, frag(3, 0), 28, T0), /tun gone/);
  assert.deepEqual(ext(), { ...ZERO, fragsDroppedTunWrite: 3 });
  assert.equal(ft.fragsFree, 10);
});

Deno.test("counters: no first fragment within the ttl", () => {
  const { ft, ext, stats } = table();
  const key = ipv4Key(4);
  nonFirst(ft, key, frag(4, 1), 28, T0);
  nonFirst(ft, key, frag(4, 2), 28, T0);
  // The bucket is touched after the ttl: the entry is reclaimed, its two fragments dropped.
  nonFirst(ft, key, frag(4, 3), 28, T0 + 201 * MS);
  assert.equal(ext().fragsDroppedTtl, 2);
  assert.equal(readStats(stats).fragsDiscarded, 2); // 1.2.0's counter counts them too
});

Deno.test("counters: pool exhausted: the fragment and the entry's stored ones; later ones as lost", () => {
  const { ft, ext } = table({ frags: 2 });
  const key = ipv4Key(5);
  nonFirst(ft, key, frag(5, 1), 28, T0);
  nonFirst(ft, key, frag(5, 2), 28, T0);
  nonFirst(ft, key, frag(5, 3), 28, T0); // no buffer: poisoned, 2 stored discarded
  assert.equal(ext().fragsDroppedPoolFull, 3);
  nonFirst(ft, key, frag(5, 4, false), 28, T0);
  assert.equal(first(ft, key, 1, frag(5, 0), 28, T0), false);
  assert.deepEqual(ext(), { ...ZERO, fragsDroppedPoolFull: 3, fragsDroppedLostDatagram: 2 });
});

Deno.test("counters: without --tun a fragment ahead of its first is dropped as no tun", () => {
  const { ft, ext } = table({ frags: 0 });
  const key = ipv4Key(6);
  nonFirst(ft, key, frag(6, 1), 28, T0);
  assert.equal(first(ft, key, 1, frag(6, 0), 28, T0), false);
  assert.deepEqual(ext(), { ...ZERO, fragsDroppedNoTun: 1, fragsDroppedLostDatagram: 1 });
});

Deno.test("counters: a stored fragment without an inject function is dropped as no tun", () => {
  const stats = new ArrayBuffer(FTSHM_EXT_SIZE);
  const ft = new FragTable({ size: 10, buckets: 0, frags: 4, mtu: 1500, ttlMs: 200, stats });
  const key = ipv4Key(7);
  nonFirst(ft, key, frag(7, 1), 28, T0);
  assert.equal(first(ft, key, 1, frag(7, 0), 28, T0), true);
  assert.equal(readStatsExt(stats)?.fragsDroppedNoTun, 1);
  assert.equal(readStatsExt(stats)?.fragsInjected, 0);
});

Deno.test("counters: longer than --mtu, and a repeated first fragment", () => {
  const { ft, ext } = table({ mtu: 576 });
  const key = ipv4Key(8);
  const big = ipv4Frag(8, 1, true, 600);
  nonFirst(ft, key, big, big.length, T0);
  assert.equal(first(ft, key, 1, frag(8, 0), 28, T0), true);
  assert.equal(first(ft, key, 1, frag(8, 0), 28, T0), false);
  assert.deepEqual(ext(), { ...ZERO, fragsDroppedTooLong: 1, fragsDroppedRepeatedFirst: 1 });
});

Deno.test("counters: a 72-byte (1.2.0) statistics object keeps 1.2.0's layout and output", () => {
  const stats = new ArrayBuffer(FTSHM_SIZE);
  const ft = new FragTable({ size: 10, buckets: 0, frags: 0, mtu: 1500, ttlMs: 200, stats });
  nonFirst(ft, ipv4Key(9), frag(9, 1), 28, T0);
  assert.equal(readStatsExt(stats), undefined);
  assert.doesNotMatch(formatStats(stats), /fragsDropped/);
  assert.equal(readStats(stats).lookups, 1);
});

Deno.test("stats: our counters print after 1.2.0's, values from column 32, valid JSON", () => {
  const b = new ArrayBuffer(FTSHM_EXT_SIZE);
  initFtStats(b, { ttlMs: 200, size: 500, mtu: 1500, buckets: 500, frags: 100 });
  new DataView(b).setUint32(92, 7, true); // fragsDroppedTunWrite
  const text = formatStats(b);
  const lines = text.split("\n");
  assert.equal(lines[15], '  "reAssembled":      0,');
  assert.equal(lines[16], '  "fragsInjected":             0,');
  assert.equal(lines[21], '  "fragsDroppedTunWrite":      7,');
  assert.equal(lines[24], '  "kernelReassembled":         0');
  assert.equal(lines[25], "}");
  const parsed = JSON.parse(text);
  assert.equal(parsed.fragsDroppedTunWrite, 7);
  assert.equal(Object.keys(parsed).length, 15 + 9);
  for (const l of lines.slice(16, 25)) assert.equal(l.search(/\d/), 31, l);
});

Deno.test("sweep: orphans give back the pool and the extra buckets without a packet touching them", () => {
  const { ft, ext, stats } = table({ size: 4, buckets: 4, frags: 6 });
  // Six orphan fragments of six datagrams: the pool is full, the extra buckets are taken.
  for (let id = 1; id <= 6; id++) nonFirst(ft, ipv4Key(id), frag(id, 1), 28, T0);
  assert.equal(ft.fragsFree, 0);
  assert.equal(ft.bucketsFree, 2);
  // Within the ttl a sweep reclaims nothing.
  assert.equal(ft.sweep(T0 + 200 * MS, 4), 0);
  // After it, two half sweeps (the cursor goes on) reclaim all six entries.
  assert.equal(ft.sweep(T0 + 201 * MS, 2) + ft.sweep(T0 + 201 * MS, 2), 6);
  assert.equal(ft.fragsFree, 6);
  assert.equal(ft.bucketsFree, 4);
  assert.equal(ft.entries, 0);
  assert.equal(ext().fragsDroppedTtl, 6);
  assert.equal(readStats(stats).objGC, 6);
  // A budget beyond the table is one round; 0 does nothing.
  assert.equal(ft.sweep(T0 + 500 * MS, 1000), 0);
  assert.equal(ft.sweep(T0 + 500 * MS, 0), 0);
  // A new out-of-order datagram is stored and delivered again.
  const key = ipv4Key(99);
  nonFirst(ft, key, frag(99, 1), 28, T0 + 600 * MS);
  assert.equal(first(ft, key, 3, frag(99, 0), 28, T0 + 600 * MS), true);
  assert.equal(ext().fragsInjected, 1);
});

Deno.test("counters: a fragment cut short at the copy range is not stored (it would re-inject corrupt)", () => {
  const { ft, ext } = table();
  const key = ipv4Key(10);
  // The header says 1528 bytes; the queue copied only the first 528 (copy range shorter).
  const cut = ipv4Frag(10, 1, true, 508, { totalLen: 1528 });
  nonFirst(ft, key, cut, cut.length, T0);
  assert.equal(ft.fragsFree, 10, "nothing stored");
  assert.equal(ext().fragsDroppedTooLong, 1);
  // IPv6: the payload length says more than was copied.
  const v6 = new Uint8Array(48 + 16);
  v6.set([0x60, 0, 0, 0, 0x05, 0xdc, 44, 64]); // payload length 1500
  v6[23] = 1;
  v6[39] = 2;
  v6.set([17, 0, 0, 8 | 1, 0, 0, 0, 9], 40); // fragment header: offset 8, M, id 9
  nonFirst(ft, new Uint8Array(40).fill(6), v6, v6.length, T0);
  assert.equal(ext().fragsDroppedTooLong, 2);
  // A whole one is stored as before.
  const whole = ipv4Frag(10, 2, true, 8);
  nonFirst(ft, key, whole, whole.length, T0);
  assert.equal(ft.fragsFree, 9);
});
