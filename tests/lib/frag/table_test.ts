/**
 * Fragment tracking (docs/COMPATIBILITY.md#fragments, #shared-memory, #command-line `stats`, 5.2, 11 #10/#20). Packets and
 * keys are built byte by byte from the spec; expected values come from the spec.
 */
import assert from "node:assert/strict";
import { DEFAULT_STATS } from "../../../testkit/spec_examples.ts";
import {
  FRAG_ACCEPT,
  FRAG_DROPPED,
  FRAG_STORED,
  FragTable,
  type FragTableOptions,
  setIdForm,
} from "../../../lib/frag/table.ts";
import {
  formatStats,
  FTSHM_SIZE,
  type FtStats,
  initFtStats,
  readStats,
} from "../../../lib/frag/stats.ts";
import {
  FEED_ABANDONED,
  FEED_COMPLETE,
  FEED_INCOMPLETE,
  FragGeometry,
  fragmentGeometry,
  HoleLists,
} from "../../../lib/frag/reassembler.ts";
import { ETH_P_IP, ETH_P_IPV6, KeyParse, parseKeyInto } from "../../../lib/packet/parse.ts";

import {
  first,
  fragParse,
  ipv4Frag,
  ipv4Key,
  ipv6Frag,
  ipv6Key,
  MS,
  nonFirst,
  T0,
} from "../../../testkit/frag_packets.ts";

/** `fragmentGeometry` of the fragment `pkt[0, len)`, from its parse. */
function geometry(pkt: Uint8Array, len: number, g: FragGeometry): boolean {
  return fragmentGeometry(fragParse(new Uint8Array(40), pkt, len), pkt, 0, len, g);
}

interface Injected {
  bytes: Uint8Array;
  len: number;
}

function table(opts: Partial<FragTableOptions> = {}) {
  const injected: Injected[] = [];
  const stats = new ArrayBuffer(FTSHM_SIZE);
  const ft = new FragTable({
    size: 500,
    buckets: 500,
    frags: 100,
    mtu: 1500,
    ttlMs: 200,
    reassembler: 0,
    stats,
    inject: (bytes, len) => {
      injected.push({ bytes: bytes.slice(0, len), len });
    },
    ...opts,
  });
  const st = (): FtStats => readStats(stats);
  return { ft, injected, stats, st };
}

// ---- statistics object (docs/COMPATIBILITY.md#shared-memory, #command-line) ------------------------------------------------------

Deno.test("stats: default daemon values print exactly as docs/COMPATIBILITY.md#command-line (corrected JSON)", () => {
  const { stats } = table({ frags: 0 }); // lb default without --tun: ft_frag forced to 0
  assert.equal(formatStats(stats), DEFAULT_STATS);
  assert.equal(formatStats(new Uint8Array(stats)), DEFAULT_STATS);
  JSON.parse(formatStats(stats)); // valid JSON (defect #2 fixed)
});

Deno.test("stats: 72-byte little-endian layout of the static fields", () => {
  const { stats } = table({ size: 7, buckets: 11, frags: 13, mtu: 9000, ttlMs: 200 });
  assert.equal(stats.byteLength, 72);
  const dv = new DataView(stats);
  assert.equal(dv.getBigUint64(0, true), 200_000_000n);
  assert.equal(dv.getUint32(8, true), 7); // hsize
  assert.equal(dv.getUint32(12, true), 0); // active: never updated
  assert.equal(dv.getUint32(36, true), 0); // padding
  assert.equal(dv.getUint32(40, true), 9000); // mtu
  assert.equal(dv.getUint32(44, true), 11); // bucketsMax
  assert.equal(dv.getUint32(56, true), 13); // fragsMax
  for (const off of [16, 20, 24, 28, 32, 48, 52, 60, 64, 68]) {
    assert.equal(dv.getUint32(off, true), 0);
  }
});

Deno.test("stats: ttl 5000 ms is 5e9 ns in 64 bits, printed ttlMillis 5000 (defect #10 fixed)", () => {
  const { stats, st } = table({ ttlMs: 5000 });
  assert.equal(new DataView(stats).getBigUint64(0, true), 5_000_000_000n);
  assert.equal(st().ttlMillis, 5000);
  assert.match(formatStats(stats), /\n {2}"ttlMillis": {8}5000,\n/);
});

Deno.test("stats: the table zero-fills a reused buffer and keeps counters in a caller's view", () => {
  const backing = new Uint8Array(8 + 72 + 8).fill(0xee);
  const view = backing.subarray(8, 80);
  const ft = new FragTable({ size: 1, buckets: 0, frags: 0, mtu: 1500, ttlMs: 200, stats: view });
  assert.equal(backing[7], 0xee);
  assert.equal(backing[80], 0xee);
  assert.equal(readStats(view).lookups, 0);
  nonFirst(ft, ipv4Key(1), ipv4Frag(1, 10, true, 8), 28, T0);
  const s = readStats(view);
  assert.equal(s.lookups, 1);
  assert.equal(s.inserts, 1);
  assert.equal(s.active, 0);
  assert.equal(readStats(ft.stats).lookups, 1);
});

