/**
 * One NFQUEUE reader thread of `nfqlb lb` or `nfqlb flowlb`: maps the tables
 * itself, opens its queue, then runs the packet loop (`./packet_loop.ts`)
 * until the shared stop flag is set. Its per-batch hook reads the trace mask
 * and the log level from `nfqlb-trace`, and for `flowlb` installs new flow
 * snapshots: they arrive as messages, the main thread bumps a shared version
 * counter, and the hook swaps in a newly compiled flow set between two
 * batches (old or new for a whole batch, never a mix). Trace lines and log
 * lines go to two bounded rings read by the trace thread, so writing them
 * never blocks the packet path.
 *
 * Start-up: the thread maps its tables and binds its queue, reports `bound`, and waits for
 * the main thread's `go`, which comes once every queue is bound and the `ftshm` object is
 * initialised (or with the stop flag set, when another thread failed to start); only then does it
 * map `ftshm` and count into it.
 *
 * Messages to the main thread: `bound`, `started` (with the start-up line and the queue
 * socket's netlink port id, where the main thread sends its wake message), `stopped`,
 * or `error` (a one-line message that names the queue).
 * @module
 */
import { NfQueue, NfQueueError } from "../ffi/nfqueue.ts";
import { startupLine } from "../lib/nfqueue/rcvbuf.ts";
import { openShm } from "../ffi/shm.ts";
import type { TraceSink } from "../lib/trace/mask.ts";
import { TraceRing } from "../lib/trace/ring.ts";
import { LOGLEVEL_WORD, MASK_WORD, openTraceShm } from "./open_trace_shm.ts";
import { clockSince, runPacketLoop } from "./packet_loop.ts";
import { FragTable, type InjectFn } from "../lib/frag/table.ts";
import { TunDevice } from "../ffi/tun.ts";
import { strerror } from "../ffi/libc.ts";
import { LogRateLimiter } from "../lib/log/rate_limit.ts";
import { LOG_WARNING, logLine } from "../lib/log/levels.ts";
import { FT_OFF_KERNEL_REASSEMBLED, FTSHM_EXT_SIZE } from "../lib/frag/stats.ts";
import {
  C_BOUND,
  C_TABLE_OPEN_ERRORS,
  C_VERDICT_ERRORS,
  QueueCounters,
} from "../lib/counters/queue_counters.ts";
import { sendDone, transientErrors } from "./transient_errors.ts";
import { FlowLbDecider, FlowSet } from "../lib/decide/flowlb.ts";
import { type FlowSnapshot, MatchCounters, matchingFlows } from "../lib/flow/store.ts";
import { LbDecider } from "../lib/decide/lb.ts";
import type { MaglevTable } from "../lib/maglev/table.ts";
import type { DaemonConfig } from "./options.ts";
import type { FastPathLane } from "./fastpath_thread.ts";
import { Offload } from "../lib/fastpath/offload.ts";
import { type OpenTable, openTable } from "./open_table.ts";
import { CHECK_INTERVAL_MS, TableCache, unmappedLine, WatchedTable } from "./table_watch.ts";

/** Shared flow state handed to `flowlb` queue threads. */
export interface FlowChannel {
  /** This thread's counter lane. */
  readonly lane: number;
  readonly counters: SharedArrayBuffer;
  readonly lanes: number;
  readonly capacity: number;
  /** Int32Array over it: [0] = version of the newest flow snapshot sent, [1] of trace flows. */
  readonly version: SharedArrayBuffer;
  /**
   * Int32Array over it: [lane] = flow version this thread has installed, [lanes + lane] = its
   * trace-flow version (both notified on change).
   */
  readonly applied: SharedArrayBuffer;
  readonly snapshot: FlowSnapshot;
  /** The trace flows' match counters (same lanes) and their first snapshot. */
  readonly traceCounters: SharedArrayBuffer;
  readonly traceCapacity: number;
  readonly traceSnapshot: FlowSnapshot;
}

/** A snapshot message from the main thread: flows or trace flows. */
type SnapshotMessage = { type: "flows" | "traces"; snapshot: FlowSnapshot };

/** The message that starts a worker. */
export interface QueueWorkerStart {
  readonly config: DaemonConfig;
  readonly queue: number;
  /** Int32Array over it: [0] = stop requested. */
  readonly stop: SharedArrayBuffer;
  /** This thread's trace ring (read by the trace thread). */
  readonly trace: SharedArrayBuffer;
  /** This thread's log ring (read by the trace thread, written to stderr). */
  readonly log: SharedArrayBuffer;
  /** The memory of the fragment table all queue threads share. */
  readonly fragments: SharedArrayBuffer;
  /** The main thread's `performance.timeOrigin`: the queue threads' common clock starts there. */
  readonly originMs: number;
  /** The `--tun` device the main thread attached (its descriptor is this process's). */
  readonly tun?: { readonly fd: number; readonly name: string };
  /** Present for `flowlb`. */
  readonly flows?: FlowChannel;
  /** `--fastpath`: this thread's offer ring and the channel shared with the writer. */
  readonly fastpath?: FastPathLane;
}

