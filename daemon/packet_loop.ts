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
 * Packets longer than the copy range are counted on the way (one compare
 * each) and reported once per batch to the `truncated` hook.
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
  /** The packet's whole length when the kernel copied only part of it (`NFQA_CAP_LEN`), else 0. */
  capLen(i: number): number;
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

/**
 * Called once after a batch that had packets longer than the copy range
 * (`--mtu`), with their number: such a packet was reassembled (or
 * aggregated) by the kernel before the queue (docs/COMPATIBILITY.md#fragments).
 */
export type TruncatedHook = (packets: number) => void;

/**
 * A monotonic clock in nanoseconds that threads of one process can compare:
 * counted from `originMs`, one thread's `performance.timeOrigin` handed to
 * all (each thread's own `performance.now()` starts at its own start). The
 * queue threads share one fragment table whose entries carry these times.
 *
 * @example
 * ```ts
 * import { clockSince } from "./packet_loop.ts";
 * const now = clockSince(performance.timeOrigin); // in a worker: the main thread's origin
 * now() >= 0; // true
 * ```
 */
export function clockSince(originMs: number): () => number {
  const offset = performance.timeOrigin - originMs;
  return () => Math.round((offset + performance.now()) * 1e6);
}

/** What a packet loop may be given besides its queue, decider and stop flag. */
export interface PacketLoopOptions {
  /** Called once per batch after the receive and before the decisions. */
  readonly hook?: BatchHook;
  /** Called after a batch that had packets longer than the copy range. */
  readonly truncated?: TruncatedHook;
  /** The time passed to the decider, read once per batch (default: this thread's own). */
  readonly clock?: () => number;
  /** Counts every packet with its verdict and length (default: nothing counted). */
  readonly counters?: PacketCounter;
  /** The fast path's offers (`--fastpath`, lib/fastpath/offload.ts); default none. */
  readonly offload?: BatchOffload;
}

/** What the loop tells the fast path (`Offload` of lib/fastpath/offload.ts). */
export interface BatchOffload {
  /** Before a batch's decisions. */
  begin(): void;
  /** After each decision: verdict value and L3 protocol. */
  packet(v: number, l3proto: number): void;
  /** After the batch. */
  end(): void;
}

/** What the loop counts each packet with (`QueueCounters` of lib/counters/queue_counters.ts). */
export interface PacketCounter {
  /** One packet of `len` bytes got verdict value `v` (≥ 0: accepted with fwmark v). */
  packet(v: number, len: number): void;
}

/** The counter of a loop that counts nothing. */
const NOT_COUNTED: PacketCounter = { packet: () => {} };

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
  options: PacketLoopOptions = {},
): Promise<number> {
  const { hook, truncated } = options;
  const counters = options.counters ?? NOT_COUNTED;
  const nowNs = options.clock ?? clockSince(performance.timeOrigin);
  const offload = options.offload;
  let packets = 0;
  while (Atomics.load(stop, 0) === 0) {
    const n = q.receiveBatch();
    // The fast path's epoch, before anything the batch is decided with (hook: flows, trace mask).
    offload?.begin();
    if (hook !== undefined) {
      const p = hook(n);
      if (p !== undefined) await p;
    }
    if (n === 0) continue;
    const long = decideBatch(q, decider, n, nowNs(), counters, offload);
    if (long !== 0) truncated?.(long);
    packets += n;
  }
  return packets;
}

/**
 * Decide the `n` packets `q` received, in receive order, with the time `now`, count them, tell
 * the fast path, and send the verdicts (also when the decider throws: the verdicts decided so far
 * go out, then the error propagates). Returns the number of packets longer than the copy range.
 * The per-batch body of {@link runPacketLoop} and of `runPacketLoops` (./packet_loops.ts).
 */
export function decideBatch(
  q: PacketQueue,
  decider: Decider,
  n: number,
  now: number,
  counters: PacketCounter = NOT_COUNTED,
  offload?: BatchOffload,
): number {
  const buf = q.buffer;
  let long = 0;
  try {
    for (let i = 0; i < n; i++) {
      if (q.capLen(i) !== 0) long++;
      const len = q.payloadLength(i);
      const l3 = q.l3proto(i);
      const v = decider.decide(buf, q.payloadOffset(i), len, l3, now);
      q.verdict(i, v);
      counters.packet(v, len);
      if (offload !== undefined) offload.packet(v, l3);
    }
  } finally {
    q.flush();
    offload?.end();
  }
  return long;
}
