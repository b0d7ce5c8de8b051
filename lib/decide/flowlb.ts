/**
 * The per-packet decision of `nfqlb flowlb` (docs/COMPATIBILITY.md#packet-decisions) as a pure function:
 * classify the packet by flow, then load-balance it with the winning flow's
 * target table. UDP packets to a flow's `udpencap` port are re-parsed as
 * SCTP and classified again (docs/COMPATIBILITY.md#flows; a matching helper flow stops the
 * scan, docs/COMPATIBILITY.md#differences D18). No FFI, no allocation per packet.
 *
 * @example
 * ```ts
 * import { FlowLbDecider } from "./flowlb.ts";
 * const d = new FlowLbDecider({});
 * d.decide(new Uint8Array(10), 0, 10, 0x0800); // -1: not a parsable packet
 * ```
 * @module
 */
import { C_INVALID, C_NO_FLOW, C_NO_TARGET, C_OTHER_FWMARKS } from "../counters/queue_counters.ts";
import type { Classifier } from "../flow/classifier.ts";
import { compileFlows } from "../flow/classifier_build.ts";
import { FlowMatch } from "../flow/match.ts";
import type { Flow } from "../flow/types.ts";
import type { Decider } from "./decider.ts";
import { CONTINUE, FragmentSteps, type FragmentTracker } from "../frag/steps.ts";
import { hashKey } from "../packet/hash.ts";
import { KEY_DPORT, keyProto } from "../packet/key.ts";
import { IPPROTO_SCTP, IPPROTO_UDP } from "../wire/ip_proto.ts";
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
import { NO_TRACE, TRACE_FLOWS, TRACE_PACKET, TRACE_SCTP, type TraceSink } from "../trace/mask.ts";
import { traceFlowHeader, traceFlowResult } from "../trace/flow_lines.ts";
import { endpointsTail } from "../trace/packet_lines.ts";
import { LOG_INFO } from "../log/levels.ts";

/** Configuration of a {@link FlowLbDecider}. */
export interface FlowLbOptions {
  readonly lbTier?: MaglevTable;
  readonly fragments?: FragmentTracker;
  /** `--hash_mode` (default 1). */
  readonly hashMode?: number;
  /** `--notargets_fwmark` (default −1 = DROP). */
  readonly notargetsFwmark?: number;
  /** `--nolb_fwmark`: verdict when no flow matches (default −1 = DROP). */
  readonly nolbFwmark?: number;
  /** `--promiscuous_ping` (docs/COMPATIBILITY.md#flows). */
  readonly promiscuousPing?: boolean;
  /** Trace output (docs/COMPATIBILITY.md#trace-and-log bits packet, frag and sctp); default off. */
  readonly trace?: TraceSink;
  /** Where the drop reasons are counted (a queue's `QueueCounters.counts`); default private. */
  readonly counts?: Float64Array;
}

/** A compiled flow set with the target table of each flow (by flow index). */
export class FlowSet {
  declare readonly flows: readonly Flow[];
  declare readonly classifier: Classifier;
  /** `tables[i]`: the mapped table of `flows[i]`, undefined for helpers or unmapped targets. */
  declare readonly tables: readonly (MaglevTable | undefined)[];
  /** `slots[i]`: counter slot of `flows[i]` in {@link counters} (docs/COMPATIBILITY.md#flows matches_count). */
  declare readonly slots: Uint32Array;
  /** This thread's lane of the shared match counters, or null to not count. */
  declare readonly counters: Uint32Array | null;
  /**
   * The highest priority of a flow with byte matches (-Infinity: none). A packet won by
   * a flow of this priority or lower may have lost a byte-matching flow on its other
   * bytes, so its decision is not a function of its 5-tuple (docs/FASTPATH.md).
   */
  declare readonly bytePriority: number;

  /**
   * `anyFlowWins`: every matching flow wins, with or without a target (a
   * set of trace flows, docs/COMPATIBILITY.md#trace-and-log).
   */
  constructor(
    flows: readonly Flow[],
    tables: readonly (MaglevTable | undefined)[],
    slots: Uint32Array,
    counters: Uint32Array | null,
    anyFlowWins = false,
  ) {
    this.flows = flows;
    this.classifier = compileFlows(flows, { anyFlowWins });
    this.tables = tables;
    this.slots = slots;
    this.counters = counters;
    let bp = -Infinity;
    for (const f of flows) if (f.match !== undefined && f.priority > bp) bp = f.priority;
    this.bytePriority = bp;
  }
}

