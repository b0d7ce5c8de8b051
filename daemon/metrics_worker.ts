/**
 * The metrics server of `lb` and `flowlb` (`--metrics=ADDR:PORT`), a worker
 * off the packet threads: `GET /metrics` is the Prometheus text exposition of
 * the counters (`lib/counters/metrics.ts`), read from the `ftshm` object the
 * queue threads count into, the kernel's figures of the daemon's queues
 * (`/proc/net/netfilter/nfnetlink_queue` of its network namespace) and, for
 * flowlb, the flows' match counters; `GET /healthz` answers 200 `ok` only when
 * a packet for a configured VIP would be forwarded (`lib/counters/health.ts`):
 * every queue bound and getting its verdicts out (no "send stuck since" word
 * set in its block of `ftshm`), every table in use valid, an active target in
 * the lb's table or, for flowlb, in some flow's table; else 503 with the
 * reasons, one per line. Each request reads the kernel's queue list and maps each table in
 * use once (its `active` slots are read, nothing else). A daemon that cannot read the kernel's
 * list (non-root: the file is root's, mode 0440) logs that once, leaves the kernel's figures
 * out of `/metrics`, and judges "bound" from the queue threads' own word in `ftshm`.
 *
 * Messages to the main thread: `listening` (the address), or `error` (the
 * server could not be set up). Messages from it: new flow snapshots.
 * @module
 */
import { openShm, type ShmMapping } from "../ffi/shm.ts";
import { formatMetrics } from "../lib/counters/metrics.ts";
import { healthProblems, PROC_QUEUES, type TableHealth } from "../lib/counters/health.ts";
import {
  readBoundQueues,
  readQueueCounters,
  readSendStuck,
} from "../lib/counters/queue_counters.ts";
import { strerror } from "../ffi/libc.ts";
import { readStats, readStatsExt } from "../lib/frag/stats.ts";
import { type FlowSnapshot, MatchCounters, matchingFlows } from "../lib/flow/store.ts";
import { type KernelQueueStats, parseNfqueueProc } from "../lib/nfqueue/proc.ts";
import { daemonTableProblem, openTable } from "./open_table.ts";
import { TableOpenError } from "./errors.ts";
import { isTruncated } from "./table_watch.ts";

/** The message that starts the worker. */
export interface MetricsStart {
  readonly hostname: string;
  readonly port: number;
  readonly ftShm: string;
  readonly queueFirst: number;
  readonly queueLast: number;
  /**
   * `--fastpath`: the status values the writer thread keeps (`F_*` of lib/fastpath/status.ts),
   * shared in memory, not read from the status object in /dev/shm (whose name another user
   * could take over once it is removed, and truncate under a mapping or fill with made-up
   * values).
   */
  readonly fastpath?: SharedArrayBuffer;
  /** lb: the tables it uses (`--tshm`, `--lbshm`); flowlb: the LB tier only (flows add theirs). */
  readonly tables: readonly string[];
  /** lb: the target table (`--tshm`), which must have an active target to be healthy. */
  readonly target?: string;
  readonly version: string;
  /** flowlb: the flows' counters and first snapshot. */
  readonly flows?: {
    readonly counters: SharedArrayBuffer;
    readonly lanes: number;
    readonly capacity: number;
    readonly snapshot: FlowSnapshot;
  };
}

/** Messages the worker sends. */
export type MetricsMessage =
  | { type: "listening"; address: string }
  /** A line for the daemon's log, once (not per scrape). */
  | { type: "note"; message: string }
  | { type: "error"; message: string };

const scope = self as unknown as {
  postMessage(m: MetricsMessage): void;
  onmessage:
    | ((
      e: MessageEvent<MetricsStart | { type: "flows" | "traces"; snapshot: FlowSnapshot }>,
    ) => void)
    | null;
};

let snapshot: FlowSnapshot | undefined;

/** Map table `name` for a moment: whether it is valid, and how many targets are active. */
function tableHealth(name: string): TableHealth {
  let t;
  try {
    t = openTable(name, false);
  } catch (e) {
    // Why, and the fix (e.g. a table root created that this non-root daemon cannot open).
    if (e instanceof TableOpenError) return { problem: daemonTableProblem(e), active: 0 };
    return { problem: e instanceof Error ? e.message : String(e), active: 0 };
  }
  try {
    if (isTruncated(t)) return { problem: "truncated", active: 0 };
    let active = 0;
    for (const fw of t.table.active) if (fw >= 0) active++;
    return { active };
  } finally {
    t.close();
  }
}

/** The kernel's queue figures, or the error text when the file cannot be read. */
async function kernelQueues(): Promise<Map<number, KernelQueueStats> | string> {
  try {
    return parseNfqueueProc(await Deno.readTextFile(PROC_QUEUES));
  } catch (e) {
    // "Permission denied (os error 13): readfile '...'": the errno's text is enough.
    return e instanceof Error ? e.message.replace(/ \(os error \d+\).*$/s, "") : String(e);
  }
}

