/**
 * One queue socket of a queue thread (./queue_worker.ts), in two steps. {@link bindQueue} maps
 * the queue's tables and the trace object and binds the queue: everything that can fail, and
 * nothing shared is written. {@link BoundQueue.start}, once the main thread's `go` has come (every
 * queue of the daemon is bound, `ftshm` is initialised), maps `ftshm`, attaches to the one
 * fragment table, builds the queue's decider and its per-batch hook, and returns what the packet
 * loop serves. A thread holds one or several of these (./packet_loops.ts); each keeps its own
 * counters block, trace and log rings, flow-counter lane and fast-path offer ring, as when every
 * queue had a thread of its own.
 *
 * The hook (per batch, after the receive) reads the trace mask and the log level from
 * `nfqlb-trace`, checks the mapped tables every 100 ms, and for `flowlb` installs new flow
 * snapshots: they arrive as messages to the thread ({@link NewestSnapshots}), the main thread
 * bumps a shared version counter, and the hook swaps in a newly compiled flow set between two
 * batches (old or new for a whole batch, never a mix). Trace lines and log lines go to two
 * bounded rings read by the trace thread, so writing them never blocks the packet path.
 * @module
 */
import { NfQueue } from "../ffi/nfqueue.ts";
import { startupLine } from "../lib/nfqueue/rcvbuf.ts";
import { openShm } from "../ffi/shm.ts";
import type { TraceSink } from "../lib/trace/mask.ts";
import { TraceRing } from "../lib/trace/ring.ts";
import { LOGLEVEL_WORD, MASK_WORD, openTraceShm } from "./open_trace_shm.ts";
import { clockSince } from "./packet_loop.ts";
import type { LoopLane } from "./packet_loops.ts";
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

/** Shared flow state handed to `flowlb` queue threads, one lane per queue. */
export interface FlowChannel {
  /** This queue's counter lane. */
  readonly lane: number;
  readonly counters: SharedArrayBuffer;
  readonly lanes: number;
  readonly capacity: number;
  /** Int32Array over it: [0] = version of the newest flow snapshot sent, [1] of trace flows. */
  readonly version: SharedArrayBuffer;
  /**
   * Int32Array over it: [lane] = flow version this queue has installed, [lanes + lane] = its
   * trace-flow version (both notified on change).
   */
  readonly applied: SharedArrayBuffer;
  readonly snapshot: FlowSnapshot;
  /** The trace flows' match counters (same lanes) and their first snapshot. */
  readonly traceCounters: SharedArrayBuffer;
  readonly traceCapacity: number;
  readonly traceSnapshot: FlowSnapshot;
}

/** What every queue of one thread shares. */
export interface QueueGroupCommon {
  readonly config: DaemonConfig;
  /** Int32Array over it: [0] = stop requested. */
  readonly stop: SharedArrayBuffer;
  /** The memory of the fragment table all queues share. */
  readonly fragments: SharedArrayBuffer;
  /** The main thread's `performance.timeOrigin`: the queue threads' common clock starts there. */
  readonly originMs: number;
  /** The `--tun` device the main thread attached (its descriptor is this process's). */
  readonly tun?: { readonly fd: number; readonly name: string };
}

/** What one queue of a thread gets. */
export interface QueueLaneStart {
  readonly queue: number;
  /** This queue's trace ring (read by the trace thread). */
  readonly trace: SharedArrayBuffer;
  /** This queue's log ring (read by the trace thread, written to stderr). */
  readonly log: SharedArrayBuffer;
  /** Present for `flowlb`. */
  readonly flows?: FlowChannel;
  /** `--fastpath`: this queue's offer ring and the channel shared with the writer. */
  readonly fastpath?: FastPathLane;
}

/** The newest snapshots the thread received, by kind (one object for all its queues). */
export interface NewestSnapshots {
  flows?: FlowSnapshot;
  traces?: FlowSnapshot;
}

/** A queue started: its `queue_length=` line, its socket's port id, what the loop serves. */
export interface StartedQueue {
  readonly line: string;
  readonly portId: number;
  readonly lane: LoopLane;
}

/** A bound queue waiting for `go`. */
export interface BoundQueue {
  readonly queue: number;
  /** After `go`: map `ftshm`, build the decider; throws as {@link bindQueue}. */
  start(): StartedQueue;
  /** Close what the queue opened (its socket last-but-one: tables after). Idempotent. */
  close(): void;
}

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

