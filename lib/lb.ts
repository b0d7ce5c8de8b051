/**
 * The per-packet decision of `nfqlb lb` (SPEC 5.2, 5.3) as a pure function:
 * packet bytes and tables in, verdict value out (≥ 0: ACCEPT with that
 * fwmark, < 0: DROP; SPEC 5.1). No FFI, no allocation per packet.
 *
 * @example
 * ```ts
 * import { LbDecider } from "./lb.ts";
 * import { activate, initTable } from "./maglev.ts";
 * import { tableSize } from "./maglev_table.ts";
 * const table = initTable(new ArrayBuffer(tableSize(997, 4)), 997, 4, 0);
 * activate(table, [100]);
 * const lb = new LbDecider({ table });
 * lb.decide(new Uint8Array(10), 0, 10, 0x0800); // -1: not a parsable IPv4 packet
 * ```
 * @module
 */
import { addressHash, hashKey } from "./hash.ts";
import { setIdForm } from "./fragtable.ts";
import { fwmarkFor } from "./maglev.ts";
import type { MaglevTable } from "./maglev_table.ts";
import { KeyParse, parseKeyAt, RC_FIRST_FRAG, RC_NON_FIRST_FRAG } from "./packet.ts";
import { NO_TRACE, TRACE_FRAG, TRACE_PACKET, type TraceSink } from "./trace.ts";

/** {@link FragmentTracker.lastStatus}: the last non-first fragment was stored. */
const FRAG_STORED = 1;

/** What `lb` needs from fragment tracking (SPEC 8.4, 8.5). */
export interface FragmentTracker {
  /** A non-first fragment (id-form key): its fwmark (≥ 0) or −1 to DROP (stored or failed). */
  nonFirst(key: Uint8Array, pkt: Uint8Array, len: number, now: number): number;
  /** A first fragment that got fwmark `fw` (id-form key): false means DROP it. */
  first(key: Uint8Array, fw: number, pkt: Uint8Array, len: number, now: number): boolean;
  /** Outcome of the last `nonFirst` (1 = stored), for the trace. */
  readonly lastStatus?: number;
}

/** Configuration of an {@link LbDecider}. */
export interface LbOptions {
  /** The target table (`--tshm`). */
  readonly table: MaglevTable;
  /** The LB-tier table (`--lbshm`), consulted for fragments only. */
  readonly lbTier?: MaglevTable;
  /** Fragment tracking; without it fragments not sent to the LB tier are dropped. */
  readonly fragments?: FragmentTracker;
  /** `--hash_mode` (default 1: SCTP hashes ports only). */
  readonly hashMode?: number;
  /** `--sctp_encap`: UDP port carrying SCTP (0 = off). */
  readonly udpencap?: number;
  /** `--notargets_fwmark` (default −1 = DROP). */
  readonly notargetsFwmark?: number;
  /** Trace output (SPEC 9.2 bits packet and frag); default off. */
  readonly trace?: TraceSink;
}

/** The `lb` decision procedure, with its scratch key parse reused for every packet. */
export class LbDecider {
  declare readonly table: MaglevTable;
  declare readonly lbTier: MaglevTable | undefined;
  declare readonly fragments: FragmentTracker | undefined;
  declare readonly hashMode: number;
  declare readonly udpencap: number;
  declare readonly notargetsFwmark: number;
  declare readonly trace: TraceSink;
  /** The parse of the last packet (for tracing and tests). */
  declare readonly parse: KeyParse;

  constructor(opts: LbOptions) {
    this.table = opts.table;
    this.lbTier = opts.lbTier;
    this.fragments = opts.fragments;
    this.hashMode = (opts.hashMode ?? 1) & 0xffff;
    this.udpencap = (opts.udpencap ?? 0) & 0xffff;
    this.notargetsFwmark = opts.notargetsFwmark ?? -1;
    this.trace = opts.trace ?? NO_TRACE;
    this.parse = new KeyParse();
  }

  /**
   * The verdict value for the packet at `buf[off, off + len)` (parsed in
   * place) with L3 protocol `l3proto` (0x0800 / 0x86DD); `now` is a monotonic
   * time in nanoseconds (fragments). Only fragments get a view of their own.
   */
  decide(buf: Uint8Array, off: number, len: number, l3proto: number, now = 0): number {
    const p = this.parse;
    const rc = parseKeyAt(p, buf, off, len, l3proto, this.udpencap);
    if (rc < 0) return -1;
    const t = this.trace;
    if ((rc & (RC_FIRST_FRAG | RC_NON_FIRST_FRAG)) !== 0) {
      const early = fragmentVerdict(rc, p.key, this.lbTier, this.fragments, buf, off, len, now, t);
      if (early !== CONTINUE) return early;
    }
    const fw = fwmarkFor(this.table, hashKey(p.key, this.hashMode));
    if ((t.mask & TRACE_PACKET) !== 0) t.line(`Load-balance packet. fw=${fw}`);
    if (fw < 0) return this.notargetsFwmark;
    if (
      (rc & RC_FIRST_FRAG) !== 0 && !firstFragment(p, fw, this.fragments, buf, off, len, now, t)
    ) {
      return -1;
    }
    return fw;
  }
}

/** {@link fragmentVerdict}: no verdict yet, go on to the target lookup. */
export const CONTINUE = -2;

/**
 * The fragment steps of SPEC 5.2/5.3 that come before the target lookup, for
 * `lb` and `flowlb` alike: a fragment (first or not) whose address hash
 * selects another LB instance in the LB tier is sent there; a non-first
 * fragment gets the fwmark recorded for its datagram (−1: DROP). Returns
 * {@link CONTINUE} for everything else.
 */
export function fragmentVerdict(
  rc: number,
  key: Uint8Array,
  tier: MaglevTable | undefined,
  frags: FragmentTracker | undefined,
  buf: Uint8Array,
  off: number,
  len: number,
  now: number,
  trace: TraceSink = NO_TRACE,
): number {
  if ((rc & (RC_FIRST_FRAG | RC_NON_FIRST_FRAG)) === 0) return CONTINUE;
  const traced = (trace.mask & TRACE_FRAG) !== 0;
  if (tier !== undefined) {
    const fw = fwmarkFor(tier, addressHash(key));
    if (fw >= 0 && fw !== tier.ownFwmark) {
      if (traced) trace.line(`Fragment to LB tier. fw=${fw}`);
      return fw;
    }
  }
  if ((rc & RC_FIRST_FRAG) !== 0) return CONTINUE;
  const fw = frags === undefined ? -1 : frags.nonFirst(key, buf.subarray(off, off + len), len, now);
  if (traced) {
    trace.line(
      fw >= 0
        ? `Handle non-first frag locally fwmark=${fw}`
        : frags?.lastStatus === FRAG_STORED
        ? "Fragment stored"
        : "Fragment dropped",
    );
  }
  return fw;
}

/**
 * Record fwmark `fw` for a first fragment's datagram (its key turned into the
 * id form, SPEC 5.2); false means DROP the first fragment.
 */
export function firstFragment(
  p: KeyParse,
  fw: number,
  frags: FragmentTracker | undefined,
  buf: Uint8Array,
  off: number,
  len: number,
  now: number,
  trace: TraceSink = NO_TRACE,
): boolean {
  setIdForm(p.key, p.fragId);
  const traced = (trace.mask & TRACE_FRAG) !== 0;
  if (traced) trace.line("First fragment");
  const ok = frags !== undefined &&
    frags.first(p.key, fw, buf.subarray(off, off + len), len, now);
  if (!ok && traced) trace.line("FAILED: Handle first fragment");
  return ok;
}