/**
 * The message that lets a bound worker go on (the shared objects are initialised), or stop
 * (`stop[0]` is set: another thread failed to start).
 */
export type QueueWorkerGo = { type: "go" };

/** Messages a worker sends. */
export type QueueWorkerMessage =
  | { type: "bound"; queue: number }
  | { type: "started"; queue: number; line: string; portId: number }
  | { type: "stopped"; queue: number; packets: number }
  /** `message`: the whole line, naming the queue. */
  | { type: "error"; queue: number; message: string };

/** The worker global scope (typed here: this module is also type-checked with the CLI). */
const scope = self as unknown as {
  postMessage(m: QueueWorkerMessage): void;
  onmessage:
    | ((e: MessageEvent<QueueWorkerStart | SnapshotMessage | QueueWorkerGo>) => void)
    | null;
};

/** The newest snapshots received, by kind. */
const newest: { flows?: FlowSnapshot; traces?: FlowSnapshot } = {};

let goReceived = () => {};
/** Resolves when the main thread's `go` message has arrived. */
const goMessage = new Promise<void>((r) => goReceived = r);

/** Replace a table a decider holds (its fields are read-only to the rest of the program). */
function setField<K extends string>(holder: object, key: K, t: MaglevTable): void {
  (holder as Record<K, MaglevTable>)[key] = t;
}

/** Rate limit of the `injectFrag` warning (docs/COMPATIBILITY.md#trace-and-log). */
const INJECT_LOG = { burst: 5, intervalMs: 10_000 };

/**
 * Writes stored fragments to the tun device; a failed write is counted by the fragment table
 * (the returned false) and logged as 1.2.0 does, rate-limited.
 */
function injector(dev: { fd: number; name: string }, trace: TraceSink): InjectFn {
  const tun = TunDevice.fromFd(dev.name, dev.fd, 0);
  const limiter = new LogRateLimiter(INJECT_LOG);
  return (bytes, len) => {
    const rc = tun.write(bytes, len);
    if (rc === len) return true;
    if ((trace.level ?? 0) >= LOG_WARNING) {
      const why = rc < 0 ? ` (${strerror(tun.lastErrno())})` : "";
      for (
        const l of limiter.offer(
          "inject",
          `FAILED: injectFrag write(${len}), rc=${rc}${why}`,
          performance.now(),
        )
      ) {
        trace.log?.(l);
      }
    }
    return false;
  };
}

/**
 * Main buckets of the fragment table each queue thread sweeps per check (every 100 ms), under
 * the table's lock: small enough that another thread's fragment waits at most ~0.1 ms.
 */
const SWEEP_BUCKETS = 4096;

/** Rate limit of the "reassembled before the queue" warning: once a minute, then a summary. */
const REASSEMBLED_LOG = { burst: 1, intervalMs: 60_000 };

/**
 * Counts queued packets longer than `--mtu` in the `ftshm` object (`kernelReassembled`) and
 * warns, rate-limited: something before the queue reassembled fragments (docs/COMPATIBILITY.md#fragments).
 */
function reassembledCounter(
  ftshm: ArrayBuffer,
  c: DaemonConfig,
  queue: number,
  trace: TraceSink,
): (n: number) => void {
  const words = ftshm.byteLength >= FTSHM_EXT_SIZE
    ? new Uint32Array(ftshm, 0, FTSHM_EXT_SIZE >>> 2)
    : undefined;
  const limiter = new LogRateLimiter(REASSEMBLED_LOG);
  const text = `queue ${queue}: packets longer than --mtu=${c.mtu} reached the queue: something ` +
    "before it reassembled fragments or aggregated packets (conntrack/nf_defrag in this network " +
    "namespace, GRO/LRO on the ingress device, or a bridge); fragments are then not load-balanced " +
    "one by one. Keep conntrack rules out of this namespace (iptables' NOTRACK runs after " +
    "defragmentation; nft notrack at priority -500 does not), turn GRO/LRO off, or raise --mtu for jumbo " +
    "frames; `nfqlb doctor` checks the namespace";
  return (n) => {
    if (words !== undefined) Atomics.add(words, FT_OFF_KERNEL_REASSEMBLED >>> 2, n);
    if ((trace.level ?? 0) < LOG_WARNING) return;
    for (const l of limiter.offer("reassembled", text, performance.now())) trace.log?.(l);
  };
}