/**
 * Bind queue `l.queue`: map its tables (lb's target table, the LB tier) and the trace object,
 * open and bind the queue. Nothing shared is written until {@link BoundQueue.start}. Throws
 * `NfQueueError` (naming the queue) or the error of a table that cannot be mapped.
 */
export function bindQueue(
  g: QueueGroupCommon,
  l: QueueLaneStart,
  newest: NewestSnapshots,
): BoundQueue {
  const { config: c } = g;
  const { queue } = l;
  const stop = new Int32Array(g.stop);
  const owned: { close(): void }[] = [];
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    for (const o of owned.reverse()) o.close();
  };
  // --fastpath: tell the writer when this queue's decisions change (it flushes the maps).
  let decisionsChanged = () => {};
  let decider: LbDecider | FlowLbDecider;
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
    const ch = l.flows;
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
    // The trace mask and log level are read once per batch; lines go to this queue's rings.
    const traceShm = openTraceShm();
    owned.push(traceShm);
    const traceWords = traceShm.words;
    const ring = new TraceRing(l.trace);
    const logRing = new TraceRing(l.log);
    const trace: TraceSink = {
      mask: 0,
      level: 0,
      line: (text) => ring.write(text),
      log: (text, level = LOG_WARNING) => logRing.write(logLine(level, text)),
    };
    /** This queue's counters, once they are ours (after "go"). */
    const mapped: { counts?: Float64Array } = {};
    /** Tables that could not be mapped before "go" (counted then). */
    let unmappedBeforeGo = 0;
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
    // The rest reads and maps but writes nothing shared: done before "go", it is not on the
    // path from the gate to the `queue_length=` line.
    const ft = openShm(c.ftShm, true);
    owned.push(ft);
    // One clock for all queue threads: the fragment table they share compares their times.
    const clock = clockSince(g.originMs);
    const fragments = new FragTable({
      size: c.ftSize,
      buckets: c.ftBuckets,
      frags: c.ftFrag,
      mtu: c.mtu,
      ttlMs: c.ftTtl,
      reassembler: c.reassembler,
      // One table for all queues (fragments of a datagram may reach different queues).
      memory: g.fragments,
      stats: ft.buffer,
      // The main thread initialised the object; queues share its counters.
      initStats: false,
      inject: g.tun === undefined ? undefined : injector(g.tun, trace),
    });
    // This queue's block of counters in the ftshm object (one writer: this queue's loop).
    const counters = new QueueCounters(ft.buffer, queue - c.queueFirst);
    const common = {
      counts: counters.counts,
      lbTier: lbTier?.table,
      fragments,
      hashMode: c.hashMode,
      notargetsFwmark: c.notargetsFwmark,
      trace,
    };
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
      // A table this queue cannot map is counted, logged once and retried every 100 ms; before
      // "go" (the first install) it is counted once the counters are ours.
      const cache = new TableCache((name, why) => {
        if (mapped.counts !== undefined) mapped.counts[C_TABLE_OPEN_ERRORS]++;
        else unmappedBeforeGo++;
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
    const fp = l.fastpath;
    const offload = fp === undefined ? undefined : new Offload(fp.ring, fp.channel, decider);
    if (offload !== undefined) decisionsChanged = () => offload.changed();
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
    const started: StartedQueue = {
      line: startupLine(c.qlength, c.mtu, q.rcvbuf),
      // The port id lets the main thread wake this socket's receive (flow change, stop).
      portId: q.portId,
      lane: {
        q,
        decider,
        options: {
          hook,
          truncated: reassembledCounter(ft.buffer, c, queue, trace),
          clock,
          counters,
          offload,
        },
      },
    };
    const start = (): StartedQueue => {
      // Counted from now on (transient errors too).
      mapped.counts = counters.counts;
      counters.counts[C_TABLE_OPEN_ERRORS] += unmappedBeforeGo;
      // The queue is bound: say so for /healthz, which cannot always read the kernel's list.
      // The pid: a word another daemon sharing the object left or wrote is not this one's.
      counters.counts[C_BOUND] = Deno.pid;
      owned.push({
        close: () => {
          if (counters.counts[C_BOUND] === Deno.pid) counters.counts[C_BOUND] = 0;
        },
      });
      return started;
    };
    return { queue, start, close };
  } catch (e) {
    close();
    throw e;
  }
}
