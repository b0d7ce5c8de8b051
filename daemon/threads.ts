/**
 * What `lb` and `flowlb` share: the start-up sequence after option parsing
 * (fragment statistics object, `FragTable;` line) and the queue threads, stopped cleanly on
 * SIGTERM/SIGINT (docs/COMPATIBILITY.md#nfqueue).
 *
 * Queue threads: one per queue, or `--queue-threads=N` of them (one V8 isolate, ~12 MB, each;
 * see {@link queueThreadCount} for what fewer cost in throughput). Queue i of `--queue` (its lane)
 * goes to thread i mod that number; each thread owns its queues' sockets from bind to close (./queue_worker.ts), and serves
 * several with one `poll` (./packet_loops.ts). Everything else stays per queue: its socket and
 * port id, its counters block in `ftshm`, its trace and log rings, its flow-counter lane, its
 * fast-path offer ring, its `queue_length=` line.
 *
 * Flow changes and stop reach the queues the same way whatever thread serves them: the main
 * thread posts the snapshot to every queue thread, bumps the version word, then sends a wake
 * message to every queue socket's port id (`QueueWaker`), so a thread blocked in a receive or a
 * `poll` goes round at once and each queue's hook installs the snapshot. Stop: the stop flag is
 * set, every socket is woken, each thread ends its loop, closes its sockets (which unbinds the
 * queues) and reports `stopped`; the daemon ends when every queue thread has, then the trace
 * thread and the fast-path writer.
 *
 * Start-up order: the queue threads are spawned first ({@link spawnQueueThreads}, before the
 * control thread and the fast-path writer start, so their modules load meanwhile) and bind as soon
 * as they get their start message; the trace thread, which only drains rings, starts once every
 * queue is bound. The `ftshm` object is zeroed and initialised only once every queue is bound
 * (and the metrics server listens): a daemon that cannot start leaves a running one's counters
 * alone (D57).
 * @module
 */
import { openTraceShm } from "./open_trace_shm.ts";
import { LOG_WARNING, logLine } from "../lib/log/levels.ts";
import { LibcError } from "../ffi/libc.ts";
import { QueueWaker } from "../ffi/nfqueue.ts";
import { createShm, type ShmMapping, type ShmOwner } from "../ffi/shm.ts";
import { TunDevice, TunError } from "../ffi/tun.ts";
import { initFtStats } from "../lib/frag/stats.ts";
import { countersSize, writeCountersHeader } from "../lib/counters/queue_counters.ts";
import { FragTable } from "../lib/frag/table.ts";
import { ShmUntrustedError, TunOpenError } from "./errors.ts";
import { shmCreateError } from "./shm_denied.ts";
import type { Io } from "./io.ts";
import type { DaemonConfig } from "./options.ts";
import { adoptProblem, checkTable } from "./open_table.ts";
import type {
  FlowChannel,
  QueueWorkerGo,
  QueueWorkerMessage,
  QueueWorkerStart,
} from "./queue_worker.ts";
import type { TraceMessage, TraceStart } from "./trace_worker.ts";
import type { MetricsMessage, MetricsStart } from "./metrics_worker.ts";
import { VERSION } from "../lib/version.ts";
import { workerUrl } from "./worker_url.ts";
import { parseSocketAddress } from "../lib/ccompat/sockaddr.ts";
import { TraceRing } from "../lib/trace/ring.ts";
import { ringWriter } from "../lib/fastpath/channel.ts";
import type { FastPathThread } from "./fastpath_thread.ts";

/** Bytes of trace lines a thread may have waiting for the trace thread. */
export const TRACE_RING_BYTES = 256 * 1024;

/** What the start-up prepared for the queue threads. */
export interface Prepared {
  /** The options, with the effective `ft_frag`. */
  readonly config: DaemonConfig;
  /** The memory of the one fragment table all queue threads share. */
  readonly fragments: SharedArrayBuffer;
  /** The `--tun` device, attached. */
  readonly tun?: TunDevice;
  /**
   * Zero the `--ft_shm` object and write its static fields and the counters header. Called once
   * every queue is bound, so a daemon that fails to start never touches the counters of one that
   * runs with the same object. Idempotent.
   */
  initShared(): void;
  /** Close what was opened (the tun device), once the queue threads have stopped. */
  release(): void;
}

