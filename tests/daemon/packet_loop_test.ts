/**
 * daemon/packet_loop.ts with a scripted queue: hook order (after the
 * receive, before the decisions, also for empty receives), promises awaited,
 * one clock reading per batch, verdicts in order, one flush per batch, the
 * stop flag, and errors; with a real queue over a fake kernel, transient receive and send errors
 * retried and counted, fatal ones stopping the loop.
 */
import assert from "node:assert/strict";
import { clockSince, type PacketQueue, runPacketLoop } from "../../daemon/packet_loop.ts";
import type { Decider } from "../../lib/decide/decider.ts";
import { EAGAIN, EBADF, EINTR, ENOBUFS, ENOMEM } from "../../ffi/constants.ts";
import { LibcError, strerror } from "../../ffi/libc.ts";
import { NfQueueError } from "../../ffi/nfqueue.ts";
import { attach, OPTS, packets, verdicts } from "../../testkit/fake_kernel.ts";
import { failCalls } from "../../testkit/failing_libc.ts";
import {
  countersSize,
  QueueCounters,
  readSendStuck,
  type SendStuck,
  writeCountersHeader,
} from "../../lib/counters/queue_counters.ts";
import { sendDone, transientErrors } from "../../daemon/transient_errors.ts";

/** A queue that returns scripted batches of packet lengths, then sets `stop`. */
class ScriptedQueue implements PacketQueue {
  readonly buffer = new Uint8Array(64);
  readonly events: string[] = [];
  readonly verdicts: [number, number][] = [];
  private batch: number[] = [];
  private next = 0;
  constructor(private readonly batches: number[][], private readonly stop: Int32Array) {}

  receiveBatch(): number {
    this.batch = this.batches[this.next++] ?? [];
    if (this.next >= this.batches.length) Atomics.store(this.stop, 0, 1);
    this.events.push(`receive ${this.batch.length}`);
    return this.batch.length;
  }
  payloadOffset(i: number): number {
    return 8 * i;
  }
  payloadLength(i: number): number {
    return this.batch[i];
  }
  l3proto(_i: number): number {
    return 0x0800;
  }
  /** Lengths above 40 stand for packets the kernel truncated at a copy range of 40. */
  capLen(i: number): number {
    return this.batch[i] > 40 ? this.batch[i] : 0;
  }
  verdict(i: number, v: number): void {
    this.verdicts.push([i, v]);
  }
  flush(): void {
    this.events.push("flush");
  }
}

/** Verdict = packet length + `bias`; records what it was given. */
class LengthDecider implements Decider {
  bias = 0;
  readonly seen: { off: number; len: number; l3: number; now: number; bias: number }[] = [];
  constructor(private readonly events: string[]) {}
  decide(buf: Uint8Array, off: number, len: number, l3proto: number, now: number): number {
    assert.equal(buf.length, 64, "the queue's buffer");
    this.seen.push({ off, len, l3: l3proto, now, bias: this.bias });
    this.events.push(`decide ${len}`);
    return len + this.bias;
  }
}

Deno.test("hook after every receive, before the batch; verdicts in order; one flush per batch", async () => {
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const q = new ScriptedQueue([[10, 11], [], [12]], stop);
  const d = new LengthDecider(q.events);
  const n = await runPacketLoop(q, d, stop, {
    hook: (packets) => {
      q.events.push(`hook ${packets}`);
    },
  });
  assert.equal(n, 3);
  assert.deepEqual(q.events, [
    "receive 2",
    "hook 2",
    "decide 10",
    "decide 11",
    "flush",
    "receive 0",
    "hook 0",
    "receive 1",
    "hook 1",
    "decide 12",
    "flush",
  ]);
  assert.deepEqual(q.verdicts, [[0, 10], [1, 11], [0, 12]]);
  assert.deepEqual(d.seen.map((s) => [s.off, s.len, s.l3]), [[0, 10, 0x0800], [8, 11, 0x0800], [
    0,
    12,
    0x0800,
  ]]);
});

Deno.test("one clock reading per batch, in nanoseconds", async () => {
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const q = new ScriptedQueue([[1, 2, 3], [4]], stop);
  const d = new LengthDecider(q.events);
  const before = performance.now() * 1e6;
  await runPacketLoop(q, d, stop);
  const after = performance.now() * 1e6;
  const nows = d.seen.map((s) => s.now);
  assert.ok(nows[0] === nows[1] && nows[1] === nows[2], "one value for the whole batch");
  for (const t of nows) assert.ok(t >= before - 1 && t <= after + 1 && Number.isInteger(t));
});

Deno.test("a promise from the hook is awaited before the batch is decided", async () => {
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const q = new ScriptedQueue([[5], [6], [7]], stop);
  const d = new LengthDecider(q.events);
  let batch = 0;
  await runPacketLoop(q, d, stop, {
    hook: () => {
      // Batch 2: an asynchronous swap (as flowlb installs a flow set); the others stay sync.
      if (++batch !== 2) return;
      return new Promise<void>((r) =>
        setTimeout(() => {
          d.bias = 100;
          r();
        }, 5)
      );
    },
  });
  assert.deepEqual(q.verdicts, [[0, 5], [0, 106], [0, 107]]);
});