Deno.test("stats: tables sharing one initialised object (initStats false, atomicStats)", () => {
  const shm = new ArrayBuffer(FTSHM_SIZE);
  initFtStats(shm, { ttlMs: 200, size: 500, mtu: 1500, buckets: 500, frags: 0 });
  const opts = { size: 500, buckets: 500, frags: 0, mtu: 1500, ttlMs: 200, stats: shm };
  const a = new FragTable({ ...opts, initStats: false, atomicStats: true });
  nonFirst(a, ipv4Key(1), ipv4Frag(1, 1, true, 8), 28, T0);
  // A second table starting later must not reset what the first one counted.
  const b = new FragTable({ ...opts, initStats: false, atomicStats: true });
  nonFirst(b, ipv4Key(2), ipv4Frag(2, 1, true, 8), 28, T0);
  first(b, ipv4Key(2), 1, ipv4Frag(2, 0, true, 8), 28, T0);
  const s = readStats(shm);
  assert.equal(s.lookups, 3);
  assert.equal(s.inserts, 2);
  assert.equal(s.hsize, 500);
  assert.equal(s.ttlMillis, 200);
});

Deno.test("stats: readStats/formatStats of arbitrary counters; ttlMillis = floor(ns / 1e6)", () => {
  const b = new ArrayBuffer(72);
  initFtStats(b, { ttlMs: 0, size: 1, mtu: 576, buckets: 0, frags: 0 });
  const dv = new DataView(b);
  dv.setBigUint64(0, 1_999_999n, true);
  dv.setUint32(16, 4294967295, true);
  const s = readStats(b);
  assert.equal(s.ttlMillis, 1);
  assert.equal(s.collisions, 4294967295);
  assert.match(formatStats(b), /"collisions": {7}4294967295,/);
  assert.throws(() => readStats(new ArrayBuffer(71)), RangeError);
});

Deno.test("constructor: ft_size < 1 is rejected with a RangeError (defect #20)", () => {
  for (const size of [0, -1, 0.5, NaN]) {
    assert.throws(
      () => new FragTable({ size, buckets: 500, frags: 0, mtu: 1500, ttlMs: 200 }),
      (e: unknown) => e instanceof RangeError && /ft_size/.test(e.message),
    );
  }
  assert.throws(
    () => new FragTable({ size: 1, buckets: -1, frags: 0, mtu: 1500, ttlMs: 200 }),
    RangeError,
  );
  assert.throws(
    () =>
      new FragTable({
        size: 1,
        buckets: 0,
        frags: 0,
        mtu: 1500,
        ttlMs: 200,
        stats: new ArrayBuffer(64),
      }),
    RangeError,
  );
});

// ---- entry states (docs/COMPATIBILITY.md#fragments) ------------------------------------------------------------

Deno.test("storing -> valid: stored fragment re-injected, later fragments accepted with fw", () => {
  const { ft, injected, st } = table();
  const key = ipv4Key(0x3e7e);
  const f2 = ipv4Frag(0x3e7e, 185, true, 1480, { fill: 2 });
  assert.equal(nonFirst(ft, key, f2, f2.length, T0), -1);
  assert.equal(ft.lastStatus, FRAG_STORED);
  assert.equal(st().fragsAllocated, 1);
  assert.equal(injected.length, 0);

  const f1 = ipv4Frag(0x3e7e, 0, true, 1480);
  assert.equal(first(ft, key, 7, f1, f1.length, T0 + MS), true);
  assert.equal(injected.length, 1);
  assert.deepEqual(injected[0].bytes, f2);
  assert.equal(injected[0].len, f2.length);
  assert.equal(ft.fragsFree, 100);

  const f3 = ipv4Frag(0x3e7e, 370, false, 100);
  assert.equal(nonFirst(ft, key, f3, f3.length, T0 + 2 * MS), 7);
  assert.equal(ft.lastStatus, FRAG_ACCEPT);
  // The re-injected fragment comes back through NFQUEUE and finds the valid entry.
  assert.equal(nonFirst(ft, key, f2, f2.length, T0 + 3 * MS), 7);
  assert.equal(ft.lastStatus, FRAG_ACCEPT);
  const s = st();
  assert.equal(s.fragsAllocated, 1);
  assert.equal(s.fragsDiscarded, 0);
  assert.equal(s.lookups, 4);
  assert.equal(s.inserts, 1);
  assert.equal(ft.entries, 1);
});