/**
 * Steps 2–5 of the start-up (docs/COMPATIBILITY.md#nfqueue): check the LB-tier table, create the
 * fragment statistics object (or open and grow an existing one; it is zeroed later, by
 * {@link Prepared.initShared}), attach the `--tun` device, print the `FragTable;`
 * line, and allocate the shared fragment table. Throws a `TableOpenError`
 * (LB-tier table), {@link ShmCreateError} (`--ft_shm`) or {@link TunOpenError}.
 */
export function prepareDaemon(io: Io, c: DaemonConfig): Prepared {
  // Every thread maps the trace object: a refused one (planted, D46) fails here, once.
  openTraceShm().close();
  if (c.lbshm !== "") checkTable(c.lbshm, "lbshm");
  let ft: ShmMapping | undefined;
  try {
    // Grow only: another daemon using the same name (with more queues) may have it mapped.
    // Nothing is written yet: that daemon may be running (docs/COMPATIBILITY.md#fragment-statistics-ftshm).
    // An existing object is used only if root or this uid owns it and others may not write it:
    // the queue threads count into it, and a planter could truncate it under them (SIGBUS).
    const adopt = (owner: ShmOwner) => {
      const problem = adoptProblem(owner, Deno.uid() ?? 0);
      if (problem !== undefined) throw new ShmUntrustedError(c.ftShm, problem);
    };
    ft = createShm(c.ftShm, countersSize(c.queueLast - c.queueFirst + 1), adopt, true);
  } catch (e) {
    if (e instanceof LibcError) {
      throw shmCreateError(c.ftShm, e, "--ft_shm=NAME (and nfqlb stats --ft_shm=NAME)");
    }
    throw e;
  }
  const sizes = {
    ttlMs: c.ftTtl,
    size: c.ftSize,
    mtu: c.mtu,
    buckets: c.ftBuckets,
    frags: c.ftFrag,
  };
  const closeFt = () => {
    ft?.close();
    ft = undefined;
  };
  const initShared = () => {
    if (ft === undefined) return;
    // An object left by an earlier run keeps no counts: all of it starts at zero.
    new Uint8Array(ft.buffer).fill(0);
    initFtStats(ft.buffer, sizes);
    writeCountersHeader(ft.buffer, c.queueFirst, c.queueLast - c.queueFirst + 1);
    closeFt();
  };
  let tun: TunDevice | undefined;
  if (c.tun !== "") {
    try {
      tun = TunDevice.open(c.tun, c.mtu);
    } catch (e) {
      closeFt();
      if (e instanceof TunError) throw new TunOpenError(c.tun, e.message);
      throw e;
    }
  }
  io.out(
    `FragTable; size=${c.ftSize}, buckets=${c.ftBuckets}, frag=${c.ftFrag}, mtu=${c.mtu}, ` +
      `ttl=${c.ftTtl}\n`,
  );
  let fragments: SharedArrayBuffer;
  try {
    const table = new FragTable({ ...sizes, reassembler: c.reassembler, shared: true });
    fragments = table.memory as SharedArrayBuffer;
  } catch (e) {
    tun?.close();
    closeFt();
    throw e;
  }
  return {
    config: c,
    fragments,
    tun,
    initShared,
    release: () => {
      closeFt();
      tun?.close();
    },
  };
}

/** Queue threads spawned (their modules loading), not yet started. */
export interface SpawnedQueueThreads {
  /** The threads, and the lanes (queue − first queue) each will serve. */
  readonly threads: readonly { readonly worker: Worker; readonly lanes: readonly number[] }[];
  /** Stop them (start-up failed before they were started). */
  terminate(): void;
}

/**
 * How many queue threads serve `queues` queues: one per queue unless `--queue-threads` asks for
 * fewer. Fewer threads use less memory (one V8 isolate, ~12 MB, each), but on 2 CPUs shared with
 * the traffic's sender, 2 threads serving 4 queues delivered ~20% less than 4 threads
 * (`./dev throughput`, flood, 4 queues): they stay runnable and get a smaller share of the CPUs.
 */