Deno.test("stops when the flag is set before a receive", async () => {
  const stop = new Int32Array(new SharedArrayBuffer(4));
  Atomics.store(stop, 0, 1);
  const q = new ScriptedQueue([[1]], stop);
  assert.equal(await runPacketLoop(q, new LengthDecider(q.events), stop), 0);
  assert.deepEqual(q.events, []);
});

Deno.test("a throwing decider: the verdicts decided so far are sent, the error propagates", async () => {
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const q = new ScriptedQueue([[1, 2, 3], [4]], stop);
  const d: Decider = {
    decide(_b, _o, len) {
      if (len === 3) throw new Error("boom");
      return len;
    },
  };
  await assert.rejects(runPacketLoop(q, d, stop), /boom/);
  assert.deepEqual(q.verdicts, [[0, 1], [1, 2]]);
  assert.deepEqual(q.events, ["receive 3", "flush"]);
});

Deno.test("packets longer than the copy range are counted and reported once per batch", async () => {
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const q = new ScriptedQueue([[10, 41, 50], [12], [], [45]], stop);
  const d = new LengthDecider(q.events);
  const reports: number[] = [];
  await runPacketLoop(q, d, stop, {
    truncated: (n) => {
      reports.push(n);
      q.events.push(`truncated ${n}`);
    },
  });
  assert.deepEqual(reports, [2, 1]);
  // Reported after the batch's verdicts went out; every packet is still decided.
  assert.deepEqual(q.events.slice(0, 6), [
    "receive 3",
    "decide 10",
    "decide 41",
    "decide 50",
    "flush",
    "truncated 2",
  ]);
  assert.equal(d.seen.length, 5);
});

Deno.test("clockSince: nanoseconds from another origin; the loop passes its clock's time", async () => {
  const earlier = clockSince(performance.timeOrigin - 1000);
  const own = clockSince(performance.timeOrigin);
  const d1 = earlier() - own();
  assert.ok(Math.abs(d1 - 1e9) < 5e6, `1 s apart, got ${d1} ns`);
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const q = new ScriptedQueue([[10]], stop);
  const d = new LengthDecider(q.events);
  await runPacketLoop(q, d, stop, { clock: () => 42 });
  assert.equal(d.seen[0].now, 42);
});

// Transient errors on the packet path (issue 18, item 10): a real NfQueue over a socketpair whose
// other end plays the kernel (testkit/fake_kernel.ts), with recvmmsg/sendmsg made to fail
// (testkit/failing_libc.ts).

/** A decider that accepts every packet with mark 101. */
const ACCEPT_101: Decider = { decide: () => 101 };

/** Run the loop on `q` until a batch with packets was decided. */
function loopUntilPackets(q: PacketQueue, stop: Int32Array): Promise<number> {
  return runPacketLoop(q, ACCEPT_101, stop, {
    hook: (n) => {
      if (n > 0) Atomics.store(stop, 0, 1);
    },
  });
}

Deno.test("transient receive errors (EINTR, ENOMEM, ENOBUFS): counted, reported, the loop goes on", async () => {
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const seen: string[] = [];
  const { k, q } = await attach(undefined, {
    stop,
    onTransientError: (call, e) => seen.push(`${call} ${e}`),
  });
  assert.ok(q !== undefined);
  const restore = failCalls("recvmmsg", [EINTR, ENOMEM, ENOBUFS]);
  try {
    k.write(packets(1, 2, 3));
    assert.equal(await loopUntilPackets(q, stop), 3);
    assert.deepEqual(k.read().map(verdicts), [[[true, 1, 3, 101]]], "every packet got its verdict");
    assert.equal(q.stats.receiveErrors, 2, "EINTR and ENOMEM");
    assert.equal(q.stats.enobufs, 1, "the overrun");
    assert.deepEqual(seen, [`recvmmsg ${EINTR}`, `recvmmsg ${ENOMEM}`, `recvmmsg ${ENOBUFS}`]);
  } finally {
    restore();
    q.close();
    k.close();
  }
});

Deno.test("transient send errors (ENOBUFS, ENOMEM, EINTR, EAGAIN): retried until the verdicts go out", async () => {
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const seen: string[] = [];
  // The loop's flag is set before the batch is decided: the queue must not give up on it.
  const { k, q } = await attach(undefined, {
    onTransientError: (call, e) => seen.push(`${call} ${e}`),
    onSendDone: () => seen.push("sent"),
  });
  assert.ok(q !== undefined);
  const restore = failCalls("sendmsg", [ENOBUFS, ENOMEM, EINTR, EAGAIN]);
  try {
    k.write(packets(1, 2));
    assert.equal(await loopUntilPackets(q, stop), 2);
    assert.deepEqual(k.read().map(verdicts), [[[true, 1, 2, 101]]], "sent once, after the retries");
    assert.equal(q.stats.sendErrors, 4);
    assert.equal(q.stats.sends, 1);
    assert.deepEqual(seen, [
      ...[ENOBUFS, ENOMEM, EINTR, EAGAIN].map((e) => `sendmsg ${e}`),
      "sent",
    ]);
  } finally {
    restore();
    q.close();
    k.close();
  }
});

