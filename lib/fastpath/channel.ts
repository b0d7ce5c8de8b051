/**
 * The words the queue threads, the fast-path writer and the control thread
 * share (one small SharedArrayBuffer, docs/FASTPATH.md):
 * - {@link FP_EPOCH}: bumped by the writer before every side switch; a queue
 *   thread reads it before a batch and tags its offers with it.
 * - {@link FP_EVENTS}: bumped by a queue thread when its decisions change
 *   (new flows or trace flows installed, a table swapped): the writer switches.
 * - {@link FP_FLOWS_FLUSHED}, {@link FP_TRACES_FLUSHED}: the flow and
 *   trace-flow versions every queue thread had applied when the writer last
 *   switched (flowlb's control thread answers a change once they reach it).
 * - {@link FP_SLEEP}: the writer's sleep word, the doorbell of the queue threads
 *   ({@link ringWriter}).
 *
 * ## The writer's sleep (who writes which word, in which order, and why that is safe)
 *
 * The writer sleeps only when no element can be live in the maps in use (docs/FASTPATH.md: a
 * table change then cannot leave a stale mark, so it needs no scan every 5 ms).
 * 1. Writer: `FP_SLEEP` ← 1 (seq-cst), then it looks once more at every offer ring's tail and
 *    at `FP_EVENTS`; if something is there it goes on without sleeping, else it waits with
 *    `Atomics.wait(FP_SLEEP, 1)`.
 * 2. Queue thread: publishes its offers (`Atomics.store` of the ring's tail) or bumps
 *    `FP_EVENTS`, *then* calls {@link ringWriter}: it loads `FP_SLEEP`, and only if it is 1
 *    swaps it to 2 (`compareExchange`) and notifies. One load per batch with offers; the swap
 *    and the notify once per sleep of the writer.
 * 3. Writer, woken (or its timeout passed): `FP_SLEEP` ← 0, then it scans before it adds.
 *
 * Both sides write their own word before they read the other's, all seq-cst: either the writer
 * sees the offer in step 1, or the queue thread sees 1 in step 2 and rings. A ring between the
 * writer's check and its wait is not lost: it changed the word to 2, and `Atomics.wait` on a
 * word that is not 1 returns at once.
 *
 * @example
 * ```ts
 * import { CHANNEL_BYTES, FP_EPOCH } from "./channel.ts";
 * const words = new Int32Array(new SharedArrayBuffer(CHANNEL_BYTES));
 * Atomics.load(words, FP_EPOCH); // 0
 * ```
 * @module
 */

/** Epoch of the offers the writer accepts. */
export const FP_EPOCH = 0;
/** Changes of the queue threads' decisions. */
export const FP_EVENTS = 1;
/** Flow version all queue threads had at the last flush. */
export const FP_FLOWS_FLUSHED = 2;
/** Trace-flow version all queue threads had at the last flush. */
export const FP_TRACES_FLUSHED = 3;
/** The writer's sleep word: 0 awake, 1 asleep, 2 woken (see the module doc). */
export const FP_SLEEP = 4;
/** Bytes of the channel. */
export const CHANNEL_BYTES = 20;

/**
 * After publishing offers or bumping {@link FP_EVENTS}: wake the writer if it sleeps (one atomic
 * load when it does not).
 */
export function ringWriter(channel: Int32Array): void {
  if (
    Atomics.load(channel, FP_SLEEP) === 1 && Atomics.compareExchange(channel, FP_SLEEP, 1, 2) === 1
  ) {
    Atomics.notify(channel, FP_SLEEP);
  }
}