Deno.test("first fragment first: valid at once; fwmark 0 is a valid mark", () => {
  const { ft, injected } = table();
  const key = ipv4Key(9);
  const f1 = ipv4Frag(9, 0, true, 64);
  assert.equal(first(ft, key, 0, f1, f1.length, T0), true);
  assert.equal(injected.length, 0);
  const f2 = ipv4Frag(9, 8, false, 64);
  assert.equal(nonFirst(ft, key, f2, f2.length, T0), 0);
  assert.equal(ft.lastStatus, FRAG_ACCEPT);
});

Deno.test("repeated first fragment is dropped (entry already valid)", () => {
  const { ft, st } = table();
  const key = ipv4Key(10);
  const f1 = ipv4Frag(10, 0, true, 64);
  assert.equal(first(ft, key, 3, f1, f1.length, T0), true);
  assert.equal(first(ft, key, 3, f1, f1.length, T0 + MS), false);
  assert.equal(first(ft, key, 4, f1, f1.length, T0 + 2 * MS), false);
  // The stored value is unchanged.
  const f2 = ipv4Frag(10, 8, false, 8);
  assert.equal(nonFirst(ft, key, f2, f2.length, T0 + 3 * MS), 3);
  assert.equal(st().inserts, 1);
});

Deno.test("stored fragments are injected most recently stored first (LIFO)", () => {
  const { ft, injected, st } = table();
  const key = ipv4Key(0x1234);
  const a = ipv4Frag(0x1234, 10, true, 80, { fill: 0xa });
  const b = ipv4Frag(0x1234, 20, true, 40, { fill: 0xb });
  const c = ipv4Frag(0x1234, 30, false, 16, { fill: 0xc });
  for (const f of [a, b, c]) {
    assert.equal(nonFirst(ft, key, f, f.length, T0), -1);
    assert.equal(ft.lastStatus, FRAG_STORED);
  }
  assert.equal(ft.fragsFree, 97);
  assert.equal(first(ft, key, 5, ipv4Frag(0x1234, 0, true, 80), 100, T0), true);
  assert.deepEqual(injected.map((i) => i.bytes), [c, b, a]);
  assert.deepEqual(injected.map((i) => i.len), [36, 60, 100]);
  assert.equal(ft.fragsFree, 100);
  assert.equal(st().fragsAllocated, 3);
});

Deno.test("inject may re-enter the table synchronously (re-injected fragment finds valid)", () => {
  const seen: number[] = [];
  const key = ipv4Key(77);
  const ft: FragTable = new FragTable({
    size: 1,
    buckets: 1,
    frags: 2,
    mtu: 1500,
    ttlMs: 200,
    inject: (bytes, len) => {
      seen.push(nonFirst(ft, key, bytes, len, T0));
    },
  });
  nonFirst(ft, key, ipv4Frag(77, 5, true, 8), 28, T0);
  nonFirst(ft, key, ipv4Frag(77, 6, false, 8), 28, T0);
  assert.equal(first(ft, key, 42, ipv4Frag(77, 0, true, 40), 60, T0), true);
  assert.deepEqual(seen, [42, 42]);
  assert.equal(ft.fragsFree, 2);
});

Deno.test("fragment pool exhausted: entry poisoned, its fragments discarded, first dropped", () => {
  const { ft, injected, st } = table({ frags: 2 });
  const key = ipv4Key(0x0101);
  const other = ipv4Key(0x0202);
  assert.equal(nonFirst(ft, key, ipv4Frag(0x0101, 1, true, 8), 28, T0), -1);
  assert.equal(nonFirst(ft, other, ipv4Frag(0x0202, 1, true, 8), 28, T0), -1);
  assert.equal(ft.lastStatus, FRAG_STORED);
  // Pool empty: the third fragment poisons its entry and discards the entry's stored one.
  assert.equal(nonFirst(ft, key, ipv4Frag(0x0101, 2, true, 8), 28, T0), -1);
  assert.equal(ft.lastStatus, FRAG_DROPPED);
  let s = st();
  assert.equal(s.fragsDiscarded, 1);
  assert.equal(s.fragsAllocated, 2);
  assert.equal(ft.fragsFree, 1);
  // Poisoned: every later fragment and the first fragment are dropped.
  assert.equal(nonFirst(ft, key, ipv4Frag(0x0101, 3, false, 8), 28, T0), -1);
  assert.equal(ft.lastStatus, FRAG_DROPPED);
  assert.equal(first(ft, key, 9, ipv4Frag(0x0101, 0, true, 8), 28, T0), false);
  assert.equal(injected.length, 0);
  // The other datagram is unaffected.
  assert.equal(first(ft, other, 8, ipv4Frag(0x0202, 0, true, 8), 28, T0), true);
  assert.equal(injected.length, 1);
  s = st();
  assert.equal(s.fragsDiscarded, 1);
  assert.equal(ft.fragsFree, 2);
});

