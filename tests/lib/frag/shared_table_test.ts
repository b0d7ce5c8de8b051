/**
 * One fragment table shared by several threads (docs/ARCHITECTURE.md,
 * docs/COMPATIBILITY.md#fragments): tables attached to one SharedArrayBuffer
 * must behave exactly like one private table (checked against a private
 * table as the reference over random operation sequences), and two worker
 * threads playing the two halves of the same datagrams at the same time
 * must lose nothing and mix nothing up.
 */
import assert from "node:assert/strict";
import { FRAG_STORED, FragTable, type FragTableOptions } from "../../../lib/frag/table.ts";
import { FTSHM_EXT_SIZE, readStats, readStatsExt } from "../../../lib/frag/stats.ts";
import { fragParse, ipv4Frag, ipv4Key, MS, T0 } from "../../../testkit/frag_packets.ts";
import { prng } from "../../../testkit/prng.ts";
import type {
  FragWorkerResult,
  FragWorkerStart,
} from "../../../testkit/fixtures/frag_table_worker.ts";

const WORKER = new URL("../../../testkit/fixtures/frag_table_worker.ts", import.meta.url);

/** A table, the fragments it injected (as "id:offset"), and its statistics. */
function tableWith(opts: FragTableOptions, stats = new ArrayBuffer(FTSHM_EXT_SIZE)) {
  const injected: string[] = [];
  const ft = new FragTable({
    ...opts,
    stats,
    inject: (b) => {
      injected.push(`${(b[4] << 8) | b[5]}:${((b[6] & 0x1f) << 8) | b[7]}`);
    },
  });
  return { ft, injected, stats };
}

Deno.test("shared: tables attached to one memory behave as one private table (random sequences)", () => {
  for (let seed = 1; seed <= 30; seed++) {
    const rnd = prng(seed);
    const opts: FragTableOptions = {
      size: 1 + Math.floor(rnd() * 13),
      buckets: Math.floor(rnd() * 8),
      frags: Math.floor(rnd() * 6),
      mtu: 1500,
      ttlMs: 50,
      reassembler: rnd() < 0.5 ? 0 : 1 + Math.floor(rnd() * 12),
    };
    const ref = tableWith(opts);
    const a = tableWith({ ...opts, shared: true });
    // b counts in a's statistics object, as the queue threads share one ftshm.
    const b = new FragTable({
      ...opts,
      memory: a.ft.memory as SharedArrayBuffer,
      stats: a.stats,
      initStats: false,
      inject: (bytes) => {
        a.injected.push(`${(bytes[4] << 8) | bytes[5]}:${((bytes[6] & 0x1f) << 8) | bytes[7]}`);
      },
    });
    let now = T0;
    for (let step = 0; step < 400; step++) {
      now += Math.floor(rnd() * 10 * MS);
      const id = Math.floor(rnd() * 12);
      const key = ipv4Key(id);
      const off8 = Math.floor(rnd() * 4);
      const pkt = ipv4Frag(id, off8, rnd() < 0.7, 8 * (1 + Math.floor(rnd() * 3)));
      const shared = rnd() < 0.5 ? a.ft : b;
      if (rnd() < 0.05) {
        const n = Math.floor(rnd() * 20);
        assert.equal(
          shared.sweep(now, n),
          ref.ft.sweep(now, n),
          `seed ${seed} step ${step}: sweep`,
        );
        continue;
      }
      const p = fragParse(key, pkt, pkt.length);
      const q = fragParse(key, pkt, pkt.length);
      if (off8 === 0) {
        const fw = Math.floor(rnd() * 5);
        assert.equal(
          shared.first(p, fw, pkt, 0, pkt.length, now),
          ref.ft.first(q, fw, pkt, 0, pkt.length, now),
          `seed ${seed} step ${step}: first`,
        );
      } else {
        assert.equal(
          shared.nonFirst(p, pkt, 0, pkt.length, now),
          ref.ft.nonFirst(q, pkt, 0, pkt.length, now),
          `seed ${seed} step ${step}: nonFirst`,
        );
        assert.equal(shared.lastStatus, ref.ft.lastStatus);
      }
    }
    assert.deepEqual(a.injected, ref.injected, `seed ${seed}: injected`);
    assert.deepEqual(readStats(a.stats), readStats(ref.stats), `seed ${seed}: stats`);
    assert.deepEqual(readStatsExt(a.stats), readStatsExt(ref.stats), `seed ${seed}: our stats`);
    for (const t of [a.ft, b]) {
      assert.equal(t.fragsFree, ref.ft.fragsFree);
      assert.equal(t.bucketsFree, ref.ft.bucketsFree);
      assert.equal(t.holesFree, ref.ft.holesFree);
      assert.equal(t.entries, ref.ft.entries);
    }
  }
});

