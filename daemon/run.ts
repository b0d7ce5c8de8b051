/**
 * The `lb` and `flowlb` processes after option parsing: check the tables,
 * prepare the shared objects, start the threads and run until SIGTERM or
 * SIGINT (`docs/ARCHITECTURE.md`). Start-up failures are thrown as
 * `DaemonError`s (./errors.ts); the returned promise gives the exit status.
 * @module
 */
import type { FlowSnapshot } from "../lib/flow/store.ts";
import { LOG_NOTICE, logLine } from "../lib/log/levels.ts";
import { parseSocketAddress } from "../lib/ccompat/sockaddr.ts";
import { ControlThread } from "./control_thread.ts";
import { OptionError } from "./errors.ts";
import type { Io } from "./io.ts";
import type { DaemonConfig } from "./options.ts";
import { checkTable } from "./open_table.ts";
import {
  ignoreSignals,
  type Prepared,
  prepareDaemon,
  spawnQueueThreads,
  startQueueThreads,
  stopOnSignals,
  TRACE_RING_BYTES,
} from "./threads.ts";
import { TraceRing } from "../lib/trace/ring.ts";
import { newFastPathChannel, startFastPath } from "./fastpath_thread.ts";
import { checkWorkers } from "./worker_url.ts";

/**
 * Spawn the queue threads, which load their modules while the rest of the start-up runs
 * (docs/ARCHITECTURE.md), then prepare the daemon (./threads.ts); a failed preparation ends the
 * spawned threads before it is thrown.
 */
function spawnAndPrepare(
  io: Io,
  config: DaemonConfig,
): { spawned: ReturnType<typeof spawnQueueThreads>; prepared: Prepared } {
  const spawned = spawnQueueThreads(config);
  try {
    return { spawned, prepared: prepareDaemon(io, config) };
  } catch (e) {
    spawned.terminate();
    throw e;
  }
}

/**
 * Run `lb`: one target table (`--tshm`), the queue threads of ./threads.ts. Throws a
 * `DaemonError` when start-up fails.
 */
export async function runLb(io: Io, config: DaemonConfig): Promise<number> {
  checkWorkers(import.meta.url);
  const running = runningUntil();
  try {
    // Fail early, in the main thread, with 1.2.0's messages; workers map their own copies.
    checkTable(config.tshm, "tshm");
    const { spawned, prepared } = spawnAndPrepare(io, config);
    const stop = new SharedArrayBuffer(4);
    let threads;
    try {
      const fastpath = await startFastPath(io, prepared.config, stop);
      threads = startQueueThreads(io, prepared, spawned, stop, undefined, undefined, fastpath);
    } catch (e) {
      Atomics.store(new Int32Array(stop), 0, 1);
      spawned.terminate();
      prepared.release();
      throw e;
    }
    stopOnSignals(stop, threads.finished, threads);
    running.end(threads.finished);
    return threads.finished;
  } catch (e) {
    running.end(Promise.resolve());
    throw e;
  }
}

/** Ignore SIGHUP/SIGUSR1/SIGUSR2 from now until the promise given to `end` settles. */
function runningUntil(): { end(p: Promise<unknown>): void } {
  let end!: (p: Promise<unknown>) => void;
  ignoreSignals(new Promise<unknown>((r) => end = (p) => p.then(r, r)));
  return { end };
}

/**
 * Run `flowlb`: the control server on `flowAddress` (the text of
 * `NFQLB_FLOW_ADDRESS`) sends every new flow snapshot here; this thread
 * forwards it to the queue threads and bumps the shared version they poll
 * between batches. Rejects with a `DaemonError` when start-up fails.
 */
export async function runFlowLb(
  io: Io,
  config: DaemonConfig,
  flowAddress: string,
): Promise<number> {
  const address = parseSocketAddress(flowAddress);
  if (address === undefined) {
    throw new OptionError("NFQLB_FLOW_ADDRESS", flowAddress, { kind: "address" });
  }
  checkWorkers(import.meta.url);
  const running = runningUntil();
  try {
    return await flowLb(io, config, address);
  } finally {
    running.end(Promise.resolve());
  }
}

