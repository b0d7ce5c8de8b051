/**
 * The one receive → decide → verdict loop of a queue thread
 * (docs/ARCHITECTURE.md): used by the daemons' queue workers and by the
 * test fixture `testkit/fixtures/queue_reader.ts`.
 *
 * Per batch: receive (blocking up to the queue's receive timeout), call the
 * batch hook, then decide every packet in place and send all verdicts with
 * one `sendmsg`. The hook runs after the receive, so a batch is decided
 * with the newest state the hook installs (e.g. a flow set); it runs also
 * after an empty receive, so such state is installed while idle too.
 * Nothing on the per-packet path allocates.
 *
 * @example
 * ```ts ignore
 * import { NfQueue } from "../ffi/nfqueue.ts";
 * import { runPacketLoop } from "./packet_loop.ts";
 * const q = NfQueue.open({ queue: 0, mtu: 1500, qlength: 1024 });
 * const stop = new Int32Array(new SharedArrayBuffer(4));
 * const packets = await runPacketLoop(q, { decide: () => 100 }, stop);
 * q.close();
 * ```
 * @module
 */
import type { Decider } from "../lib/decide/decider.ts";

/** The queue operations the loop uses (implemented by `NfQueue`). */
export interface PacketQueue {
  /** The receive buffer the payload offsets index. */
  readonly buffer: Uint8Array;
  /** Receive one batch; the number of packets (0: none this time). */
  receiveBatch(): number;
  payloadOffset(i: number): number;
  payloadLength(i: number): number;
  l3proto(i: number): number;
  /** Queue the verdict value for packet `i` (in receive order). */
  verdict(i: number, v: number): void;
  /** Send the queued verdicts. */
  flush(): void;
}

/**
 * Called once per batch after the receive and before the batch is decided,
 * with the batch's packet count (may be 0). A returned promise is awaited
 * before the batch is decided; return nothing to stay synchronous.
 */
export type BatchHook = (packets: number) => void | Promise<void>;

/** Monotonic time in nanoseconds (read once per batch). */
function nowNs(): number {
  return Math.round(performance.now() * 1e6);
}

/**
 * Serve `q` with `decider` until `stop[0]` becomes non-zero (checked
 * between batches, so at least every receive timeout). Returns the number
 * of packets decided. If the decider throws, the verdicts decided so far
 * in that batch are sent and the error propagates (as it does from the
 * hook or the queue).
 */
export async function runPacketLoop(
  q: PacketQueue,
  decider: Decider,
  stop: Int32Array,
  hook?: BatchHook,
): Promise<number> {
  const buf = q.buffer;
  let packets = 0;
  while (Atomics.load(stop, 0) === 0) {
    const n = q.receiveBatch();
    if (hook !== undefined) {
      const p = hook(n);
      if (p !== undefined) await p;
    }
    if (n === 0) continue;
    const now = nowNs();
    try {
      for (let i = 0; i < n; i++) {
        q.verdict(
          i,
          decider.decide(buf, q.payloadOffset(i), q.payloadLength(i), q.l3proto(i), now),
        );
      }
    } finally {
      q.flush();
    }
    packets += n;
  }
  return packets;
}