const EMPTY = new FlowSet([], [], new Uint32Array(0), null);

/** The `flowlb` decision procedure; swap flow sets with {@link FlowLbDecider.setFlows}. */
export class FlowLbDecider implements Decider {
  declare readonly fragments: FragmentSteps;
  declare readonly hashMode: number;
  declare readonly notargetsFwmark: number;
  declare readonly nolbFwmark: number;
  declare readonly promiscuousPing: boolean;
  declare readonly trace: TraceSink;
  /** The parse of the last packet. */
  declare readonly parse: KeyParse;
  /** The classification of the last packet. */
  declare readonly match: FlowMatch;
  /** The flow set in use. */
  declare flowSet: FlowSet;
  /** Decision counters, indexed by the `C_*` of lib/counters/queue_counters.ts. */
  declare readonly counts: Float64Array;
  /** The trace flows in use (evaluated only with trace bit `flows`). */
  declare traceFlows: FlowSet;
  /** The trace-flow classification of the last traced packet. */
  declare readonly traceMatch: FlowMatch;
  /**
   * Whether the last decision is a function of the packet's 5-tuple alone (see
   * `LbDecider.cacheable`): also no byte match could have decided it, and no trace flow
   * or packet trace is on.
   */
  cacheable = false;

  constructor(opts: FlowLbOptions) {
    this.hashMode = (opts.hashMode ?? 1) & 0xffff;
    this.notargetsFwmark = opts.notargetsFwmark ?? -1;
    this.nolbFwmark = opts.nolbFwmark ?? -1;
    this.promiscuousPing = opts.promiscuousPing ?? false;
    this.trace = opts.trace ?? NO_TRACE;
    this.fragments = new FragmentSteps(opts.lbTier, opts.fragments, this.trace);
    this.parse = new KeyParse();
    this.match = new FlowMatch();
    this.flowSet = EMPTY;
    this.counts = opts.counts ?? new Float64Array(C_OTHER_FWMARKS + 1);
    this.traceFlows = EMPTY;
    this.traceMatch = new FlowMatch();
  }

  /** Use the trace flows `set` (made with `anyFlowWins`) from the next packet on. */
  setTraceFlows(set: FlowSet): void {
    this.traceFlows = set;
  }