Deno.test("no tun (frags=0): early fragment poisons the entry, first fragment dropped until ttl", () => {
  const { ft, st } = table({ frags: 0 });
  const key = ipv4Key(0x5555);
  assert.equal(nonFirst(ft, key, ipv4Frag(0x5555, 100, false, 8), 28, T0), -1);
  assert.equal(ft.lastStatus, FRAG_DROPPED); // trace "Fragment dropped"
  const f1 = ipv4Frag(0x5555, 0, true, 800);
  assert.equal(first(ft, key, 1, f1, f1.length, T0 + 10 * MS), false); // "FAILED: Handle first fragment"
  assert.equal(st().fragsDiscarded, 0);
  assert.equal(st().fragsAllocated, 0);
  // lastRef was refreshed by the first fragment's lookup (T0+10ms): still poisoned at +210 ms.
  assert.equal(first(ft, key, 1, f1, f1.length, T0 + 210 * MS), false);
  // Stale after more than 200 ms idle: reclaimed, the first fragment now succeeds.
  assert.equal(first(ft, key, 1, f1, f1.length, T0 + 410 * MS + 1), true);
  assert.equal(st().objGC, 1);
});

Deno.test("a fragment longer than mtu is dropped without poisoning the entry", () => {
  const { ft, st } = table({ mtu: 576 });
  const key = ipv4Key(3);
  const big = ipv4Frag(3, 1, true, 600);
  assert.equal(nonFirst(ft, key, big, big.length, T0), -1);
  assert.equal(ft.lastStatus, FRAG_DROPPED);
  const small = ipv4Frag(3, 2, true, 100);
  assert.equal(nonFirst(ft, key, small, small.length, T0), -1);
  assert.equal(ft.lastStatus, FRAG_STORED);
  assert.equal(st().fragsAllocated, 1);
  assert.equal(first(ft, key, 2, ipv4Frag(3, 0, true, 8), 28, T0), true);
});

// ---- TTL and lazy GC (docs/COMPATIBILITY.md#fragments) -------------------------------------------------------------

Deno.test("ttl: stale only when now - lastRef > ttl (strictly); lookups refresh lastRef", () => {
  const { ft, st } = table();
  const key = ipv4Key(0x77);
  const f1 = ipv4Frag(0x77, 0, true, 8);
  const f2 = ipv4Frag(0x77, 1, true, 8);
  assert.equal(first(ft, key, 11, f1, 28, T0), true);
  // Exactly ttl later: not stale (and the lookup refreshes lastRef).
  assert.equal(nonFirst(ft, key, f2, 28, T0 + 200 * MS), 11);
  // Idle timeout measured from the refresh.
  assert.equal(nonFirst(ft, key, f2, 28, T0 + 400 * MS), 11);
  assert.equal(st().objGC, 0);
  // 1 ns more than ttl: reclaimed; a new storing entry is created for the fragment.
  assert.equal(nonFirst(ft, key, f2, 28, T0 + 600 * MS + 1), -1);
  assert.equal(ft.lastStatus, FRAG_STORED);
  const s = st();
  assert.equal(s.objGC, 1);
  assert.equal(s.inserts, 2);
  assert.equal(s.lookups, 4);
});

Deno.test("lazy GC: only a touched bucket is swept; stored fragments count as discarded", () => {
  const { ft, st } = table({ size: 2, buckets: 4 });
  // Find keys that land in bucket 0 and bucket 1 (bucket = djb2(key) % 2).
  const keys: Uint8Array[][] = [[], []];
  for (let id = 1; keys[0].length < 3 || keys[1].length < 1; id++) {
    const k = ipv4Key(id);
    let h = 5381;
    for (const b of k) h = (h * 33 + b) >>> 0;
    keys[h % 2].push(k);
  }
  const [a, b, c] = keys[0];
  const d = keys[1][0];
  const frag = ipv4Frag(0, 1, true, 8);
  nonFirst(ft, a, frag, 28, T0); // inline, stores 1
  nonFirst(ft, a, frag, 28, T0); // stores 2
  nonFirst(ft, b, frag, 28, T0); // chained, stores 1
  nonFirst(ft, d, frag, 28, T0); // bucket 1
  assert.equal(ft.fragsFree, 96);
  assert.equal(ft.entries, 3);
  // Much later, touching bucket 1 reclaims only d.
  const later = T0 + 10_000 * MS;
  assert.equal(first(ft, d, 1, ipv4Frag(0, 0, true, 8), 28, later), true); // new entry
  let s = st();
  assert.equal(s.objGC, 1);
  assert.equal(s.fragsDiscarded, 1);
  assert.equal(ft.entries, 3);
  // Touching bucket 0 (with a third key) reclaims a (inline) and b (chained).
  assert.equal(first(ft, c, 1, ipv4Frag(0, 0, true, 8), 28, later), true);
  s = st();
  assert.equal(s.objGC, 3);
  assert.equal(s.fragsDiscarded, 4);
  assert.equal(s.bucketsUsed, 0);
  assert.equal(s.bucketsAllocated, 1);
  assert.equal(ft.fragsFree, 100);
  assert.equal(ft.bucketsFree, 4);
  assert.equal(ft.entries, 2);
});