export function queueThreadCount(queues: number, requested = 0): number {
  return requested > 0 ? Math.min(queues, requested) : queues;
}

/**
 * Spawn the queue threads for `c.queueFirst..c.queueLast` ({@link queueThreadCount}; lane i to
 * thread i mod count). They load their modules and wait for {@link startQueueThreads}.
 */
export function spawnQueueThreads(c: DaemonConfig): SpawnedQueueThreads {
  const queues = c.queueLast - c.queueFirst + 1;
  const count = queueThreadCount(queues, c.queueThreads);
  const url = workerUrl("queue_worker.ts", import.meta.url);
  const threads = Array.from({ length: count }, (_, t) => {
    const lanes: number[] = [];
    for (let i = t; i < queues; i += count) lanes.push(i);
    const name = lanes.map((i) => `${c.queueFirst + i}`).join(",");
    return { worker: new Worker(url, { type: "module", name: `queue-${name}` }), lanes };
  });
  return { threads, terminate: () => threads.forEach((t) => t.worker.terminate()) };
}

/** Running queue threads. */
export interface QueueThreads {
  /** Resolves with the exit status once every thread has stopped. */
  readonly finished: Promise<number>;
  /**
   * Resolves once the start-up gate has opened: true when every queue is bound (and the metrics
   * server listens) and the shared objects are initialised, false when the daemon is stopping
   * instead (a thread failed to start, or a signal came first).
   */
  readonly started: Promise<boolean>;
  /** Send a message to every thread. */
  broadcast(message: unknown): void;
  /**
   * Wake every queue thread blocked in its receive, so it looks at the stop flag and the
   * flow version now instead of after the receive timeout (docs/ARCHITECTURE.md).
   */
  wake(): void;
}

/**
 * Start the trace server thread (docs/COMPATIBILITY.md#trace-and-log) on `--trace_address`, reading the
 * given rings; resolves when it has stopped (after `stop[0]` is set).
 */
function startTraceThread(
  io: Io,
  c: DaemonConfig,
  rings: SharedArrayBuffer[],
  logs: SharedArrayBuffer[],
  stop: SharedArrayBuffer,
): Promise<void> {
  const address = parseSocketAddress(c.traceAddress);
  if (address === undefined) return Promise.resolve(); // validated with the options
  const w = new Worker(workerUrl("trace_worker.ts", import.meta.url), {
    type: "module",
    name: "trace",
  });
  return new Promise<void>((resolve) => {
    w.onmessage = (e: MessageEvent<TraceMessage>) => {
      if (e.data.type === "warning") {
        io.err(logLine(LOG_WARNING, e.data.text) + "\n");
        return;
      }
      w.terminate();
      resolve();
    };
    w.onerror = (e) => {
      e.preventDefault();
      io.err(`trace thread: ${e.message}\n`);
      w.terminate();
      resolve();
    };
    const start: TraceStart = { address, addressText: c.traceAddress, rings, logs, stop };
    w.postMessage(start);
  });
}

/**
 * Start the metrics server thread (`--metrics`), if configured; `failed` gets the message
 * when it cannot serve. Its address is printed on stdout once it listens, then `listening` is
 * called.
 */
function startMetricsThread(
  io: Io,
  c: DaemonConfig,
  flows: FlowChannel | undefined,
  fastpath: FastPathThread | undefined,
  failed: (message: string) => void,
  listening: () => void,
): Worker | undefined {
  if (c.metrics === undefined) return undefined;
  const w = new Worker(workerUrl("metrics_worker.ts", import.meta.url), {
    type: "module",
    name: "metrics",
  });
  w.onmessage = (e: MessageEvent<MetricsMessage>) => {
    const m = e.data;
    if (m.type === "listening") {
      io.out(`Metrics; http://${m.address}/metrics\n`);
      listening();
    } else if (m.type === "note") io.err(`warning: ${m.message}\n`);
    else failed(m.message);
  };
  w.onerror = (e) => {
    e.preventDefault();
    failed(`metrics thread: ${e.message}`);
  };
  const tables = [...(flows === undefined ? [c.tshm] : []), ...(c.lbshm === "" ? [] : [c.lbshm])];
  const start: MetricsStart = {
    hostname: c.metrics.hostname,
    port: c.metrics.port,
    ftShm: c.ftShm,
    queueFirst: c.queueFirst,
    queueLast: c.queueLast,
    tables,
    target: flows === undefined ? c.tshm : undefined,
    fastpath: fastpath?.values,
    version: VERSION,
    flows: flows === undefined ? undefined : {
      counters: flows.counters,
      lanes: flows.lanes,
      capacity: flows.capacity,
      snapshot: flows.snapshot,
    },
  };
  w.postMessage(start);
  return w;
}

