/**
 * The Prometheus text exposition (version 0.0.4) of nfqlb's counters for
 * `GET /metrics` (docs/COMPATIBILITY.md#differences D52): `nfqlb_` prefix,
 * base units, `_total` on counters, bounded labels (`queue`, `flow`, `table`,
 * `fwmark`, `reason`). Pure: the metrics server gathers the figures, this
 * module only writes the text.
 *
 * @example
 * ```ts
 * import { formatMetrics } from "./metrics.ts";
 * const text = formatMetrics({ version: "1.2.0", deno: "2.9.6", queues: [], fwmarks: [], kernel: new Map(), flows: [], tables: 1 });
 * text.startsWith("# HELP nfqlb_build_info"); // true
 * ```
 * @module
 */
import type { FtStats, FtStatsExt } from "../frag/stats.ts";
import type { KernelQueueStats } from "../nfqueue/proc.ts";
import type { FwmarkCounts, QueueCounts } from "./queue_counters.ts";
import {
  F_ADD_FAILURES,
  F_ADDS,
  F_ELEMENTS,
  F_FLUSHES,
  F_HITS4,
  F_HITS6,
  F_LAST_FLUSH_US,
  F_MAP_FULL,
  F_MAP_FULL_SKIPS,
  F_MAX_FLUSH_US,
  F_RING_DROPS,
  F_UP,
} from "../fastpath/status.ts";

/** Everything one scrape shows. */
export interface MetricsInput {
  /** The compatible nfqlb version and the Deno version. */
  readonly version: string;
  readonly deno: string;
  readonly queues: readonly QueueCounts[];
  readonly fwmarks: readonly FwmarkCounts[];
  /**
   * The kernel's figures by queue number (only the daemon's queues are shown); undefined when
   * they could not be read (a non-root daemon): those families are left out and
   * `nfqlb_kernel_queue_figures_available` is 0.
   */
  readonly kernel: ReadonlyMap<number, KernelQueueStats> | undefined;
  /**
   * flowlb: each flow, its table ("" for a helper), its matches, and whether it is pending
   * (waits for its table, docs/COMPATIBILITY.md#differences D58).
   */
  readonly flows: readonly { name: string; table: string; matches: number; pending?: boolean }[];
  /** Target tables in use. */
  readonly tables: number;
  /** The fragment counters, when the object has them. */
  readonly fragments?: FtStats & Partial<FtStatsExt>;
  /** `--fastpath`: the status values (`F_*` of lib/fastpath/status.ts). */
  readonly fastpath?: Float64Array;
}

/** A label value escaped as the exposition format wants (backslash, quote, newline). */
export function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

class Writer {
  text = "";
  /** One metric family: HELP, TYPE, then its samples (label set → value). */
  family(
    name: string,
    type: "counter" | "gauge",
    help: string,
    samples: readonly [Record<string, string | number>, number][],
  ): void {
    this.text += `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`;
    for (const [labels, value] of samples) {
      const l = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(String(v))}"`);
      this.text += `${name}${l.length === 0 ? "" : `{${l.join(",")}}`} ${value}\n`;
    }
  }
}

/** The kernel's figures of the daemon's queues. */
function kernelFamilies(
  w: Writer,
  queues: readonly QueueCounts[],
  figures: ReadonlyMap<number, KernelQueueStats>,
): void {
  const kernel = (pick: (k: KernelQueueStats) => number) =>
    queues.filter((q) => figures.has(q.queue)).map((
      q,
    ): [Record<string, string>, number] => [
      { queue: String(q.queue) },
      pick(figures.get(q.queue)!),
    ]);
  w.family(
    "nfqlb_kernel_queue_packets_total",
    "counter",
    "Packets the kernel queued (its id sequence).",
    kernel((k) => k.idSequence),
  );
  w.family(
    "nfqlb_kernel_queue_dropped_total",
    "counter",
    "Packets the kernel dropped: queue full.",
    kernel((k) => k.queueDropped),
  );
  w.family(
    "nfqlb_kernel_queue_user_dropped_total",
    "counter",
    "Packets the kernel dropped: reader's socket buffer full.",
    kernel((k) => k.userDropped),
  );
  w.family(
    "nfqlb_kernel_queue_waiting_packets",
    "gauge",
    "Packets waiting for a verdict.",
    kernel((k) => k.waiting),
  );
}