// ---- collisions, extra buckets, rejected (docs/COMPATIBILITY.md#fragments) -----------------------------------------

Deno.test("collisions: extra buckets from the pool, rejected when empty", () => {
  const { ft, st } = table({ size: 1, buckets: 2 });
  const f1 = ipv4Frag(0, 0, true, 8);
  assert.equal(first(ft, ipv4Key(1), 1, f1, 28, T0), true); // inline
  assert.equal(first(ft, ipv4Key(2), 2, f1, 28, T0), true); // extra bucket
  assert.equal(first(ft, ipv4Key(3), 3, f1, 28, T0), true); // extra bucket
  let s = st();
  assert.equal(s.inserts, 3);
  assert.equal(s.collisions, 2);
  assert.equal(s.bucketsAllocated, 2);
  assert.equal(s.bucketsUsed, 2);
  assert.equal(s.rejected, 0);
  // Pool empty: the insert is rejected; the first fragment is dropped, a non-first one too.
  assert.equal(first(ft, ipv4Key(4), 4, f1, 28, T0), false);
  assert.equal(nonFirst(ft, ipv4Key(5), ipv4Frag(5, 1, true, 8), 28, T0), -1);
  assert.equal(ft.lastStatus, FRAG_DROPPED);
  s = st();
  assert.equal(s.inserts, 5);
  assert.equal(s.collisions, 4);
  assert.equal(s.rejected, 2);
  assert.equal(s.lookups, 5);
  // Every key is found in the chain.
  const f2 = ipv4Frag(0, 1, true, 8);
  for (const id of [1, 2, 3]) assert.equal(nonFirst(ft, ipv4Key(id), f2, 28, T0), id);
  // All stale later: one touch reclaims all three, the chained buckets return to the pool.
  assert.equal(first(ft, ipv4Key(6), 6, f1, 28, T0 + 201 * MS), true);
  s = st();
  assert.equal(s.objGC, 3);
  assert.equal(s.bucketsUsed, 0);
  assert.equal(s.bucketsAllocated, 2);
  assert.equal(s.collisions, 4); // inline free and no chain left: no collision
  assert.equal(ft.bucketsFree, 2);
});

Deno.test("collisions: reusing a free main bucket that still has a chain counts a collision", () => {
  const { ft, st } = table({ size: 1, buckets: 1 });
  const f1 = ipv4Frag(0, 0, true, 8);
  assert.equal(first(ft, ipv4Key(1), 1, f1, 28, T0), true); // inline
  assert.equal(first(ft, ipv4Key(2), 2, f1, 28, T0 + 150 * MS), true); // chained
  // At +250 ms key 1 is stale (250 > 200), key 2 is not (100): inline freed, chain kept.
  assert.equal(first(ft, ipv4Key(3), 3, f1, 28, T0 + 250 * MS), true);
  const s = st();
  assert.equal(s.objGC, 1);
  assert.equal(s.inserts, 3);
  assert.equal(s.collisions, 2);
  assert.equal(s.bucketsAllocated, 1);
  assert.equal(s.bucketsUsed, 1);
  assert.equal(nonFirst(ft, ipv4Key(2), ipv4Frag(2, 1, true, 8), 28, T0 + 260 * MS), 2);
  assert.equal(nonFirst(ft, ipv4Key(3), ipv4Frag(3, 1, true, 8), 28, T0 + 260 * MS), 3);
});

Deno.test("at most size + buckets live entries", () => {
  const { ft, st } = table({ size: 4, buckets: 3, frags: 0 });
  let ok = 0;
  for (let id = 1; id <= 50; id++) {
    if (first(ft, ipv4Key(id), id, ipv4Frag(id, 0, true, 8), 28, T0)) ok++;
  }
  assert.ok(ok <= 7);
  assert.equal(ft.entries, ok);
  assert.equal(st().rejected, 50 - ok);
  assert.equal(st().bucketsUsed, 3);
});

// ---- integration with the parser (docs/COMPATIBILITY.md#packet-decisions) -------------------------------------------------

