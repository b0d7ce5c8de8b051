/**
 * The packet loop of a queue thread that serves several queue sockets (daemon/queue_worker.ts:
 * `--queue-threads=N` with fewer threads than queues). While one socket retries a failed verdict
 * send (up to 5 s) or backs off on ENOMEM, the thread's other sockets are not read (their kernel
 * queues fill: drops, or accepts with `--fail-open`); a thread per queue (the default) keeps them
 * apart. Each socket keeps the loop of `./packet_loop.ts` for one batch —
 * receive, hook, decide, one `sendmsg` of verdicts — but its receive does not wait
 * (`NfQueue.receiveNow`); the thread goes round its sockets, a batch from each, and waits only
 * when a whole round found no packet: one `poll` over all its sockets, up to the receive timeout.
 *
 * - A loaded socket costs what it costs alone (its receive, its send); an idle one next to it, one
 *   receive that finds nothing per round. No `poll` while packets come.
 * - Every socket's hook runs once per round, also when its receive found nothing, so a flow
 *   change, the trace mask and the periodic checks reach an idle socket as they do a busy one; a
 *   round ends at the latest after the receive timeout (the `poll`), as a blocking receive does.
 * - A wake message (`QueueWaker`, sent to every queue socket on a flow change and on stop) makes
 *   `poll` return: the next round runs every hook and looks at the stop flag.
 * - The stop flag is looked at before each round. Nothing allocates per round or per packet.
 * @module
 */
import type { Decider } from "../lib/decide/decider.ts";
import { POLLIN, PollSet } from "../ffi/poll.ts";
import { DEFAULT_TIMEOUT_MS } from "../ffi/nfqueue.ts";
import {
  clockSince,
  decideBatch,
  type PacketLoopOptions,
  type PacketQueue,
} from "./packet_loop.ts";

/** A queue socket one thread serves among others (implemented by `NfQueue`). */
export interface PolledQueue extends PacketQueue {
  /** The socket, for `poll`. */
  readonly fd: number;
  /** Receive what is queued now, without waiting (0: nothing). */
  receiveNow(): number;
}

/** One socket of a thread with its decider and its loop options (as `runPacketLoop` takes them). */
export interface LoopLane {
  readonly q: PolledQueue;
  readonly decider: Decider;
  readonly options: PacketLoopOptions;
}

/** An error of lane `lane` (its hook, decider or queue): `cause` is what was thrown. */
export class LaneError extends Error {
  constructor(readonly lane: number, override readonly cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause));
    this.name = "LaneError";
  }
}

/**
 * Serve every lane until `stop[0]` becomes non-zero (looked at before each round, so at least
 * every `timeoutMs`). Returns the packets decided per lane. An error of a lane is thrown as a
 * {@link LaneError} naming it, after the verdicts it decided in that batch were sent.
 */
export async function runPacketLoops(
  lanes: readonly LoopLane[],
  stop: Int32Array,
  timeoutMs = DEFAULT_TIMEOUT_MS,
): Promise<number[]> {
  const poll = new PollSet(lanes.length);
  for (const l of lanes) poll.add(l.q.fd, POLLIN);
  const clocks = lanes.map((l) => l.options.clock ?? clockSince(performance.timeOrigin));
  const packets = lanes.map(() => 0);
  while (Atomics.load(stop, 0) === 0) {
    let round = 0;
    for (let i = 0; i < lanes.length; i++) {
      const { q, decider, options } = lanes[i];
      try {
        const n = q.receiveNow();
        // As in runPacketLoop: the fast path's epoch before the hook, the hook before deciding.
        options.offload?.begin();
        if (options.hook !== undefined) {
          const p = options.hook(n);
          if (p !== undefined) await p;
        }
        if (n === 0) continue;
        const long = decideBatch(q, decider, n, clocks[i](), options.counters, options.offload);
        if (long !== 0) options.truncated?.(long);
        packets[i] += n;
        round += n;
      } catch (e) {
        throw new LaneError(i, e);
      }
    }
    if (round === 0 && Atomics.load(stop, 0) === 0) poll.wait(timeoutMs);
  }
  return packets;
}