/** The exposition text for `m`. */
export function formatMetrics(m: MetricsInput): string {
  const w = new Writer();
  w.family(
    "nfqlb_build_info",
    "gauge",
    "A constant 1, labelled with the nfqlb and Deno versions.",
    [
      [{ version: m.version, deno: m.deno }, 1],
    ],
  );
  const perQueue = (pick: (q: QueueCounts) => number) =>
    m.queues.map((q): [Record<string, string>, number] => [{ queue: String(q.queue) }, pick(q)]);
  w.family(
    "nfqlb_queue_packets_received_total",
    "counter",
    "Packets received from the queue.",
    perQueue((q) => q.received),
  );
  w.family(
    "nfqlb_queue_packets_accepted_total",
    "counter",
    "Packets accepted with a fwmark.",
    perQueue((q) => q.accepted),
  );
  w.family(
    "nfqlb_queue_packets_dropped_total",
    "counter",
    "Packets dropped (verdict DROP).",
    perQueue((q) => q.dropped),
  );
  w.family(
    "nfqlb_queue_packets_invalid_total",
    "counter",
    "Packets that could not be parsed.",
    perQueue((q) => q.invalid),
  );
  w.family(
    "nfqlb_queue_packets_no_target_total",
    "counter",
    "Packets whose table had no target.",
    perQueue((q) => q.noTarget),
  );
  w.family(
    "nfqlb_queue_packets_no_flow_total",
    "counter",
    "Packets no flow matched (flowlb).",
    perQueue((q) => q.noFlow),
  );
  w.family(
    "nfqlb_queue_verdict_errors_total",
    "counter",
    "Verdicts the kernel refused.",
    perQueue((q) => q.verdictErrors),
  );
  w.family(
    "nfqlb_queue_table_open_errors_total",
    "counter",
    "Flow tables the queue thread could not map (retried every 100 ms).",
    perQueue((q) => q.tableOpenErrors),
  );
  w.family(
    "nfqlb_queue_receive_errors_total",
    "counter",
    "Receives that failed transiently (EINTR, ENOMEM) and were retried.",
    perQueue((q) => q.receiveErrors),
  );
  w.family(
    "nfqlb_queue_receive_overruns_total",
    "counter",
    "Receives that failed with ENOBUFS: the socket overran and the kernel dropped messages.",
    perQueue((q) => q.receiveOverruns),
  );
  w.family(
    "nfqlb_queue_send_errors_total",
    "counter",
    "Sends of verdicts that failed transiently (EINTR, ENOBUFS, ENOMEM, EAGAIN) and were retried.",
    perQueue((q) => q.sendErrors),
  );
  w.family(
    "nfqlb_kernel_queue_figures_available",
    "gauge",
    "1 when the kernel's queue figures (/proc/net/netfilter/nfnetlink_queue) could be read; " +
      "0 when not (a non-root daemon): the nfqlb_kernel_queue_* families are then left out.",
    [[{}, m.kernel === undefined ? 0 : 1]],
  );
  if (m.kernel !== undefined) kernelFamilies(w, m.queues, m.kernel);
  w.family(
    "nfqlb_target_packets_total",
    "counter",
    "Packets accepted with this fwmark.",
    m.fwmarks.map((f) => [{ fwmark: f.fwmark }, f.packets]),
  );
  w.family(
    "nfqlb_target_bytes_total",
    "counter",
    "Bytes of the packets accepted with this fwmark.",
    m.fwmarks.map((f) => [{ fwmark: f.fwmark }, f.bytes]),
  );
  w.family(
    "nfqlb_flow_matches_total",
    "counter",
    "Packets that matched the flow (as flow-list matches_count).",
    m.flows.map((f) => [{ flow: f.name, table: f.table }, f.matches]),
  );
  w.family("nfqlb_flows", "gauge", "Flows defined (flowlb).", [[{}, m.flows.length]]);
  w.family(
    "nfqlb_flows_pending",
    "gauge",
    "Flows restored from --flow-state that wait for their table to exist (flowlb).",
    [[{}, m.flows.filter((f) => f.pending === true).length]],
  );
  w.family("nfqlb_tables", "gauge", "Target tables in use.", [[{}, m.tables]]);
  const f = m.fragments;
  if (f !== undefined) {
    w.family(
      "nfqlb_fragments_stored_total",
      "counter",
      "Fragments stored until their first fragment came.",
      [[{}, f.fragsAllocated]],
    );
    w.family(
      "nfqlb_fragment_datagrams_reassembled_total",
      "counter",
      "Datagrams whose every byte the reassembler saw.",
      [[{}, f.reAssembled]],
    );
    w.family("nfqlb_fragment_table_lookups_total", "counter", "Fragment table lookups.", [[
      {},
      f.lookups,
    ]]);
    w.family("nfqlb_fragment_table_buckets_used", "gauge", "Extra buckets in use.", [[
      {},
      f.bucketsUsed,
    ]]);
    if (f.fragsInjected !== undefined) {
      w.family(
        "nfqlb_fragments_injected_total",
        "counter",
        "Stored fragments written to the tun device.",
        [[{}, f.fragsInjected]],
      );
      const reasons: [string, number][] = [
        ["table_full", f.rejected],
        ["ttl", f.fragsDroppedTtl ?? 0],
        ["pool_full", f.fragsDroppedPoolFull ?? 0],
        ["too_long", f.fragsDroppedTooLong ?? 0],
        ["no_tun", f.fragsDroppedNoTun ?? 0],
        ["tun_write", f.fragsDroppedTunWrite ?? 0],
        ["lost_datagram", f.fragsDroppedLostDatagram ?? 0],
        ["repeated_first", f.fragsDroppedRepeatedFirst ?? 0],
      ];
      w.family(
        "nfqlb_fragments_dropped_total",
        "counter",
        "Fragments dropped, by reason.",
        reasons.map(([r, v]) => [{ reason: r }, v]),
      );
      w.family(
        "nfqlb_kernel_reassembled_packets_total",
        "counter",
        "Queued packets longer than --mtu: reassembled before the queue.",
        [[{}, f.kernelReassembled ?? 0]],
      );
    }
  }
  const fp = m.fastpath;
  if (fp !== undefined) {
    const one = (name: string, type: "counter" | "gauge", help: string, v: number) =>
      w.family(name, type, help, [[{}, v]]);
    one(
      "nfqlb_fastpath_up",
      "gauge",
      "1 while the fast path's nftables table exists; 0 while it is removed after a failure " +
        "(every packet takes the queue until it is created again) or the fast path stopped.",
      fp[F_UP],
    );
    w.family(
      "nfqlb_fastpath_hits_total",
      "counter",
      "Packets the kernel marked from the fast-path maps (they skipped the queue).",
      [[{ family: "ipv4" }, fp[F_HITS4]], [{ family: "ipv6" }, fp[F_HITS6]]],
    );
    one("nfqlb_fastpath_elements", "gauge", "Elements in the fast-path maps.", fp[F_ELEMENTS]);
    one("nfqlb_fastpath_adds_total", "counter", "Elements added.", fp[F_ADDS]);
    one(
      "nfqlb_fastpath_add_failures_total",
      "counter",
      "Elements not added (map full, or refused by the kernel).",
      fp[F_ADD_FAILURES],
    );
    one(
      "nfqlb_fastpath_flushes_total",
      "counter",
      "Changes after which the rules moved to empty maps.",
      fp[F_FLUSHES],
    );
    one(
      "nfqlb_fastpath_ring_drops_total",
      "counter",
      "Decisions not offered: a queue thread's ring was full.",
      fp[F_RING_DROPS],
    );
    one(
      "nfqlb_fastpath_map_full_total",
      "counter",
      "Times an add found a map full (adds then pause for 200 ms).",
      fp[F_MAP_FULL],
    );
    one(
      "nfqlb_fastpath_map_full_skips_total",
      "counter",
      "Offers not added while adds paused after a full map.",
      fp[F_MAP_FULL_SKIPS],
    );
    one(
      "nfqlb_fastpath_last_switch_seconds",
      "gauge",
      "From a change seen to the rules using empty maps, the last time.",
      fp[F_LAST_FLUSH_US] / 1e6,
    );
    one(
      "nfqlb_fastpath_max_switch_seconds",
      "gauge",
      "From a change seen to the rules using empty maps, the longest time.",
      fp[F_MAX_FLUSH_US] / 1e6,
    );
  }
  return w.text;
}