Deno.test("a send that keeps failing is given up when the stop flag is set; the loop ends", async () => {
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const { k, q } = await attach(undefined, { stop });
  assert.ok(q !== undefined);
  // ENOMEM forever; the 5th attempt asks the daemon to stop (as SIGTERM would).
  const restore = failCalls("sendmsg", () => ENOMEM, (c) => {
    if (c === 4) Atomics.store(stop, 0, 1);
  });
  try {
    k.write(packets(1));
    assert.equal(await runPacketLoop(q, ACCEPT_101, stop), 1);
    assert.equal(q.stats.sendErrors, 5);
    assert.equal(q.stats.sendsAbandoned, 1);
    assert.deepEqual(k.read(), [], "nothing was sent");
  } finally {
    restore();
    q.close();
    k.close();
  }
});

Deno.test("a send that keeps failing is fatal after the retry limit: the errno and how long", async () => {
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const { k, q } = await attach(undefined, { stop, sendRetryLimitMs: 50 });
  assert.ok(q !== undefined);
  // ENOMEM for ever. Without a limit the loop would retry until stopped: stop it after 20 s so
  // that such a queue fails this test instead of hanging it.
  const t0 = Date.now();
  const restore = failCalls("sendmsg", () => ENOMEM, () => {
    if (Date.now() - t0 > 20_000) Atomics.store(stop, 0, 1);
  });
  try {
    k.write(packets(1));
    await assert.rejects(runPacketLoop(q, ACCEPT_101, stop), (e: unknown) => {
      assert.ok(e instanceof NfQueueError, String(e));
      assert.equal(e.errno, ENOMEM);
      assert.match(
        e.message,
        new RegExp(
          `^queue ${OPTS.queue}: sendmsg: ${strerror(ENOMEM)}: verdicts not sent for \\d+ ms ` +
            "\\(\\d+ attempts\\); giving up: the daemon stops$",
        ),
      );
      const ms = Number(/for (\d+) ms/.exec(e.message)![1]);
      assert.ok(ms >= 50, `retried for the limit at least, got ${ms} ms`);
      return true;
    });
    assert.equal(Atomics.load(stop, 0), 0, "it gave up by itself");
    assert.equal(q.stats.sendsAbandoned, 1);
    assert.ok(q.stats.sendErrors >= 2);
    assert.deepEqual(k.read(), [], "nothing was sent");
  } finally {
    restore();
    q.close();
    k.close();
  }
});

Deno.test("while a send fails, the queue's block says since when and why; cleared once sent", async () => {
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const shm = new ArrayBuffer(countersSize(1));
  writeCountersHeader(shm, OPTS.queue, 1);
  const counts = new QueueCounters(shm, 0).counts;
  const trace = { mask: 0, level: 0, line: () => {} };
  // Not given the loop's flag: it is set before the batch is decided (loopUntilPackets).
  const { k, q } = await attach(undefined, {
    // What the queue thread gives its queue (daemon/queue_worker.ts).
    onTransientError: transientErrors(OPTS.queue, trace, () => counts),
    onSendDone: sendDone(() => counts),
  });
  assert.ok(q !== undefined);
  const during: SendStuck[][] = [];
  const before = Date.now();
  // Two failures; the block is read before the second and the third (successful) attempt.
  const restore = failCalls("sendmsg", [ENOBUFS, ENOMEM], (c) => {
    if (c > 0) during.push(readSendStuck(shm));
  });
  try {
    assert.deepEqual(readSendStuck(shm), []);
    k.write(packets(1));
    assert.equal(await loopUntilPackets(q, stop), 1);
    assert.equal(during.length, 2);
    const [first, second] = during;
    assert.equal(first.length, 1);
    assert.equal(first[0].queue, OPTS.queue);
    assert.equal(first[0].errno, ENOBUFS);
    assert.ok(first[0].sinceMs >= before && first[0].sinceMs <= Date.now());
    assert.deepEqual(second, [{ ...first[0], errno: ENOMEM }], "since the first failure");
    assert.deepEqual(readSendStuck(shm), [], "sent: no longer stuck");
    assert.deepEqual(k.read().map(verdicts), [[[false, 1, 1, 101]]]);
  } finally {
    restore();
    q.close();
    k.close();
  }
});

Deno.test("EBADF from recvmmsg or sendmsg still stops the loop", async () => {
  for (const call of ["recvmmsg", "sendmsg"] as const) {
    const stop = new Int32Array(new SharedArrayBuffer(4));
    const { k, q } = await attach(undefined, { stop });
    assert.ok(q !== undefined);
    const restore = failCalls(call, [EBADF]);
    try {
      k.write(packets(1));
      await assert.rejects(
        runPacketLoop(q, ACCEPT_101, stop),
        (e: unknown) => e instanceof LibcError && e.errno === EBADF && e.call === call,
        call,
      );
    } finally {
      restore();
      q.close();
      k.close();
    }
  }
});
