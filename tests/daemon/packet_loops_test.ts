/**
 * daemon/packet_loops.ts: one thread serving several queues over fake kernels (no root). Each
 * queue's packets get their verdicts from its own decider; every queue's hook runs every round,
 * also for a queue with nothing to receive; an idle set waits in `poll` for the receive timeout;
 * a decider's error names its lane, after the batch's verdicts were sent.
 */
import assert from "node:assert/strict";
import { LaneError, type LoopLane, runPacketLoops } from "../../daemon/packet_loops.ts";
import type { NfQueue } from "../../ffi/nfqueue.ts";
import { attach, type Kernel, packets, verdicts } from "../../testkit/fake_kernel.ts";

/** Two queues over fake kernels; closed by `close`. */
async function twoQueues(): Promise<{ k: Kernel[]; q: NfQueue[]; close(): void }> {
  const a = await attach();
  const b = await attach();
  assert.ok(a.q !== undefined && b.q !== undefined);
  const q = [a.q, b.q];
  const k = [a.k, b.k];
  return {
    k,
    q,
    close: () => {
      q.forEach((x) => x.close());
      k.forEach((x) => x.close());
    },
  };
}

Deno.test("each queue's packets get its decider's verdicts; idle queues' hooks run too", async () => {
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const { k, q, close } = await twoQueues();
  try {
    k[0].write(packets(1, 2));
    k[1].write(packets(7), packets(8, 9));
    const hooks: number[][] = [[], []];
    let decided = 0;
    /** Hooks that ran, per queue, with nothing received after every packet was decided. */
    const idle = [0, 0];
    const lane = (i: number, mark: number): LoopLane => ({
      q: q[i],
      decider: { decide: () => mark },
      options: {
        hook: (n) => {
          hooks[i].push(n);
          decided += n;
          if (decided === 5 && n === 0) idle[i]++;
          // Once every hook has run with nothing received (rounds that waited in poll).
          if (idle[0] > 0 && idle[1] > 0) Atomics.store(stop, 0, 1);
        },
      },
    });
    const n = await runPacketLoops([lane(0, 100), lane(1, 200)], stop, 20);
    assert.deepEqual(n, [2, 3]);
    assert.deepEqual(k[0].read().map(verdicts), [[[true, 1, 2, 100]]]);
    assert.deepEqual(k[1].read().map(verdicts), [[[true, 1, 9, 200]]]);
    assert.equal(hooks[0][0], 2, "queue 0's batch");
    assert.equal(hooks[1][0], 3, "queue 1's two datagrams in one receive");
    assert.ok(hooks[0].length >= 2 && hooks[1].length >= 2, "hooks of idle queues ran");
  } finally {
    close();
  }
});

Deno.test("an idle set waits in poll up to the timeout, then runs every hook", async () => {
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const { q, close } = await twoQueues();
  try {
    const rounds = [0, 0];
    const lane = (i: number): LoopLane => ({
      q: q[i],
      decider: { decide: () => 1 },
      options: {
        hook: (n) => {
          assert.equal(n, 0);
          if (++rounds[i] === 4) Atomics.store(stop, 0, 1);
        },
      },
    });
    const t0 = performance.now();
    assert.deepEqual(await runPacketLoops([lane(0), lane(1)], stop, 30), [0, 0]);
    const ms = performance.now() - t0;
    assert.deepEqual(rounds, [4, 4]);
    assert.ok(ms >= 80, `three waits of 30 ms, took ${ms.toFixed(0)} ms`);
  } finally {
    close();
  }
});

Deno.test("a decider's error names its lane; the verdicts decided before it are sent", async () => {
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const { k, q, close } = await twoQueues();
  try {
    k[1].write(packets(3, 4));
    let calls = 0;
    const lanes: LoopLane[] = [
      { q: q[0], decider: { decide: () => 1 }, options: {} },
      {
        q: q[1],
        decider: {
          decide: () => {
            if (++calls === 2) throw new Error("boom");
            return 5;
          },
        },
        options: {},
      },
    ];
    await assert.rejects(runPacketLoops(lanes, stop, 20), (e: unknown) => {
      assert.ok(e instanceof LaneError);
      assert.equal(e.lane, 1);
      assert.equal(e.message, "boom");
      return true;
    });
    assert.deepEqual(k[1].read().map(verdicts), [[[false, 1, 3, 5]]], "packet 3's verdict");
  } finally {
    close();
  }
});