Deno.test("lb flow: first key converted to id form equals the non-first key from the parser", () => {
  const { ft } = table();
  const kp = new KeyParse();
  const first = ipv4Frag(0x3e7e, 0, true, 24);
  first.set([0x14, 0xf5, 0x93, 0x0e], 20); // UDP ports
  const next = ipv4Frag(0x3e7e, 3, false, 16);
  assert.equal(parseKeyInto(kp, next, next.length, ETH_P_IP, 0), 2);
  assert.equal(ft.nonFirst(kp, next, 0, next.length, T0), -1);
  assert.equal(ft.lastStatus, FRAG_STORED);
  assert.equal(parseKeyInto(kp, first, first.length, ETH_P_IP, 0) & 1, 1);
  assert.equal(kp.fragId, 32318);
  setIdForm(kp.key, kp.fragId);
  assert.deepEqual(kp.key, ipv4Key(0x3e7e));
  assert.equal(ft.first(kp, 100, first, 0, first.length, T0), true);

  const kp6 = new KeyParse();
  const ident = [0xe0, 0xe6, 0x66, 0x3a];
  const f6 = ipv6Frag(ident, 0, true, 16);
  const n6 = ipv6Frag(ident, 16, false, 8);
  assert.equal(parseKeyInto(kp6, n6, n6.length, ETH_P_IPV6, 0), 2);
  assert.deepEqual(kp6.key, ipv6Key(ident));
  assert.equal(parseKeyInto(kp6, f6, f6.length, ETH_P_IPV6, 0) & 1, 1);
  assert.equal(kp6.fragId, 979822304);
  setIdForm(kp6.key, kp6.fragId);
  assert.deepEqual(kp6.key, ipv6Key(ident));
});

// ---- reassembler (docs/COMPATIBILITY.md#fragments) -----------------------------------------------------------------

Deno.test("reassembler: IPv4 datagram completed -> entry removed, reAssembled += 1", () => {
  const { ft, st } = table({ reassembler: 16 });
  const key = ipv4Key(0x4242);
  const f1 = ipv4Frag(0x4242, 0, true, 24); // bytes [0, 24)
  const f3 = ipv4Frag(0x4242, 6, false, 10); // [48, 58), last
  const f2 = ipv4Frag(0x4242, 3, true, 24); // [24, 48)
  assert.equal(first(ft, key, 21, f1, f1.length, T0), true);
  assert.equal(ft.holesFree, 14);
  assert.equal(nonFirst(ft, key, f3, f3.length, T0), 21); // out of order
  assert.equal(st().reAssembled, 0);
  assert.equal(ft.entries, 1);
  // The fragment that completes the datagram is still accepted with the fwmark.
  assert.equal(nonFirst(ft, key, f2, f2.length, T0), 21);
  assert.equal(ft.lastStatus, FRAG_ACCEPT);
  assert.equal(st().reAssembled, 1);
  assert.equal(ft.entries, 0);
  assert.equal(ft.holesFree, 16);
  // A late duplicate now creates a new (storing) entry.
  assert.equal(nonFirst(ft, key, f2, f2.length, T0), -1);
  assert.equal(ft.lastStatus, FRAG_STORED);
});

Deno.test("reassembler: IPv6 datagram (with a hop-by-hop header) completed", () => {
  const { ft, st } = table({ reassembler: 4 });
  const ident = [1, 2, 3, 4];
  const key = ipv6Key(ident);
  const f1 = ipv6Frag(ident, 0, true, 32, true); // [0, 32) after the fragment header
  const f2 = ipv6Frag(ident, 32, true, 16); // [32, 48)
  const f3 = ipv6Frag(ident, 48, false, 5); // [48, 53)
  assert.equal(first(ft, key, 6, f1, f1.length, T0), true);
  assert.equal(nonFirst(ft, key, f2, f2.length, T0), 6);
  assert.equal(st().reAssembled, 0);
  assert.equal(nonFirst(ft, key, f3, f3.length, T0), 6);
  assert.equal(st().reAssembled, 1);
  assert.equal(ft.entries, 0);
  assert.equal(ft.holesFree, 4);
});

Deno.test("reassembler: overlapping and duplicate fragments; IPv4 total-length mismatch ignored", () => {
  const { ft, st } = table({ reassembler: 8 });
  const key = ipv4Key(0x99);
  assert.equal(first(ft, key, 1, ipv4Frag(0x99, 0, true, 40), 60, T0), true); // [0,40)
  // Total length field 100 != copied length 60: ignored, would otherwise complete.
  const bad = ipv4Frag(0x99, 4, false, 40, { totalLen: 100 });
  assert.equal(nonFirst(ft, key, bad, bad.length, T0), 1);
  assert.equal(st().reAssembled, 0);
  // [16, 56) overlaps, [56, 80) last; a duplicate of the overlap changes nothing.
  const mid = ipv4Frag(0x99, 2, true, 40);
  assert.equal(nonFirst(ft, key, mid, mid.length, T0), 1);
  assert.equal(nonFirst(ft, key, mid, mid.length, T0), 1);
  assert.equal(st().reAssembled, 0);
  assert.equal(nonFirst(ft, key, ipv4Frag(0x99, 7, false, 24), 44, T0), 1);
  assert.equal(st().reAssembled, 1);
  assert.equal(ft.entries, 0);
  assert.equal(ft.holesFree, 8);
});