/**
 * Start the spawned queue threads, and, once every queue is bound, the trace server thread, which
 * also reads `controlTrace`, the control thread's trace ring (flowlb). `flows(lane)` gives the
 * flow channel of the queue with that lane (flowlb); `fastpath`, the running fast-path writer
 * (`--fastpath`), which is awaited at the end. Any thread's error stops all of them.
 */
export function startQueueThreads(
  io: Io,
  prepared: Prepared,
  spawned: SpawnedQueueThreads,
  stop: SharedArrayBuffer,
  controlTrace: SharedArrayBuffer | undefined,
  flows?: (lane: number) => FlowChannel,
  fastpath?: FastPathThread,
): QueueThreads {
  const c = prepared.config;
  const stopFlag = new Int32Array(stop);
  const workers = spawned.threads.map((t) => t.worker);
  const waker = new QueueWaker();
  /** Netlink port ids of the queue sockets, as the threads report them. */
  const portIds: number[] = [];
  const rings: SharedArrayBuffer[] = [];
  const logs: SharedArrayBuffer[] = [];
  for (let q = c.queueFirst; q <= c.queueLast; q++) {
    rings.push(TraceRing.create(TRACE_RING_BYTES));
    logs.push(TraceRing.create(TRACE_RING_BYTES));
  }
  // The control thread's ring first: its lines (a flow change) come before the packet lines that
  // follow the change, when one drain finds both.
  const traceRings = controlTrace === undefined ? rings : [controlTrace, ...rings];
  /**
   * The trace thread, started once every queue has printed its `queue_length=` line (nothing is
   * traced before "go"; the lines wait in the rings), and not at all when the start-up failed.
   */
  let traceDone: Promise<void> | undefined;
  const startTrace = () => traceDone ??= startTraceThread(io, c, traceRings, logs, stop);
  let unstarted = c.queueLast - c.queueFirst + 1;
  let gateOk = false;
  /**
   * What is left before the shared objects may be initialised: every queue bound, the metrics
   * server listening. Until then a failure leaves `ftshm` as it was (another daemon may use it).
   */
  let pending = c.queueLast - c.queueFirst + 1 + (c.metrics === undefined ? 0 : 1);
  let gateOpen = false;
  let started!: (ok: boolean) => void;
  const startedPromise = new Promise<boolean>((r) => started = r);
  /** Initialise the shared objects unless stopping, then let the bound threads go on. */
  const openGate = () => {
    if (gateOpen) return;
    gateOpen = true;
    const ok = Atomics.load(stopFlag, 0) === 0;
    if (ok) prepared.initShared();
    for (const w of workers) w.postMessage({ type: "go" } satisfies QueueWorkerGo);
    gateOk = ok;
    started(ok);
  };
  const startedPart = () => {
    if (--pending === 0) openGate();
  };
  const wake = () => {
    for (const p of portIds) waker.wake(p);
    // Threads still waiting for "go" see the stop flag when they get it.
    if (Atomics.load(stopFlag, 0) !== 0) openGate();
  };
  let running = 0;
  let status = 0;
  let done!: (status: number) => void;
  const queuesDone = new Promise<number>((r) => done = r);
  /** A thread failed: say so, stop every thread, exit 1. */
  const stopWith = (message: string) => {
    io.err(message + "\n");
    status = 1;
    Atomics.store(stopFlag, 0, 1);
    wake();
  };
  const ended = (w: Worker) => {
    w.terminate();
    if (--running === 0) done(status);
  };
  // The queues first: binding them is what a start-up waits for.
  for (const { worker: w, lanes } of spawned.threads) {
    running++;
    w.onmessage = (e: MessageEvent<QueueWorkerMessage>) => {
      const m = e.data;
      if (m.type === "bound") {
        startedPart();
        return;
      }
      if (m.type === "started") {
        io.out(m.line + "\n");
        if (--unstarted === 0) startTrace();
        if (m.portId !== 0) portIds.push(m.portId);
        // A stop requested before this queue reported its port id: wake it too.
        if (Atomics.load(stopFlag, 0) !== 0) waker.wake(m.portId);
        return;
      }
      if (m.type === "error") stopWith(m.message);
      ended(w);
    };
    w.onerror = (e) => {
      e.preventDefault();
      stopWith(`queue ${lanes.map((i) => c.queueFirst + i).join(",")}: ${e.message}`);
      ended(w);
    };
    const start: QueueWorkerStart = {
      config: c,
      stop,
      fragments: prepared.fragments,
      originMs: performance.timeOrigin,
      tun: prepared.tun === undefined
        ? undefined
        : { fd: prepared.tun.fd, name: prepared.tun.name },
      queues: lanes.map((lane) => ({
        queue: c.queueFirst + lane,
        trace: rings[lane],
        log: logs[lane],
        flows: flows?.(lane),
        fastpath: fastpath?.lane(lane),
      })),
    };
    w.postMessage(start);
  }
  const metrics = startMetricsThread(io, c, flows?.(0), fastpath, stopWith, startedPart);
  // The trace thread stops with the same flag; the daemon ends when both have stopped.
  const finished = queuesDone.then(async (s) => {
    metrics?.terminate();
    waker.close();
    prepared.release();
    Atomics.store(stopFlag, 0, 1);
    // A queue that failed after "go" may have logged: the trace thread drains the rings.
    if (gateOk) startTrace();
    await traceDone;
    // The writer removes the nftables table once the queue threads no longer offer; one asleep
    // is rung, so it sees the stop flag now rather than at its next 200 ms look.
    if (fastpath !== undefined) ringWriter(new Int32Array(fastpath.lane(0).channel));
    await fastpath?.stopped;
    return s;
  });
  // A start-up that never reaches the gate (every thread failed first) has not started.
  finished.then(() => started(false));
  return {
    finished,
    started: startedPromise,
    broadcast: (message) => {
      workers.forEach((w) => w.postMessage(message));
      metrics?.postMessage(message);
    },
    wake,
  };
}

