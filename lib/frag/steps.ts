/**
 * The fragment steps of the `lb` and `flowlb` decisions (docs/COMPATIBILITY.md#packet-decisions):
 * the LB tier and fragment tracking, with their trace lines (docs/COMPATIBILITY.md#trace-and-log, bit
 * frag). Both deciders own one {@link FragmentSteps}.
 * @module
 */
import { addressHash } from "../packet/hash.ts";
import { setIdForm } from "./table.ts";
import { fwmarkFor } from "../maglev/maglev.ts";
import type { MaglevTable } from "../maglev/table.ts";
import { type KeyParse, RC_FIRST_FRAG } from "../packet/parse.ts";
import { NO_TRACE, TRACE_FRAG, type TraceSink } from "../trace/mask.ts";
import { endpointsTail } from "../trace/packet_lines.ts";

/** {@link FragmentTracker.lastStatus}: the last non-first fragment was stored. */
const FRAG_STORED = 1;

/**
 * What the deciders need from fragment tracking (docs/COMPATIBILITY.md#fragments). Both calls
 * get the fragment's parse `p` (`p.key` in id form) and the packet as
 * `buf[off, off + len)`.
 */
export interface FragmentTracker {
  /** A non-first fragment: its fwmark (≥ 0) or −1 to DROP (stored or failed). */
  nonFirst(p: KeyParse, buf: Uint8Array, off: number, len: number, now: number): number;
  /** A first fragment that got fwmark `fw`: false means DROP it. */
  first(p: KeyParse, fw: number, buf: Uint8Array, off: number, len: number, now: number): boolean;
  /** Outcome of the last `nonFirst` (1 = stored), for the trace. */
  readonly lastStatus?: number;
}

/** {@link FragmentSteps.early}: no verdict yet, go on to the target lookup. */
export const CONTINUE = -2;

/** The LB tier, fragment tracking and the trace sink of one decider. */
export class FragmentSteps {
  /** The LB-tier table (`--lbshm`), consulted for fragments only. */
  declare readonly tier: MaglevTable | undefined;
  /** Fragment tracking; without it fragments not sent to the LB tier are dropped. */
  declare readonly tracker: FragmentTracker | undefined;
  declare readonly trace: TraceSink;

  constructor(tier?: MaglevTable, tracker?: FragmentTracker, trace: TraceSink = NO_TRACE) {
    this.tier = tier;
    this.tracker = tracker;
    this.trace = trace;
  }

  /**
   * The steps before the target lookup, for a fragment (`p.rc` has a
   * fragment bit; `p` is the parse of `buf[off, off + len)`): a fragment
   * whose address hash selects another LB instance in the LB tier is sent
   * there; a non-first fragment gets the fwmark recorded for its datagram
   * (−1: DROP). Returns {@link CONTINUE} for a first fragment that stays
   * here. Allocates nothing.
   */
  early(p: KeyParse, buf: Uint8Array, off: number, len: number, now: number): number {
    const traced = (this.trace.mask & TRACE_FRAG) !== 0;
    const tier = this.tier;
    if (tier !== undefined) {
      const fw = fwmarkFor(tier, addressHash(p.key));
      if (fw >= 0 && fw !== tier.ownFwmark) {
        if (traced) this.trace.line(`Fragment to LB tier. fw=${fw}${endpointsTail(p, buf)}`);
        return fw;
      }
    }
    if ((p.rc & RC_FIRST_FRAG) !== 0) return CONTINUE;
    const t = this.tracker;
    const fw = t === undefined ? -1 : t.nonFirst(p, buf, off, len, now);
    if (traced) {
      const what = fw >= 0
        ? `Handle non-first frag locally fwmark=${fw}`
        : t?.lastStatus === FRAG_STORED
        ? "Fragment stored"
        : "Fragment dropped";
      this.trace.line(`${what}${endpointsTail(p, buf)}`);
    }
    return fw;
  }

  /**
   * Record fwmark `fw` for a first fragment's datagram (its key turned into
   * the id form, docs/COMPATIBILITY.md#packet-decisions); false means DROP the first fragment.
   */
  first(p: KeyParse, fw: number, buf: Uint8Array, off: number, len: number, now: number): boolean {
    setIdForm(p.key, p.fragId);
    const traced = (this.trace.mask & TRACE_FRAG) !== 0;
    if (traced) this.trace.line(`First fragment${endpointsTail(p, buf)}`);
    const t = this.tracker;
    const ok = t !== undefined && t.first(p, fw, buf, off, len, now);
    if (!ok && traced) this.trace.line("FAILED: Handle first fragment");
    return ok;
  }
}
