/**
 * The per-packet decision of `nfqlb lb` (docs/COMPATIBILITY.md#packet-decisions) as a pure function:
 * packet bytes and tables in, verdict value out (≥ 0: ACCEPT with that
 * fwmark, < 0: DROP; docs/COMPATIBILITY.md#packet-decisions). No FFI, no allocation per packet.
 *
 * @example
 * ```ts
 * import { LbDecider } from "./lb.ts";
 * import { activate, initTable } from "../maglev/maglev.ts";
 * import { tableSize } from "../maglev/table.ts";
 * const table = initTable(new ArrayBuffer(tableSize(997, 4)), 997, 4, 0);
 * activate(table, [100]);
 * const lb = new LbDecider({ table });
 * lb.decide(new Uint8Array(10), 0, 10, 0x0800); // -1: not a parsable IPv4 packet
 * ```
 * @module
 */
import { C_INVALID, C_NO_TARGET, C_OTHER_FWMARKS } from "../counters/queue_counters.ts";
import type { Decider } from "./decider.ts";
import { CONTINUE, FragmentSteps, type FragmentTracker } from "../frag/steps.ts";
import { hashKey } from "../packet/hash.ts";
import { fwmarkFor } from "../maglev/maglev.ts";
import type { MaglevTable } from "../maglev/table.ts";
import {
  ETH_P_IPV6,
  KeyParse,
  parseKeyAt,
  RC_FIRST_FRAG,
  RC_NON_FIRST_FRAG,
} from "../packet/parse.ts";
import { IPV6_HEADER_LEN } from "../wire/ipv6.ts";
import { NO_TRACE, TRACE_PACKET, type TraceSink } from "../trace/mask.ts";
import { endpointsTail } from "../trace/packet_lines.ts";

export type { FragmentTracker } from "../frag/steps.ts";

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
  /** Trace output (docs/COMPATIBILITY.md#trace-and-log bits packet and frag); default off. */
  readonly trace?: TraceSink;
  /** Where the drop reasons are counted (a queue's `QueueCounters.counts`); default private. */
  readonly counts?: Float64Array;
}

/** The `lb` decision procedure, with its scratch key parse reused for every packet. */
export class LbDecider implements Decider {
  declare readonly table: MaglevTable;
  declare readonly fragments: FragmentSteps;
  declare readonly hashMode: number;
  declare readonly udpencap: number;
  declare readonly notargetsFwmark: number;
  declare readonly trace: TraceSink;
  /** The parse of the last packet (for tracing and tests). */
  declare readonly parse: KeyParse;
  /** Decision counters, indexed by the `C_*` of lib/counters/queue_counters.ts. */
  declare readonly counts: Float64Array;
  /**
   * Whether the last decision is a function of the packet's 5-tuple alone, so the
   * kernel may apply it to later packets with that 5-tuple (docs/FASTPATH.md): a TCP,
   * UDP or SCTP packet that is no fragment, no ICMP and no SCTP over UDP, IPv6
   * without extension headers, a target found, and no packet trace on.
   */
  cacheable = false;

  constructor(opts: LbOptions) {
    this.table = opts.table;
    this.hashMode = (opts.hashMode ?? 1) & 0xffff;
    this.udpencap = (opts.udpencap ?? 0) & 0xffff;
    this.notargetsFwmark = opts.notargetsFwmark ?? -1;
    this.trace = opts.trace ?? NO_TRACE;
    this.fragments = new FragmentSteps(opts.lbTier, opts.fragments, this.trace);
    this.parse = new KeyParse();
    this.counts = opts.counts ?? new Float64Array(C_OTHER_FWMARKS + 1);
  }

  /**
   * The verdict value for the packet at `buf[off, off + len)` (parsed in
   * place) with L3 protocol `l3proto` (0x0800 / 0x86DD); `now` is a monotonic
   * time in nanoseconds (fragments). Nothing is allocated: fragment steps
   * get the parse and the range, not a view of their own.
   */
  decide(buf: Uint8Array, off: number, len: number, l3proto: number, now = 0): number {
    const p = this.parse;
    this.cacheable = false;
    const rc = parseKeyAt(p, buf, off, len, l3proto, this.udpencap);
    if (rc < 0) {
      this.counts[C_INVALID]++;
      return -1;
    }
    const t = this.trace;
    if ((rc & (RC_FIRST_FRAG | RC_NON_FIRST_FRAG)) !== 0) {
      const early = this.fragments.early(p, buf, off, len, now);
      if (early !== CONTINUE) return early;
    }
    const fw = fwmarkFor(this.table, hashKey(p.key, this.hashMode));
    // 1.2.0's order: the first fragment is recorded before the packet line.
    let verdict = fw;
    if (fw < 0) {
      this.counts[C_NO_TARGET]++;
      verdict = this.notargetsFwmark;
    }
    if (fw >= 0 && (rc & RC_FIRST_FRAG) !== 0 && !this.fragments.first(p, fw, buf, off, len, now)) {
      verdict = -1;
    }
    if ((t.mask & TRACE_PACKET) !== 0) {
      t.line(`Load-balance packet. fw=${fw}${endpointsTail(p, buf)}`);
    } else if (rc === 0 && fw >= 0) {
      this.cacheable = l3proto !== ETH_P_IPV6 || p.l4Offset - off === IPV6_HEADER_LEN;
    }
    return verdict;
  }
}