/** Signals that stop the daemon. */
const STOP_SIGNALS: Deno.Signal[] = ["SIGTERM", "SIGINT"];
/** Signals whose default action (terminate) the daemon must not take: ignored. */
const IGNORED_SIGNALS: Deno.Signal[] = ["SIGHUP", "SIGUSR1", "SIGUSR2"];
const ignore = () => {};

/**
 * Ignore SIGHUP, SIGUSR1 and SIGUSR2 (their default action would kill the daemon) until
 * `finished` settles. Called first at start-up, so the window where they still kill is short.
 */
export function ignoreSignals(finished: Promise<unknown>): void {
  for (const s of IGNORED_SIGNALS) Deno.addSignalListener(s, ignore);
  finished.finally(() => {
    for (const s of IGNORED_SIGNALS) Deno.removeSignalListener(s, ignore);
  });
}

/**
 * Set `stop[0]` on SIGTERM/SIGINT until `finished` settles, and wake the queue threads
 * (`threads.wake`) so they see it at once.
 */
export function stopOnSignals(
  stop: SharedArrayBuffer,
  finished: Promise<unknown>,
  threads?: Pick<QueueThreads, "wake">,
): void {
  const flag = new Int32Array(stop);
  const onSignal = () => {
    Atomics.store(flag, 0, 1);
    threads?.wake();
  };
  for (const s of STOP_SIGNALS) Deno.addSignalListener(s, onSignal);
  finished.finally(() => {
    for (const s of STOP_SIGNALS) Deno.removeSignalListener(s, onSignal);
  });
}
