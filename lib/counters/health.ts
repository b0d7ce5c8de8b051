/**
 * What `GET /healthz` answers (docs/COMPATIBILITY.md#differences D52): healthy means "a packet for a
 * configured VIP would be forwarded now": every queue is bound and gets its verdicts out (no
 * send of verdicts is failing), every table in use maps as a valid table, and
 * - `lb`: the target table has at least one active target;
 * - `flowlb`: at least one flow has a target table with an active target.
 *
 * Pure: the metrics server gathers the figures (the kernel's queue list, each table mapped and
 * checked), this module only turns them into reasons. No reason: 200 `ok`; otherwise 503 with
 * one reason per line.
 *
 * @example
 * ```ts
 * import { healthProblems } from "./health.ts";
 * healthProblems({
 *   queueFirst: 0,
 *   queueLast: 0,
 *   bound: new Set([0]),
 *   tables: new Map([["nfqlb", { active: 0 }]]),
 *   target: "nfqlb",
 * }); // ["table nfqlb: no active target: every packet gets no target (nfqlb activate ...)"]
 * ```
 * @module
 */

/** One table in use, as the metrics server found it. */
export interface TableHealth {
  /** Why it cannot be used (cannot be mapped, truncated); undefined when it maps. */
  readonly problem?: string;
  /** Active targets (slots with a fwmark ≥ 0); 0 when it does not map. */
  readonly active: number;
}

/** Everything one health check looks at. */
export interface HealthInput {
  readonly queueFirst: number;
  readonly queueLast: number;
  /**
   * The queues the kernel has bound, or why that could not be read. When the kernel's list
   * cannot be read (a non-root daemon), the queues the daemon's queue threads say they hold.
   */
  readonly bound: ReadonlySet<number> | string;
  /** Set when {@link bound} is the daemon's own state: why the kernel's list was not used. */
  readonly boundFromDaemon?: string;
  /** Every table in use (the target table or the flows' tables, and the LB tier) by name. */
  readonly tables: ReadonlyMap<string, TableHealth>;
  /** lb: the target table (`--tshm`). */
  readonly target?: string;
  /** flowlb: the flows (helper flows have no target). */
  readonly flows?: readonly { readonly name: string; readonly target: string | undefined }[];
  /**
   * The queues whose verdicts have not gone out for `forMs` ms (their send keeps failing with
   * `error`, the errno's text); the daemon stops once the queue thread gives up.
   */
  readonly sendStuck?: readonly {
    readonly queue: number;
    readonly forMs: number;
    readonly error: string;
  }[];
}

/** Flows named in a 503 body at most; the rest are counted in one line. */
export const MAX_FLOW_LINES = 20;

/** Where the kernel lists the bound queues (named in the reasons). */
export const PROC_QUEUES = "/proc/net/netfilter/nfnetlink_queue";

/** The reasons the daemon is not healthy, one line each; empty when healthy. */
export function healthProblems(h: HealthInput): string[] {
  const problems: string[] = [];
  if (typeof h.bound === "string") problems.push(`cannot read ${PROC_QUEUES}: ${h.bound}`);
  else {
    for (let n = h.queueFirst; n <= h.queueLast; n++) {
      if (h.bound.has(n)) continue;
      problems.push(
        h.boundFromDaemon === undefined
          ? `queue ${n}: not bound (${PROC_QUEUES})`
          : `queue ${n}: not bound (its queue thread does not hold it; ${PROC_QUEUES}: ${h.boundFromDaemon})`,
      );
    }
  }
  for (const s of h.sendStuck ?? []) {
    problems.push(
      `queue ${s.queue}: verdicts not sent for ${Math.max(0, Math.round(s.forMs))} ms: ${s.error}`,
    );
  }
  for (const [name, t] of h.tables) {
    if (t.problem !== undefined) problems.push(`table ${name}: ${t.problem}`);
  }
  if (h.target !== undefined) {
    const t = h.tables.get(h.target);
    if (t !== undefined && t.problem === undefined && t.active === 0) {
      problems.push(
        `table ${h.target}: no active target: every packet gets no target (nfqlb activate ...)`,
      );
    }
  }
  if (h.flows !== undefined) problems.push(...flowProblems(h.flows, h.tables));
  return problems;
}

/** flowlb: no reason when some flow's table has an active target, else why none has. */
function flowProblems(
  flows: readonly { readonly name: string; readonly target: string | undefined }[],
  tables: ReadonlyMap<string, TableHealth>,
): string[] {
  const withTable = flows.filter((f) => f.target !== undefined);
  if (withTable.length === 0) {
    return ["no flows: no packet is load-balanced (nfqlb flow-set ...)"];
  }
  const lines: string[] = [];
  for (const f of withTable) {
    const t = tables.get(f.target!);
    if (t !== undefined && t.problem === undefined && t.active > 0) return [];
    if (lines.length < MAX_FLOW_LINES) {
      const why = t === undefined || t.problem !== undefined ? "does not map" : "no active target";
      lines.push(`flow ${f.name}: table ${f.target}: ${why}`);
    }
  }
  const more = withTable.length - lines.length;
  return [
    "no flow has a table with an active target: every packet gets no target",
    ...lines,
    ...(more > 0 ? [`... and ${more} more flows`] : []),
  ];
}