Deno.test("shared: attaching needs the memory of a table with the same sizes", () => {
  const opts = { size: 10, buckets: 5, frags: 2, mtu: 576, ttlMs: 200 };
  const a = new FragTable({ ...opts, shared: true });
  assert.ok(a.memory instanceof SharedArrayBuffer);
  assert.ok(new FragTable(opts).memory instanceof ArrayBuffer);
  assert.throws(
    () => new FragTable({ ...opts, frags: 3, memory: a.memory as SharedArrayBuffer }),
    /memory to attach is \d+ bytes, these options need \d+/,
  );
  // Attaching does not reset the table: what a stored, b sees.
  const key = ipv4Key(9);
  const pkt = ipv4Frag(9, 1, true, 8);
  a.nonFirst(fragParse(key, pkt, 28), pkt, 0, 28, T0);
  assert.equal(a.lastStatus, FRAG_STORED);
  const b = new FragTable({ ...opts, memory: a.memory as SharedArrayBuffer });
  assert.equal(b.fragsFree, 1);
  assert.equal(b.entries, 1);
});

Deno.test("shared: two threads on the two halves of 20,000 datagrams at once lose nothing", async () => {
  // A run where the threads happened not to overlap proves nothing: try again (a few times).
  let overlapped = false;
  for (let attempt = 0; attempt < 5 && !overlapped; attempt++) overlapped = await halves(20_000);
  assert.ok(overlapped, "in 5 runs the two threads never met in the table");
});

/** One run of the two workers on `ids` datagrams; asserts nothing lost. Returns whether they overlapped. */
async function halves(ids: number): Promise<boolean> {
  const opts: FragTableOptions = {
    size: ids,
    buckets: ids,
    frags: 2 * ids,
    mtu: 64,
    ttlMs: 60_000,
    reassembler: 0,
  };
  const stats = new SharedArrayBuffer(FTSHM_EXT_SIZE);
  const owner = new FragTable({ ...opts, shared: true, stats });
  const go = new SharedArrayBuffer(8);
  const run = (role: "first" | "rest") =>
    new Promise<FragWorkerResult>((resolve, reject) => {
      const w = new Worker(WORKER, { type: "module" });
      w.onmessage = (e) => {
        w.terminate();
        resolve(e.data);
      };
      w.onerror = (e) => {
        w.terminate();
        reject(new Error(e.message));
      };
      const start: FragWorkerStart = {
        role,
        opts: { ...opts, stats, initStats: false },
        memory: owner.memory as SharedArrayBuffer,
        go,
        ids,
      };
      w.postMessage(start);
    });
  const results = [run("first"), run("rest")];
  const flag = new Int32Array(go);
  while (Atomics.load(flag, 1) < 2) await new Promise((r) => setTimeout(r, 5));
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
  const [f, r] = await Promise.all(results);
  assert.equal(f.dropped, 0, "first fragments dropped");
  assert.equal(r.dropped, 0, "later fragments dropped");
  assert.equal(r.wrongMark, 0, "later fragments accepted with another datagram's mark");
  assert.equal(r.accepted + r.stored, 2 * ids);
  assert.equal(f.injected, r.stored, "every stored fragment injected once");
  const s = readStats(stats);
  assert.equal(s.lookups, 3 * ids);
  assert.equal(s.inserts, ids);
  assert.equal(s.fragsAllocated, r.stored);
  assert.equal(readStatsExt(stats)?.fragsInjected, r.stored);
  assert.equal(owner.fragsFree, opts.frags);
  assert.equal(owner.entries, ids);
  return r.stored > 0 && r.accepted > 0;
}