async function flowLb(
  io: Io,
  config: DaemonConfig,
  address: NonNullable<ReturnType<typeof parseSocketAddress>>,
): Promise<number> {
  const { spawned, prepared } = spawnAndPrepare(io, config);
  const c = prepared.config;
  const stop = new SharedArrayBuffer(4);
  const stopFlag = new Int32Array(stop);
  const lanes = c.queueLast - c.queueFirst + 1;
  // Flow versions per queue thread, then trace-flow versions (control_worker.ts waits on both).
  const applied = new SharedArrayBuffer(8 * lanes);
  // The control thread's trace lines (bits flow-conf and target) go to the trace thread too.
  const controlTrace = TraceRing.create(TRACE_RING_BYTES);
  const fastpathChannel = c.fastpath === undefined ? undefined : newFastPathChannel();
  // Set once every queue is bound: until then the control thread saves, activates and serves
  // nothing (a second flowlb whose queue is taken leaves the running one's --flow-state alone).
  const started = new Int32Array(new SharedArrayBuffer(4));
  let control: ControlThread;
  try {
    control = new ControlThread(io, {
      fastpath: fastpathChannel,
      trace: controlTrace,
      address,
      flowState: c.flowState,
      lanes,
      stop,
      started: started.buffer as SharedArrayBuffer,
      applied,
      unauthenticated: c.controlUnauthenticated,
    });
  } catch (e) {
    spawned.terminate();
    prepared.release();
    throw e;
  }
  let ready;
  try {
    ready = await control.ready;
  } catch (e) {
    control.terminate();
    spawned.terminate();
    prepared.release();
    throw e;
  }
  if (ready.restored > 0) {
    // Flows (not helpers) kept pending because their table does not map yet (D58).
    const s = ready.snapshot;
    const pending = s.flows.filter((f, i) => s.pending[i] !== 0 && f.target !== undefined).length;
    const more = pending === 0 ? "" : ` (${pending} pending: their tables do not exist yet)`;
    io.err(
      logLine(LOG_NOTICE, `flowlb: restored ${ready.restored} flows from ${c.flowState}${more}`) +
        "\n",
    );
  }
  // [0]: version of the newest flow snapshot, [1]: of the newest trace-flow snapshot.
  const version = new Int32Array(new SharedArrayBuffer(8));
  Atomics.store(version, 0, ready.snapshot.version);
  Atomics.store(version, 1, ready.traceSnapshot.version);
  let fastpath;
  try {
    fastpath = await startFastPath(io, c, stop, {
      applied,
      snapshot: ready.snapshot,
      version: version.buffer as SharedArrayBuffer,
    }, fastpathChannel);
  } catch (e) {
    Atomics.store(stopFlag, 0, 1);
    await control.stopped;
    control.terminate();
    spawned.terminate();
    prepared.release();
    throw e;
  }
  const threads = startQueueThreads(io, prepared, spawned, stop, controlTrace, (lane) => ({
    lane,
    counters: ready.counters,
    lanes,
    capacity: ready.capacity,
    version: version.buffer as SharedArrayBuffer,
    applied,
    snapshot: ready.snapshot,
    traceCounters: ready.traceCounters,
    traceCapacity: ready.traceCapacity,
    traceSnapshot: ready.traceSnapshot,
  }), fastpath);
  /** Hand a new snapshot to the queue threads: message first, then its version word, then wake. */
  const publish = (type: "flows" | "traces", word: number) => (snapshot: FlowSnapshot) => {
    threads.broadcast({ type, snapshot });
    if (type === "flows") fastpath?.flows(snapshot);
    Atomics.store(version, word, snapshot.version);
    // The queue threads take it now, not after their receive timeout.
    threads.wake();
  };
  control.onFlows = publish("flows", 0);
  control.onTraces = publish("traces", 1);
  threads.started.then((ok) => {
    if (!ok) return;
    Atomics.store(started, 0, 1);
    Atomics.notify(started, 0);
  });
  // A control-thread failure after start-up is logged by ControlThread; the queue threads keep
  // serving packets (it used to set the stop flag: flowlb exited with status 0).
  stopOnSignals(stop, threads.finished, threads);
  const status = await threads.finished;
  Atomics.store(stopFlag, 0, 1);
  await control.stopped;
  control.terminate();
  return status;
}