Deno.test("reassembler: abandoned if a fragment arrives while storing; no pool = no reassembly", () => {
  const { ft, st } = table({ reassembler: 3 });
  const key = ipv4Key(0x10);
  assert.equal(nonFirst(ft, key, ipv4Frag(0x10, 1, false, 8), 28, T0), -1); // storing
  assert.equal(first(ft, key, 2, ipv4Frag(0x10, 0, true, 8), 28, T0), true); // completes nothing
  assert.equal(st().reAssembled, 0);
  assert.equal(ft.entries, 1);
  assert.equal(ft.holesFree, 3);
  // Pool of 3: one datagram takes 2 (head + [0,∞)); a second one finds 1 free -> untracked.
  const k1 = ipv4Key(0x11);
  const k2 = ipv4Key(0x12);
  assert.equal(first(ft, k1, 3, ipv4Frag(0x11, 0, true, 8), 28, T0), true);
  assert.equal(first(ft, k2, 4, ipv4Frag(0x12, 0, true, 8), 28, T0), true);
  assert.equal(ft.holesFree, 1);
  assert.equal(nonFirst(ft, k2, ipv4Frag(0x12, 1, false, 8), 28, T0), 4);
  assert.equal(st().reAssembled, 0);
  assert.equal(nonFirst(ft, k1, ipv4Frag(0x11, 1, false, 8), 28, T0), 3);
  assert.equal(st().reAssembled, 1);
  assert.equal(ft.holesFree, 3);
  assert.equal(ft.entries, 2); // 0x10 and 0x12 wait for their ttl
});

Deno.test("reassembler: a split that finds the pool empty abandons reassembly for that entry", () => {
  const { ft, st } = table({ reassembler: 2 });
  const key = ipv4Key(0x20);
  assert.equal(first(ft, key, 5, ipv4Frag(0x20, 0, true, 8), 28, T0), true); // hole [8, ∞)
  assert.equal(ft.holesFree, 0);
  // [16, 24) inside [8, ∞) needs a second hole: no descriptor -> abandoned.
  assert.equal(nonFirst(ft, key, ipv4Frag(0x20, 2, true, 8), 28, T0), 5);
  assert.equal(ft.holesFree, 2);
  assert.equal(nonFirst(ft, key, ipv4Frag(0x20, 1, true, 8), 28, T0), 5);
  assert.equal(nonFirst(ft, key, ipv4Frag(0x20, 3, false, 8), 28, T0), 5);
  assert.equal(st().reAssembled, 0);
  assert.equal(ft.entries, 1);
});

Deno.test("reassembler: reclaimed entries return their hole lists", () => {
  const { ft, st } = table({ size: 1, buckets: 0, reassembler: 2 });
  assert.equal(first(ft, ipv4Key(1), 1, ipv4Frag(1, 0, true, 8), 28, T0), true);
  assert.equal(ft.holesFree, 0);
  assert.equal(first(ft, ipv4Key(2), 2, ipv4Frag(2, 0, true, 8), 28, T0 + 201 * MS), true);
  assert.equal(st().objGC, 1);
  assert.equal(ft.holesFree, 0); // the new entry took the released pair
  assert.equal(nonFirst(ft, ipv4Key(2), ipv4Frag(2, 1, false, 8), 28, T0 + 201 * MS), 2);
  assert.equal(st().reAssembled, 1);
  assert.equal(ft.holesFree, 2);
});

Deno.test("HoleLists: RFC 815 steps", () => {
  const h = new HoleLists(4);
  const l = h.create();
  assert.equal(h.free, 2);
  assert.equal(h.feed(l, 100, 200, true), FEED_INCOMPLETE); // [0,100) [200,∞)
  assert.equal(h.holes(l), 2);
  assert.equal(h.feed(l, 300, 400, true), FEED_INCOMPLETE); // [0,100) [200,300) [400,∞)
  assert.equal(h.holes(l), 3);
  assert.equal(h.free, 0);
  assert.equal(h.feed(l, 500, 600, true), FEED_ABANDONED); // would need a fifth descriptor
  assert.equal(h.free, 4);

  const m = h.create();
  assert.equal(h.feed(m, 0, 0, true), FEED_INCOMPLETE); // zero-length: nothing changes
  assert.equal(h.holes(m), 1);
  assert.equal(h.feed(m, 50, 100, false), FEED_INCOMPLETE); // [0,50)
  assert.equal(h.feed(m, 200, 300, true), FEED_INCOMPLETE); // beyond the end: no overlap
  assert.equal(h.holes(m), 1);
  assert.equal(h.feed(m, -8, 10, true), FEED_INCOMPLETE); // invalid: ignored
  assert.equal(h.feed(m, 0, 1e12, true), FEED_INCOMPLETE); // invalid: ignored
  assert.equal(h.holes(m), 1);
  assert.equal(h.feed(m, 0, 60, true), FEED_COMPLETE);
  assert.equal(h.free, 4);
  assert.throws(() => new HoleLists(-1), RangeError);
  assert.equal(new HoleLists(1).create(), -1);
});