  /**
   * Trace flows (bit `flows`): the first trace flow that matches the packet
   * (promiscuous ping always on) is counted and prints its header lines.
   * Returns true when one matched (the caller then prints the result line).
   */
  #traceFlowMatch(buf: Uint8Array, len: number): boolean {
    const set = this.traceFlows;
    if (set.flows.length === 0) return false;
    const i = set.classifier.classify(this.parse, buf, true, this.traceMatch);
    if (i < 0) return false;
    if (set.counters !== null) set.counters[set.slots[i]]++;
    const lines = traceFlowHeader(set.flows[i].name, this.parse, buf, len, this.match.udpencap);
    for (const l of lines) this.trace.line(l);
    return true;
  }

  /** Use `set` from the next packet on (one reference store: old or new, never a mix). */
  setFlows(set: FlowSet): void {
    this.flowSet = set;
  }

  #classify(set: FlowSet, buf: Uint8Array): number {
    const m = this.match;
    const winner = set.classifier.classify(this.parse, buf, this.promiscuousPing, m);
    const counters = set.counters;
    if (m.flow >= 0 && counters !== null) counters[set.slots[m.flow]]++;
    return winner;
  }

  /** The verdict value for the packet at `buf[off, off + len)` (see `LbDecider.decide`). */
  decide(buf: Uint8Array, off: number, len: number, l3proto: number, now = 0): number {
    const p = this.parse;
    this.cacheable = false;
    let rc = parseKeyAt(p, buf, off, len, l3proto, 0);
    if (rc < 0) {
      this.counts[C_INVALID]++;
      return -1;
    }
    const key = p.key;
    const t = this.trace;
    if ((rc & (RC_FIRST_FRAG | RC_NON_FIRST_FRAG)) !== 0) {
      const early = this.fragments.early(p, buf, off, len, now);
      if (early !== CONTINUE) return early;
    }
    const set = this.flowSet;
    let winner = this.#classify(set, buf);
    // Values of the key before any SCTP-over-UDP re-parse, as 1.2.0 prints them.
    const traced = (t.mask & TRACE_FLOWS) !== 0 && this.#traceFlowMatch(buf, len);
    // SCTP over UDP: re-parse and re-classify a UDP packet to the reported udpencap port.
    // 1.2.0 also does this for encap 0 (UDP to port 0), which only counted the flow twice.
    const encap = this.match.udpencap;
    if (
      encap !== 0 && keyProto(key) === IPPROTO_UDP &&
      ((key[KEY_DPORT] << 8) | key[KEY_DPORT + 1]) === encap
    ) {
      if ((t.mask & TRACE_SCTP) !== 0) t.line(`Udp encapsulated sctp packet on port ${encap}`);
      rc = parseKeyAt(p, buf, off, len, l3proto, encap);
      if (rc < 0) {
        if ((t.mask & TRACE_SCTP) !== 0) t.line("FAILED: Re-compute key with udpencap");
        this.counts[C_INVALID]++;
        return -1;
      }
      winner = this.#classify(set, buf);
      if (winner < 0 && (t.mask & TRACE_SCTP) !== 0) t.line("Failed flowLookup for udpencap");
    }
    if (winner < 0) {
      this.counts[C_NO_FLOW]++;
      if (traced) t.line(traceFlowResult(-1, undefined, this.nolbFwmark, this.notargetsFwmark));
      if ((t.mask & TRACE_PACKET) !== 0) t.line(`Failed flowLookup${endpointsTail(p, buf)}`);
      if ((t.level ?? 0) >= LOG_INFO) t.log?.("Failed flowLookup", LOG_INFO);
      return this.nolbFwmark;
    }
    const table = set.tables[winner];
    const flow = set.flows[winner];
    const fw = table === undefined ? -1 : fwmarkFor(table, hashKey(key, this.hashMode));
    if (traced) {
      t.line(traceFlowResult(fw, flow.target ?? "", this.nolbFwmark, this.notargetsFwmark));
    }
    // 1.2.0's order: the first fragment is recorded before the packet lines.
    let verdict = fw;
    if (fw < 0) {
      this.counts[C_NO_TARGET]++;
      verdict = this.notargetsFwmark;
    }
    if (fw >= 0 && (rc & RC_FIRST_FRAG) !== 0 && !this.fragments.first(p, fw, buf, off, len, now)) {
      if (traced) t.line("FAILED: Handle first fragment");
      verdict = -1;
    }
    if ((t.mask & (TRACE_PACKET | TRACE_SCTP)) !== 0) this.#traceFlow(rc, flow, buf, len, fw);
    else if (
      rc === 0 && fw >= 0 && flow.match === undefined && flow.priority > set.bytePriority &&
      ((t.mask & TRACE_FLOWS) === 0 || this.traceFlows.flows.length === 0)
    ) {
      this.cacheable = l3proto !== ETH_P_IPV6 || p.l4Offset - off === IPV6_HEADER_LEN;
    }
    return verdict;
  }

  /**
   * `Using LB; <target>` and `Packet; proto=…, len=…, fwmark=…` (docs/COMPATIBILITY.md#trace-and-log):
   * for every packet with bit packet, for SCTP packets with bit sctp.
   */
  #traceFlow(rc: number, flow: Flow, buf: Uint8Array, len: number, fw: number): void {
    const t = this.trace;
    const proto = keyProto(this.parse.key);
    if ((t.mask & TRACE_PACKET) === 0 && proto !== IPPROTO_SCTP) return;
    t.line(`Using LB; ${flow.target ?? ""}`);
    // First fragments show proto=0: 1.2.0 prints the key after its id-form conversion.
    const shown = (rc & RC_FIRST_FRAG) !== 0 ? 0 : proto;
    // 1.2.0's fields, then the packet's addresses and ports (D60).
    t.line(
      `Packet; proto=${shown}, len=${len}, fwmark=${fw >>> 0}${endpointsTail(this.parse, buf)}`,
    );
  }
}
