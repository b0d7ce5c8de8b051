/**
 * lib/nfqueue/verdict_runs.ts: the verdict messages written for patterns of
 * verdicts, decoded from the bytes (type, verdict, id, mark), including the
 * flush of a full buffer in the middle of a run.
 */
import assert from "node:assert/strict";
import {
  HOST_LE,
  NF_ACCEPT,
  NF_DROP,
  NFQ_TYPE_VERDICT,
  NFQ_TYPE_VERDICT_BATCH,
  VerdictBuffer,
} from "../../../lib/nfqueue/codec.ts";
import { type VerdictCounters, VerdictRuns } from "../../../lib/nfqueue/verdict_runs.ts";

/** One decoded verdict message: batch or single, verdict, id, mark (−1: none). */
interface Msg {
  batch: boolean;
  verdict: number;
  id: number;
  mark: number;
}

/** Decode every verdict message of one datagram. */
function decode(bytes: Uint8Array): Msg[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Msg[] = [];
  let off = 0;
  while (off < bytes.length) {
    const len = v.getUint32(off, HOST_LE);
    const type = v.getUint16(off + 4, HOST_LE);
    assert.ok(type === NFQ_TYPE_VERDICT || type === NFQ_TYPE_VERDICT_BATCH, `type ${type}`);
    assert.ok(len === 32 || len === 40, `length ${len}`);
    out.push({
      batch: type === NFQ_TYPE_VERDICT_BATCH,
      verdict: v.getUint32(off + 24, false),
      id: v.getUint32(off + 28, false),
      mark: len === 40 ? v.getUint32(off + 36, false) : -1,
    });
    off += len;
  }
  return out;
}

const accept = (id: number, mark: number, batch = false): Msg => ({
  batch,
  verdict: NF_ACCEPT,
  id,
  mark,
});
const drop = (id: number, batch = false): Msg => ({ batch, verdict: NF_DROP, id, mark: -1 });

/** Run verdict values `vs` for ids first, first + 1, ...; returns the datagrams sent. */
function run(vs: number[], opts: { coalesce?: boolean; size?: number; first?: number } = {}) {
  const tx = new VerdictBuffer(opts.size ?? 4096, 3);
  const counters: VerdictCounters = { verdicts: 0, verdictMessages: 0, batchVerdicts: 0 };
  const sent: Msg[][] = [];
  const send = () => {
    sent.push(decode(tx.bytes.subarray(0, tx.length)));
    tx.clear();
  };
  const runs = new VerdictRuns(tx, opts.coalesce ?? true, counters, send);
  vs.forEach((v, k) => runs.add((opts.first ?? 1) + k, v));
  runs.finish();
  send();
  return { sent, counters, all: sent.flat() };
}

Deno.test("one run of equal verdicts: one batch verdict for the last id", () => {
  const { all, counters } = run([7, 7, 7, 7, 7]);
  assert.deepEqual(all, [accept(5, 7, true)]);
  assert.deepEqual(counters, { verdicts: 5, verdictMessages: 1, batchVerdicts: 1 });
});

Deno.test("a single packet gets a plain verdict", () => {
  assert.deepEqual(run([0]).all, [accept(1, 0)]);
  assert.deepEqual(run([-1]).all, [drop(1)]);
});

Deno.test("alternating verdicts: one plain verdict per packet", () => {
  const { all, counters } = run([1, 2, 1, 2]);
  assert.deepEqual(all, [accept(1, 1), accept(2, 2), accept(3, 1), accept(4, 2)]);
  assert.deepEqual(counters, { verdicts: 4, verdictMessages: 4, batchVerdicts: 0 });
});

Deno.test("mixed runs: marks, mark 0 and drop are different verdicts; any v < 0 is drop", () => {
  const { all, counters } = run([5, 5, 6, 5, 5, 5, 0, 0, -1, -7, -1, 5], { first: 100 });
  assert.deepEqual(all, [
    accept(101, 5, true),
    accept(102, 6),
    accept(105, 5, true),
    accept(107, 0, true),
    drop(110, true),
    accept(111, 5),
  ]);
  assert.deepEqual(counters, { verdicts: 12, verdictMessages: 6, batchVerdicts: 4 });
});

Deno.test("without coalescing every packet has its own plain verdict", () => {
  const { all, counters } = run([5, 5, -1, -1], { coalesce: false });
  assert.deepEqual(all, [accept(1, 5), accept(2, 5), drop(3), drop(4)]);
  assert.deepEqual(counters, { verdicts: 4, verdictMessages: 4, batchVerdicts: 0 });
});

Deno.test("nothing added: nothing written", () => {
  const { all, counters } = run([]);
  assert.deepEqual(all, []);
  assert.deepEqual(counters, { verdicts: 0, verdictMessages: 0, batchVerdicts: 0 });
});

Deno.test("a full buffer is sent before the next message; runs are never split", () => {
  // 100 bytes: full once more than 60 are used, i.e. after two messages with a mark.
  const vs = [1, 2, 2, 2, 3, 4, 4, 5, -1];
  const { sent, all, counters } = run(vs, { size: 100 });
  const expected = [
    accept(1, 1),
    accept(4, 2, true),
    accept(5, 3),
    accept(7, 4, true),
    accept(8, 5),
    drop(9),
  ];
  assert.deepEqual(all, expected, "the same messages as with a large buffer");
  assert.deepEqual(run(vs).all, expected);
  assert.deepEqual(sent.map((d) => d.length), [2, 2, 2], "sent when full, the rest at the end");
  assert.deepEqual(counters, { verdicts: 9, verdictMessages: 6, batchVerdicts: 2 });
});

Deno.test("many runs through a small buffer: ids in order, every packet covered once", () => {
  const vs = Array.from({ length: 500 }, (_, k) => (k % 10 < 6 ? 9 : k % 10 < 9 ? 10 : -1));
  const { sent, all } = run(vs, { size: 200 });
  assert.ok(sent.length > 1);
  assert.ok(sent.every((d) => d.length <= 5), "no datagram beyond the buffer");
  assert.equal(all.length, 150, "three messages per ten packets");
  let prev = 0;
  for (const m of all) {
    assert.ok(m.id > prev);
    // Every id up to m.id gets m's verdict: the run covers exactly (prev, m.id].
    for (let id = prev + 1; id <= m.id; id++) {
      const v = vs[id - 1];
      assert.deepEqual(v < 0 ? [NF_DROP, -1] : [NF_ACCEPT, v], [m.verdict, m.mark]);
    }
    assert.equal(m.batch, m.id - prev > 1);
    prev = m.id;
  }
  assert.equal(prev, 500);
});
