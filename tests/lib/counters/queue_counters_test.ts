/**
 * The per-queue counters in `ftshm` (lib/counters/queue_counters.ts) against a plain reference (a
 * Map per fwmark) over random verdict streams, including more distinct fwmarks than the table
 * has slots; the reader sums the queues; the deciders count their drop reasons.
 */
import assert from "node:assert/strict";
import {
  C_BOUND,
  C_INVALID,
  C_NO_FLOW,
  C_NO_TARGET,
  countersSize,
  formatQueueCounters,
  FW_SLOTS,
  QueueCounters,
  readBoundQueues,
  readQueueCounters,
  writeCountersHeader,
} from "../../../lib/counters/queue_counters.ts";
import { formatStats, initFtStats } from "../../../lib/frag/stats.ts";
import { LbDecider } from "../../../lib/decide/lb.ts";
import { FlowLbDecider } from "../../../lib/decide/flowlb.ts";
import { activate, initTable } from "../../../lib/maglev/maglev.ts";
import { tableSize } from "../../../lib/maglev/table.ts";
import { prng } from "../../../testkit/prng.ts";

Deno.test("queue counters === a Map per fwmark (random streams, two queues, slot overflow)", () => {
  for (let seed = 1; seed <= 20; seed++) {
    const rnd = prng(seed);
    const shm = new ArrayBuffer(countersSize(2));
    writeCountersHeader(shm, 4, 2);
    const qs = [new QueueCounters(shm, 0), new QueueCounters(shm, 1)];
    // Every 4th seed uses more distinct marks than a table has slots.
    const many = seed % 4 === 0;
    const marks = many ? 400 + Math.floor(rnd() * 200) : 1 + Math.floor(rnd() * 40);
    const ref = new Map<number, { packets: number; bytes: number }>();
    const per = [0, 1].map(() => ({ received: 0, accepted: 0, dropped: 0 }));
    for (let i = 0; i < 5000; i++) {
      const q = rnd() < 0.5 ? 0 : 1;
      // Marks spread over the whole i32 range, the largest one included.
      const v = rnd() < 0.1 ? -1 : i % 97 === 0 ? 2147483647 : Math.floor(rnd() * marks) * 7919;
      const len = 20 + Math.floor(rnd() * 1480);
      qs[q].packet(v, len);
      per[q].received++;
      if (v < 0) {
        per[q].dropped++;
        continue;
      }
      per[q].accepted++;
      const r = ref.get(v) ?? { packets: 0, bytes: 0 };
      r.packets++;
      r.bytes += len;
      ref.set(v, r);
    }
    const got = readQueueCounters(shm)!;
    assert.deepEqual(got.queues.map((q) => q.queue), [4, 5]);
    for (const q of [0, 1]) {
      assert.equal(got.queues[q].received, per[q].received);
      assert.equal(got.queues[q].accepted, per[q].accepted);
      assert.equal(got.queues[q].dropped, per[q].dropped);
    }
    const other = got.queues[0].otherFwmarks + got.queues[1].otherFwmarks;
    const inSlots = got.fwmarks.reduce((a, f) => a + f.packets, 0);
    assert.equal(inSlots + other, per[0].accepted + per[1].accepted, `seed ${seed}: every packet`);
    if (!many) {
      // Well under the table's size every mark has its slot: exactly the Map.
      assert.equal(other, 0, `seed ${seed}`);
      const want = [...ref].map(([fwmark, r]) => ({ fwmark, ...r })).sort((a, b) =>
        a.fwmark - b.fwmark
      );
      assert.deepEqual(got.fwmarks, want, `seed ${seed}`);
    } else {
      assert.ok(other > 0 && got.fwmarks.length <= FW_SLOTS * 2, `seed ${seed}: overflow counted`);
      for (const f of got.fwmarks) {
        assert.ok(ref.has(f.fwmark), `seed ${seed}: ${f.fwmark} was sent`);
      }
    }
  }
});

Deno.test("queue counters: none in a 1.2.0-sized object; stats JSON with them stays valid", () => {
  assert.equal(readQueueCounters(new ArrayBuffer(108)), undefined);
  const shm = new ArrayBuffer(countersSize(1));
  assert.equal(readQueueCounters(shm), undefined, "no header: no counters");
  initFtStats(shm, { ttlMs: 200, size: 500, mtu: 1500, buckets: 500, frags: 0 });
  writeCountersHeader(shm, 0, 1);
  new QueueCounters(shm, 0).packet(101, 100);
  const text = `${formatStats(shm).slice(0, -3)},\n${
    formatQueueCounters(readQueueCounters(shm)!)
  }\n}\n`;
  const j = JSON.parse(text);
  assert.deepEqual(j.fwmarks, [{ fwmark: 101, packets: 1, bytes: 100 }]);
  assert.equal(j.queues[0].accepted, 1);
  assert.equal(j.hsize, 500);
});

Deno.test("deciders count their drop reasons: invalid, no target, no flow", () => {
  const table = initTable(new ArrayBuffer(tableSize(97, 4)), 97, 4, 0);
  const counts = new Float64Array(16);
  const lb = new LbDecider({ table, counts });
  const udp = new Uint8Array(28);
  udp.set([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2, 0, 8]);
  assert.equal(lb.decide(new Uint8Array(4), 0, 4, 0x0800), -1);
  assert.equal(lb.decide(udp, 0, 28, 0x0800), -1); // no active target
  activate(table, [100]);
  assert.equal(lb.decide(udp, 0, 28, 0x0800), 100);
  assert.deepEqual([counts[C_INVALID], counts[C_NO_TARGET]], [1, 1]);
  const fcounts = new Float64Array(16);
  const f = new FlowLbDecider({ counts: fcounts, nolbFwmark: 77 });
  assert.equal(f.decide(udp, 0, 28, 0x0800), 77);
  assert.equal(fcounts[C_NO_FLOW], 1);
});

Deno.test("queue counters: the bound word of each queue thread, read back by queue number and pid", () => {
  const shm = new ArrayBuffer(countersSize(3));
  const PID = 4242;
  assert.equal(readBoundQueues(new ArrayBuffer(16), PID), undefined, "no counters: unknown");
  writeCountersHeader(shm, 5, 3);
  assert.deepEqual(readBoundQueues(shm, PID), new Set());
  new QueueCounters(shm, 0).counts[C_BOUND] = PID;
  new QueueCounters(shm, 2).counts[C_BOUND] = PID;
  assert.deepEqual(readBoundQueues(shm, PID), new Set([5, 7]));
  new QueueCounters(shm, 0).counts[C_BOUND] = 0;
  assert.deepEqual(readBoundQueues(shm, PID), new Set([7]));
  // A word of another process (a daemon that died, or another sharing the object) is not ours.
  new QueueCounters(shm, 1).counts[C_BOUND] = 99;
  assert.deepEqual(readBoundQueues(shm, PID), new Set([7]));
  assert.deepEqual(readBoundQueues(shm, 99), new Set([6]));
});
