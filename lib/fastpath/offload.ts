/**
 * A queue thread's side of the fast path (docs/FASTPATH.md): after each
 * decision the packet loop calls {@link Offload.packet}; when the decider
 * says the decision depends on the 5-tuple alone (`cacheable`), the key and
 * the mark go into the thread's offer ring, tagged with the epoch read at
 * the start of the batch. One field test per packet when nothing is
 * offered; no allocation.
 *
 * @example
 * ```ts
 * import { Offload } from "./offload.ts";
 * import { OfferReader, OfferRing } from "./offer_ring.ts";
 * import { CHANNEL_BYTES } from "./channel.ts";
 * import { KeyParse } from "../packet/parse.ts";
 * const ring = OfferRing.create(8);
 * const decider = { cacheable: true, parse: new KeyParse() };
 * const o = new Offload(ring, new SharedArrayBuffer(CHANNEL_BYTES), decider);
 * o.begin();
 * o.packet(7, 0x0800);
 * o.end();
 * const r = new OfferReader(ring);
 * r.next() && r.mark; // 7
 * ```
 * @module
 */
import { FP_EPOCH, FP_EVENTS, ringWriter } from "./channel.ts";
import { OfferWriter } from "./offer_ring.ts";
import type { KeyParse } from "../packet/parse.ts";

/** What the offload reads of a decider after a decision. */
export interface CacheableDecider {
  readonly cacheable: boolean;
  readonly parse: KeyParse;
}

/** ETH_P_IPV6. */
const IPV6 = 0x86dd;

/** The offers of one queue thread. */
export class Offload {
  readonly #ring: OfferWriter;
  readonly #channel: Int32Array;
  readonly #decider: CacheableDecider;
  #epoch = 0;

  /** Offers into `ring`, epochs and events through `channel`, decisions of `decider`. */
  constructor(ring: SharedArrayBuffer, channel: SharedArrayBuffer, decider: CacheableDecider) {
    this.#ring = new OfferWriter(ring);
    this.#channel = new Int32Array(channel);
    this.#decider = decider;
  }

  /** Before a batch's decisions: the epoch they belong to. */
  begin(): void {
    this.#epoch = Atomics.load(this.#channel, FP_EPOCH);
    this.#ring.begin();
  }

  /** After one decision with verdict `v` of a packet with L3 protocol `l3proto`. */
  packet(v: number, l3proto: number): void {
    const d = this.#decider;
    if (d.cacheable) this.#ring.offer(d.parse.key, l3proto === IPV6, v, this.#epoch);
  }

  /** After the batch: publish its offers, and wake the writer if it sleeps (./channel.ts). */
  end(): void {
    if (this.#ring.end()) ringWriter(this.#channel);
  }

  /** This thread's decisions changed (flows, trace flows or a table swapped): the writer flushes. */
  changed(): void {
    Atomics.add(this.#channel, FP_EVENTS, 1);
    ringWriter(this.#channel);
  }
}
