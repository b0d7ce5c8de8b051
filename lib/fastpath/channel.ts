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
/** Bytes of the channel. */
export const CHANNEL_BYTES = 16;
