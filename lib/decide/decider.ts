/**
 * The one contract between the packet loop and a decision procedure: a
 * packet's bytes in, a verdict value out (≥ 0: ACCEPT with that fwmark,
 * < 0: DROP). `lb` ({@link ../decide/lb.ts}) and `flowlb`
 * ({@link ../decide/flowlb.ts}) implement it; the packet loop knows nothing
 * else about them.
 *
 * @example
 * ```ts
 * import type { Decider } from "./decider.ts";
 * const acceptAll: Decider = { decide: () => 100 };
 * acceptAll.decide(new Uint8Array(20), 0, 20, 0x0800, 0); // 100
 * ```
 * @module
 */

/** A per-packet decision procedure. Implementations allocate nothing per packet. */
export interface Decider {
  /**
   * The verdict value for the packet at `buf[off, off + len)` (parsed in
   * place, starting at the IP header) with L3 protocol `l3proto` (0x0800
   * IPv4, 0x86DD IPv6); `now` is a monotonic time in nanoseconds, read once
   * per batch (fragment timeouts).
   */
  decide(buf: Uint8Array, off: number, len: number, l3proto: number, now: number): number;
}