Deno.test("fragmentGeometry: IPv4 and IPv6 per docs/COMPATIBILITY.md#fragments", () => {
  const g = new FragGeometry();
  assert.equal(geometry(ipv4Frag(1, 185, true, 1480), 1500, g), true);
  assert.deepEqual([g.start, g.end, g.more], [1480, 2960, true]);
  assert.equal(geometry(ipv4Frag(1, 8191, false, 100), 120, g), true);
  assert.deepEqual([g.start, g.end, g.more], [65528, 65628, false]);
  // IPv4 options: ihl 6.
  const opt = new Uint8Array(44);
  opt.set([0x46, 0, 0, 44, 0, 1, 0x20, 0x02]);
  assert.equal(geometry(opt, 44, g), true);
  assert.deepEqual([g.start, g.end, g.more], [16, 36, true]);
  assert.equal(geometry(ipv4Frag(1, 1, true, 8), 27, g), false); // len != total length
  assert.equal(geometry(ipv6Frag([0, 0, 0, 1], 1448, true, 1232), 1280, g), true);
  assert.deepEqual([g.start, g.end, g.more], [1448, 2680, true]);
  assert.equal(geometry(ipv6Frag([0, 0, 0, 1], 0, false, 16, true), 72, g), true);
  assert.deepEqual([g.start, g.end, g.more], [0, 16, false]);
  // Not a fragment / not IP / too short.
  const plain6 = new Uint8Array(60);
  plain6[0] = 0x60;
  plain6[6] = 17;
  assert.equal(geometry(plain6, 60, g), false);
  assert.equal(geometry(new Uint8Array(60), 60, g), false);
  assert.equal(geometry(new Uint8Array([0x45]), 1, g), false);
  assert.equal(geometry(new Uint8Array(0), 0, g), false);
  assert.equal(geometry(ipv4Frag(1, 1, true, 8), 1000, g), false);
});

// ---- hostile input --------------------------------------------------------------------------

Deno.test("hostile input never throws nor leaks pool entries", () => {
  const { ft, st } = table({ size: 3, buckets: 2, frags: 4, mtu: 600, reassembler: 6 });
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  const pkts: Uint8Array[] = [
    new Uint8Array(0),
    new Uint8Array([0x45]),
    ipv4Frag(1, 8191, true, 500),
    ipv4Frag(1, 0, false, 0),
    ipv4Frag(1, 1, true, 0),
    ipv4Frag(2, 1, true, 900), // longer than mtu
    ipv6Frag([0, 0, 0, 1], 65528, true, 8),
    ipv6Frag([0, 0, 0, 1], 0, false, 0),
    ipv4Frag(1, 0, true, 500, { totalLen: 0xffff }),
  ];
  for (let i = 0; i < 20000; i++) {
    const key = ipv4Key(rnd(6));
    const p = pkts[rnd(pkts.length)];
    const lens = [p.length, 0, -1, p.length + 10, 1e9, NaN, 0.5];
    const len = lens[rnd(lens.length)];
    const now = T0 + i * 10 * MS;
    if (rnd(3) === 0) first(ft, key, rnd(5), p, len, now);
    else nonFirst(ft, key, p, len, now);
  }
  // Everything reclaimable after the ttl: all pools return to full.
  for (let id = 0; id < 6; id++) {
    first(ft, ipv4Key(id), 0, pkts[2], 0, T0 + 1e6 * MS);
  }
  for (let id = 0; id < 6; id++) first(ft, ipv4Key(id), 0, pkts[2], 0, T0 + 2e6 * MS);
  assert.equal(ft.fragsFree, 4);
  assert.ok(ft.entries <= 5);
  const s = st();
  assert.ok(s.bucketsUsed <= 2);
  assert.equal(ft.bucketsFree + s.bucketsUsed, 2);
  assert.ok(s.fragsDiscarded <= s.fragsAllocated);
});

Deno.test("hostile: bad len values on a storing entry are dropped, not stored", () => {
  const { ft, st } = table();
  const key = ipv4Key(1);
  const p = ipv4Frag(1, 1, true, 8);
  for (const len of [-1, 29, 1e9, NaN]) {
    assert.equal(nonFirst(ft, key, p, len, T0), -1);
    assert.equal(ft.lastStatus, FRAG_DROPPED);
  }
  assert.equal(st().fragsAllocated, 0);
  assert.equal(nonFirst(ft, key, p, 0, T0), -1); // a zero-length copy is stored as such
  assert.equal(ft.lastStatus, FRAG_STORED);
});

Deno.test("setIdForm writes the fragment id as a little-endian u64 at bytes 32..39", () => {
  const k = new Uint8Array(40).fill(0xff);
  setIdForm(k, 979822304);
  assert.deepEqual([...k.subarray(32)], [0xe0, 0xe6, 0x66, 0x3a, 0, 0, 0, 0]);
  assert.equal(k[31], 0xff);
  setIdForm(k, 32318);
  assert.deepEqual([...k.subarray(32)], [0x3e, 0x7e, 0, 0, 0, 0, 0, 0]);
});
