/**
 * The kernel's own figures for each queue: `/proc/net/netfilter/nfnetlink_queue`
 * of the reading process's network namespace, one line per bound queue:
 * `queue_number peer_portid queue_total copy_mode copy_range queue_dropped
 * user_dropped id_sequence 1`.
 *
 * @example
 * ```ts
 * import { parseNfqueueProc } from "./proc.ts";
 * parseNfqueueProc("    0  12345     3 2  1500     7     1    42 1\n").get(0);
 * // { portId: 12345, waiting: 3, queueDropped: 7, userDropped: 1, idSequence: 42 }
 * ```
 * @module
 */

/** One queue's line. */
export interface KernelQueueStats {
  /** Netlink port id of the socket bound to the queue. */
  portId: number;
  /** Packets waiting for a verdict now. */
  waiting: number;
  /** Packets dropped because the queue was full (`--qlength`). */
  queueDropped: number;
  /** Packets dropped because the reader's socket buffer was full. */
  userDropped: number;
  /** Id of the last packet queued (packets queued since the queue was bound). */
  idSequence: number;
}

/** Queue number → its figures; lines that are not nine numbers are skipped. */
export function parseNfqueueProc(text: string): Map<number, KernelQueueStats> {
  const out = new Map<number, KernelQueueStats>();
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8 || !f.every((x) => /^\d+$/.test(x))) continue;
    const n = f.map(Number);
    out.set(n[0], {
      portId: n[1],
      waiting: n[2],
      queueDropped: n[5],
      userDropped: n[6],
      idSequence: n[7],
    });
  }
  return out;
}