async function serve(start: QueueWorkerStart): Promise<void> {
  const { config: c, queue } = start;
  const stop = new Int32Array(start.stop);
  const owned: { close(): void }[] = [];
  // --fastpath: tell the writer when this thread's decisions change (it flushes the maps).
  let decisionsChanged = () => {};
  try {
    // Everything that can fail comes before the bind; nothing shared is written until "go".
    const lbTier = c.lbshm === "" ? undefined : openTable(c.lbshm, false);
    /** Tables checked for truncation (docs/COMPATIBILITY.md#shared-memory). */
    const watched: WatchedTable[] = [];
    if (lbTier !== undefined) {
      const w = new WatchedTable(c.lbshm, lbTier, (t) => {
        setField(decider.fragments, "tier", t);
        decisionsChanged();
      });
      watched.push(w);
      owned.push(w);
    }
    const ch = start.flows;
    /** lb: the target table (flowlb maps its flows' tables when it installs them). */
    let target: OpenTable | undefined;
    if (ch === undefined) {
      target = openTable(c.tshm, false);
      const w = new WatchedTable(c.tshm, target, (t) => {
        setField(decider, "table", t);
        decisionsChanged();
      });
      watched.push(w);
      owned.push(w);
    }
    // The trace mask and log level are read once per batch; lines go to this thread's rings.
    const traceShm = openTraceShm();
    owned.push(traceShm);
    const traceWords = traceShm.words;
    const ring = new TraceRing(start.trace);
    const logRing = new TraceRing(start.log);
    const trace: TraceSink = {
      mask: 0,
      level: 0,
      line: (text) => ring.write(text),
      log: (text, level = LOG_WARNING) => logRing.write(logLine(level, text)),
    };
    /** This queue's counters, once mapped (after "go"). */
    const mapped: { counts?: Float64Array } = {};
    const q = NfQueue.open({
      queue,
      mtu: c.mtu,
      qlength: c.qlength,
      failOpen: c.failOpen,
      // Transient receive/send errors are counted, logged and retried; a send gives up on stop,
      // and after SEND_RETRY_LIMIT_MS with an error that stops the daemon. While it fails, the
      // queue's block says since when (for /healthz).
      stop,
      onTransientError: transientErrors(queue, trace, () => mapped.counts),
      onSendDone: sendDone(() => mapped.counts),
    });
    owned.push(q);
    // The queue is ours now; the main thread initialises the ftshm object once every queue is
    // bound (a second daemon whose queue is taken stops before it touches the first's counters).
    scope.postMessage({ type: "bound", queue });
    await goMessage;
    if (Atomics.load(stop, 0) !== 0) {
      scope.postMessage({ type: "stopped", queue, packets: 0 });
      return;
    }
    const ft = openShm(c.ftShm, true);
    owned.push(ft);
    // One clock for all queue threads: the fragment table they share compares their times.
    const clock = clockSince(start.originMs);
    const fragments = new FragTable({
      size: c.ftSize,
      buckets: c.ftBuckets,
      frags: c.ftFrag,
      mtu: c.mtu,
      ttlMs: c.ftTtl,
      reassembler: c.reassembler,
      // One table for all queue threads (fragments of a datagram may reach different queues).
      memory: start.fragments,
      stats: ft.buffer,
      // The main thread initialised the object; queue threads share its counters.
      initStats: false,
      inject: start.tun === undefined ? undefined : injector(start.tun, trace),
    });
    // This queue's block of counters in the ftshm object (one writer: this thread).
    const counters = new QueueCounters(ft.buffer, queue - c.queueFirst);
    mapped.counts = counters.counts;
    // The queue is bound (above): say so for /healthz, which cannot always read the kernel's list.
    // The pid: a word another daemon sharing the object left or wrote is not this one's.
    counters.counts[C_BOUND] = Deno.pid;
    owned.push({
      close: () => {
        if (counters.counts[C_BOUND] === Deno.pid) counters.counts[C_BOUND] = 0;
      },
    });
    const common = {
      counts: counters.counts,
      lbTier: lbTier?.table,
      fragments,
      hashMode: c.hashMode,
      notargetsFwmark: c.notargetsFwmark,
      trace,
    };
    let decider: LbDecider | FlowLbDecider;
    /** flowlb: true when a newer flow snapshot than the installed one was announced. */
    let flowsChanged = () => false;
    /** flowlb: wait for the announced snapshot's message, then install it. */
    let flowSync = async () => {};
    /** flowlb: drop truncated flow tables (and map them again when valid). */
    let checkFlowTables = () => {};
    if (ch === undefined) {
      decider = new LbDecider({ ...common, table: target!.table, udpencap: c.sctpEncap });
    } else {
      const d = new FlowLbDecider({
        ...common,
        nolbFwmark: c.nolbFwmark,
        promiscuousPing: c.promiscuousPing,
      });
      decider = d;
      const lane = new MatchCounters(ch.lanes, ch.capacity, ch.counters).lane(ch.lane);
      const version = new Int32Array(ch.version);
      const applied = new Int32Array(ch.applied);
      // A table this thread cannot map is counted, logged once and retried every 100 ms.
      const cache = new TableCache((name, why) => {
        counters.counts[C_TABLE_OPEN_ERRORS]++;
        trace.log!(`queue ${queue}: ${unmappedLine(name, why)}`);
      });
      owned.push(cache);
      let current = ch.snapshot;
      const install = (s: FlowSnapshot) => {
        // Pending flows (no table yet, D58) match nothing: they are left out.
        const m = matchingFlows(s);
        d.setFlows(new FlowSet(m.flows, cache.tablesFor(m), m.slots, lane));
        cache.prune(m);
        current = s;
        // Applied first, then the event: the writer's switch after the event then counts this
        // lane's version (fastpath_worker.ts), even when it wakes at once (lib/fastpath/channel.ts).
        Atomics.store(applied, ch.lane, s.version);
        Atomics.notify(applied, ch.lane);
        decisionsChanged();
      };
      install(current);
      const traceLane = new MatchCounters(ch.lanes, ch.traceCapacity, ch.traceCounters)
        .lane(ch.lane);
      let currentTraces = ch.traceSnapshot;
      const installTraces = (s: FlowSnapshot) => {
        d.setTraceFlows(new FlowSet(s.flows, [], s.slots, traceLane, true));
        currentTraces = s;
        Atomics.store(applied, ch.lanes + ch.lane, s.version);
        Atomics.notify(applied, ch.lanes + ch.lane);
        decisionsChanged();
      };
      installTraces(currentTraces);
      checkFlowTables = () => {
        const dropped = cache.check(trace.log!);
        if (dropped === undefined) return;
        install(current); // a set without the dropped tables, before they are unmapped
        for (const t of dropped) t.close();
      };
      flowsChanged = () =>
        Atomics.load(version, 0) !== current.version ||
        Atomics.load(version, 1) !== currentTraces.version;
      flowSync = async () => {
        const want = Atomics.load(version, 0);
        const wantTraces = Atomics.load(version, 1);
        const needFlows = want !== current.version;
        const needTraces = wantTraces !== currentTraces.version;
        // The snapshot messages were posted before the versions were bumped: let them arrive.
        while (
          (needFlows && (newest.flows?.version ?? -1) < want) ||
          (needTraces && (newest.traces?.version ?? -1) < wantTraces)
        ) {
          await new Promise((r) => setTimeout(r, 0));
          if (Atomics.load(stop, 0) !== 0) return;
        }
        if (needFlows) install(newest.flows!);
        if (needTraces) installTraces(newest.traces!);
      };
    }
    const fp = start.fastpath;
    const offload = fp === undefined ? undefined : new Offload(fp.ring, fp.channel, decider);
    if (offload !== undefined) decisionsChanged = () => offload.changed();
    const line = startupLine(c.qlength, c.mtu, q.rcvbuf);
    // The port id lets the main thread wake this thread's receive (flow change, stop).
    scope.postMessage({ type: "started", queue, line, portId: q.portId });
    let nextCheck = performance.now() + CHECK_INTERVAL_MS;
    // After the receive, so a batch is decided with the newest flow set, mask and level.
    const hook = () => {
      trace.mask = traceWords[MASK_WORD] >>> 0;
      trace.level = traceWords[LOGLEVEL_WORD];
      counters.counts[C_VERDICT_ERRORS] = q.verdictErrorCount;
      const now = performance.now();
      if (now >= nextCheck) {
        nextCheck = now + CHECK_INTERVAL_MS;
        for (const w of watched) w.check(trace.log!);
        checkFlowTables();
        // Entries no packet touches again give back their buffers and buckets.
        fragments.sweep(clock(), SWEEP_BUCKETS);
      }
      return flowsChanged() ? flowSync() : undefined;
    };
    const packets = await runPacketLoop(q, decider, stop, {
      hook,
      truncated: reassembledCounter(ft.buffer, c, queue, trace),
      clock,
      counters,
      offload,
    });
    scope.postMessage({ type: "stopped", queue, packets });
  } finally {
    for (const o of owned.reverse()) o.close();
  }
}

scope.onmessage = (e) => {
  const m = e.data;
  if ("type" in m) {
    if (m.type === "go") {
      goReceived();
      return;
    }
    const old = newest[m.type];
    if (old === undefined || m.snapshot.version > old.version) newest[m.type] = m.snapshot;
    return;
  }
  serve(m).catch((err) => {
    // NfQueueError messages name their queue already ("queue 3 is in use by another process").
    const message = err instanceof NfQueueError
      ? err.message
      : `queue ${m.queue}: ${err instanceof Error ? err.message : String(err)}`;
    scope.postMessage({ type: "error", queue: m.queue, message });
  });
};
