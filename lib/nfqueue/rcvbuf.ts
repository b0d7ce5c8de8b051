/**
 * The receive-buffer rule of a queue socket and the daemon's start-up line
 * that reports it (docs/COMPATIBILITY.md#nfqueue): pure arithmetic and
 * formatting.
 *
 * @example
 * ```ts
 * import { requestedRcvbuf, startupLine } from "./rcvbuf.ts";
 * const requested = requestedRcvbuf(1024, 1500); // 765952
 * startupLine(1024, 1500, { actual: 1531904, requested });
 * // "queue_length=1024, mtu=1500, SO_RCVBUF=1531904 (765952)"
 * ```
 * @module
 */

/** SO_RCVBUF as applied when a queue is opened. */
export interface RcvbufInfo {
  /** Value read back after setting (Linux doubles it and caps it at rmem_max). */
  actual: number;
  /** floor(qlength * mtu / 2) in u32, rounded down to a multiple of 4096. */
  requested: number;
}

/**
 * `floor(qlength * mtu / 2)` in u32 arithmetic, rounded down to a multiple
 * of 4096: the SO_RCVBUF to ask for, set only if larger than the current one.
 */
export function requestedRcvbuf(qlength: number, mtu: number): number {
  const product = Number((BigInt(qlength >>> 0) * BigInt(mtu >>> 0)) & 0xffffffffn);
  return (Math.floor(product / 2) & ~4095) >>> 0;
}

/** The daemon's start-up line for a queue: `queue_length=…, mtu=…, SO_RCVBUF=actual (requested)`. */
export function startupLine(qlength: number, mtu: number, rcvbuf: RcvbufInfo): string {
  return `queue_length=${qlength >>> 0}, mtu=${mtu >>> 0}, SO_RCVBUF=${rcvbuf.actual >>> 0} (${
    rcvbuf.requested >>> 0
  })`;
}
