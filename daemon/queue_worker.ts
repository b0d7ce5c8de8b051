/**
 * A queue thread of `nfqlb lb` or `nfqlb flowlb`: serves one or several queues of `--queue`
 * (./threads.ts decides which), each on its own netlink socket (./queue_server.ts), until the
 * shared stop flag is set. One queue: the blocking loop of ./packet_loop.ts; several: one round
 * over all sockets with a `poll` when none has packets (./packet_loops.ts).
 *
 * Start-up: the thread binds its queues one after the other (mapping their tables first), reports
 * `bound` for each, and waits for the main thread's `go`, which comes once every queue of the
 * daemon is bound and the `ftshm` object is initialised (or with the stop flag set, when another
 * thread failed to start); only then does it map `ftshm` and count into it, and report each queue
 * `started`. A failure closes every queue of the thread (so their sockets unbind) before the
 * thread reports it.
 *
 * Flow snapshots arrive as messages (one copy per thread, kept in {@link newest}); each queue
 * compiles its own flow set from it when the main thread bumps the version (./queue_server.ts).
 *
 * Messages to the main thread: `bound` and `started` per queue (`started` with the
 * `queue_length=` line and the queue socket's netlink port id, where the main thread sends its
 * wake message), then `stopped` once for the thread, or `error` (a one-line message that names the
 * queue).
 * @module
 */
import { NfQueueError } from "../ffi/nfqueue.ts";
import { runPacketLoop } from "./packet_loop.ts";
import { LaneError, type LoopLane, runPacketLoops } from "./packet_loops.ts";
import {
  bindQueue,
  type BoundQueue,
  type NewestSnapshots,
  type QueueGroupCommon,
  type QueueLaneStart,
} from "./queue_server.ts";
import type { FlowSnapshot } from "../lib/flow/store.ts";

export type { FlowChannel } from "./queue_server.ts";

/** A snapshot message from the main thread: flows or trace flows. */
type SnapshotMessage = { type: "flows" | "traces"; snapshot: FlowSnapshot };

/** The message that starts a queue thread: what its queues share, and each queue's own part. */
export interface QueueWorkerStart extends QueueGroupCommon {
  /** The queues this thread serves, in queue order (at least one). */
  readonly queues: readonly QueueLaneStart[];
}

/**
 * The message that lets a bound worker go on (the shared objects are initialised), or stop
 * (`stop[0]` is set: another thread failed to start).
 */
export type QueueWorkerGo = { type: "go" };

/** Messages a worker sends. */
export type QueueWorkerMessage =
  | { type: "bound"; queue: number }
  | { type: "started"; queue: number; line: string; portId: number }
  | { type: "stopped"; packets: number }
  /** `message`: the whole line, naming the queue. */
  | { type: "error"; queue: number; message: string };

/** The worker global scope (typed here: this module is also type-checked with the CLI). */
const scope = self as unknown as {
  postMessage(m: QueueWorkerMessage): void;
  onmessage:
    | ((e: MessageEvent<QueueWorkerStart | SnapshotMessage | QueueWorkerGo>) => void)
    | null;
};

/** The newest snapshots received, by kind, for every queue of this thread. */
const newest: NewestSnapshots = {};

let goReceived = () => {};
/** Resolves when the main thread's `go` message has arrived. */
const goMessage = new Promise<void>((r) => goReceived = r);

/** A failure of queue `queue`, as the one-line message the main thread prints. */
class QueueFailure extends Error {
  constructor(readonly queue: number, cause: unknown) {
    // NfQueueError messages name their queue already ("queue 3 is in use by another process").
    super(
      cause instanceof NfQueueError
        ? cause.message
        : `queue ${queue}: ${cause instanceof Error ? cause.message : String(cause)}`,
    );
  }
}

/** Run `f` for queue `queue`; what it throws becomes a {@link QueueFailure} naming the queue. */
function forQueue<T>(queue: number, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw new QueueFailure(queue, e);
  }
}

async function serve(start: QueueWorkerStart): Promise<void> {
  const stop = new Int32Array(start.stop);
  const bound: BoundQueue[] = [];
  try {
    for (const l of start.queues) {
      bound.push(forQueue(l.queue, () => bindQueue(start, l, newest)));
      // The queue is ours now; the main thread initialises the ftshm object once every queue is
      // bound (a second daemon whose queue is taken stops before it touches the first's counters).
      scope.postMessage({ type: "bound", queue: l.queue });
    }
    await goMessage;
    if (Atomics.load(stop, 0) !== 0) {
      scope.postMessage({ type: "stopped", packets: 0 });
      return;
    }
    const lanes: LoopLane[] = [];
    for (const b of bound) {
      const s = forQueue(b.queue, () => b.start());
      lanes.push(s.lane);
      scope.postMessage({ type: "started", queue: b.queue, line: s.line, portId: s.portId });
    }
    let packets = 0;
    if (lanes.length === 1) {
      const { q, decider, options } = lanes[0];
      try {
        packets = await runPacketLoop(q, decider, stop, options);
      } catch (e) {
        throw new QueueFailure(bound[0].queue, e);
      }
    } else {
      try {
        for (const n of await runPacketLoops(lanes, stop)) packets += n;
      } catch (e) {
        if (e instanceof LaneError) throw new QueueFailure(bound[e.lane].queue, e.cause);
        throw e;
      }
    }
    scope.postMessage({ type: "stopped", packets });
  } finally {
    for (const b of bound.reverse()) b.close();
  }
}

scope.onmessage = (e) => {
  const m = e.data;
  if ("type" in m) {
    if (m.type === "go") {
      goReceived();
      return;
    }
    const old = newest[m.type];
    if (old === undefined || m.snapshot.version > old.version) newest[m.type] = m.snapshot;
    return;
  }
  serve(m).catch((err) => {
    const failure = err instanceof QueueFailure ? err : new QueueFailure(m.queues[0].queue, err);
    scope.postMessage({ type: "error", queue: failure.queue, message: failure.message });
  });
};