function serve(start: MetricsStart): void {
  const counters = start.flows === undefined
    ? undefined
    : new MatchCounters(start.flows.lanes, start.flows.capacity, start.flows.counters);
  snapshot = start.flows?.snapshot;
  let ft: ShmMapping | undefined;
  /** The ftshm mapping (mapped at the first scrape that finds it). */
  const stats = (): ArrayBuffer | undefined => {
    try {
      ft ??= openShm(start.ftShm, false);
      return ft.buffer;
    } catch {
      return undefined;
    }
  };
  /** Names of the tables in use now (not those of pending flows: they do not exist yet). */
  const tables = () => {
    const names = new Set(start.tables);
    const flows = snapshot === undefined ? [] : matchingFlows(snapshot).flows;
    for (const f of flows) if (f.target !== undefined) names.add(f.target);
    return [...names];
  };

  /** The fast path's status values, copied (undefined: off). */
  const fastpath = start.fastpath === undefined ? undefined : new Float64Array(start.fastpath);

  /** Whether the line about an unreadable kernel queue list was logged (once per daemon). */
  let noted = false;
  /** The kernel's queue figures; logs once why they are missing when the file cannot be read. */
  const kernelFigures = async () => {
    const kernel = await kernelQueues();
    if (typeof kernel === "string" && !noted) {
      noted = true;
      scope.postMessage({
        type: "note",
        message: `metrics: cannot read ${PROC_QUEUES}: ${kernel}; ` +
          "/metrics leaves out the kernel's queue figures (nfqlb_kernel_queue_*, " +
          "nfqlb_kernel_queue_figures_available 0) and /healthz takes the queues as bound " +
          "from the queue threads (the file is root's, mode 0440: a non-root daemon cannot read it)",
      });
    }
    return kernel;
  };
  // At start: the line about an unreadable list comes once, before any scrape.
  void kernelFigures();

  const metrics = async (): Promise<string> => {
    const shm = stats();
    const kernel = await kernelFigures();
    const q = shm === undefined ? undefined : readQueueCounters(shm);
    const frag = shm === undefined ? undefined : { ...readStats(shm), ...readStatsExt(shm) };
    const flows = (snapshot?.flows ?? []).map((f, i) => ({
      name: f.name,
      table: f.target ?? "",
      matches: counters?.count(snapshot!.slots[i]) ?? 0,
      pending: snapshot!.pending[i] !== 0,
    }));
    return formatMetrics({
      version: start.version,
      deno: Deno.version.deno,
      queues: q?.queues ?? [],
      fwmarks: q?.fwmarks ?? [],
      kernel: typeof kernel === "string" ? undefined : kernel,
      flows,
      tables: tables().length,
      fragments: frag,
      fastpath: fastpath?.slice(),
    });
  };

  const health = async (): Promise<string[]> => {
    const kernel = await kernelFigures();
    const states = new Map<string, TableHealth>();
    for (const name of tables()) states.set(name, tableHealth(name));
    const shm = stats();
    // Not readable (non-root): the queue threads' own word says which queues they hold.
    const own = typeof kernel === "string" && shm !== undefined
      ? readBoundQueues(shm, Deno.pid)
      : undefined;
    const now = Date.now();
    const sendStuck = (shm === undefined ? [] : readSendStuck(shm)).map((s) => ({
      queue: s.queue,
      forMs: now - s.sinceMs,
      error: strerror(s.errno),
    }));
    return healthProblems({
      queueFirst: start.queueFirst,
      queueLast: start.queueLast,
      bound: typeof kernel !== "string" ? new Set(kernel.keys()) : own ?? kernel,
      boundFromDaemon: typeof kernel === "string" && own !== undefined ? kernel : undefined,
      tables: states,
      target: start.target,
      flows: start.flows === undefined ? undefined : snapshot?.flows ?? [],
      sendStuck,
    });
  };

  try {
    Deno.serve({
      hostname: start.hostname,
      port: start.port,
      onListen: () => {
        const host = start.hostname.includes(":") ? `[${start.hostname}]` : start.hostname;
        scope.postMessage({ type: "listening", address: `${host}:${start.port}` });
      },
      onError: (e) => new Response(`error: ${e}\n`, { status: 500 }),
    }, async (req) => {
      const path = new URL(req.url).pathname;
      if (req.method !== "GET" && req.method !== "HEAD") {
        return new Response("only GET\n", { status: 405, headers: { allow: "GET, HEAD" } });
      }
      if (path === "/metrics") {
        return new Response(await metrics(), {
          headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
        });
      }
      if (path === "/healthz") {
        const problems = await health();
        return problems.length === 0
          ? new Response("ok\n")
          : new Response(problems.join("\n") + "\n", { status: 503 });
      }
      return new Response("not found: try /metrics or /healthz\n", { status: 404 });
    });
  } catch (e) {
    scope.postMessage({
      type: "error",
      message: `Metrics server bind: ${e instanceof Error ? e.message : String(e)}`,
    });
  }
}

scope.onmessage = (e) => {
  const m = e.data;
  if ("type" in m) {
    if (m.type === "flows" && (snapshot === undefined || m.snapshot.version > snapshot.version)) {
      snapshot = m.snapshot;
    }
    return;
  }
  serve(m);
};
