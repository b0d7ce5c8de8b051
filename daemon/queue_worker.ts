/**
 * One NFQUEUE reader thread of `nfqlb lb` or `nfqlb flowlb`: maps the tables
 * itself, opens its queue, then loops receive-batch → decide → verdicts
 * until the shared stop flag is set. For `flowlb`, new flow snapshots arrive
 * as messages; the main thread bumps a shared version counter, and the loop
 * picks the snapshot up between two batches and swaps in a newly compiled
 * flow set (old or new for a whole batch, never a mix).
 *
 * Messages to the main thread: `started` (with the start-up line), `stopped`,
 * or `error` (a one-line message).
 * @module
 */
import { NfQueue, startupLine } from "../ffi/nfqueue.ts";
import { openShm } from "../ffi/shm.ts";
import type { TraceSink } from "../lib/trace/mask.ts";
import { TraceRing } from "../lib/trace/ring.ts";
import { MASK_WORD, openTraceShm } from "./open_trace_shm.ts";
import { FragTable } from "../lib/frag/table.ts";
import { FlowLbDecider, FlowSet } from "../lib/decide/flowlb.ts";
import { type FlowSnapshot, MatchCounters } from "../lib/flow/store.ts";
import { LbDecider } from "../lib/decide/lb.ts";
import type { MaglevTable } from "../lib/maglev/table.ts";
import type { DaemonConfig } from "./options.ts";
import { type OpenTable, openTable } from "./open_table.ts";

/** Shared flow state handed to `flowlb` queue threads. */
export interface FlowChannel {
  /** This thread's counter lane. */
  readonly lane: number;
  readonly counters: SharedArrayBuffer;
  readonly lanes: number;
  readonly capacity: number;
  /** Int32Array over it: [0] = version of the newest snapshot sent. */
  readonly version: SharedArrayBuffer;
  /** Int32Array over it: [lane] = version this thread has installed (notified on change). */
  readonly applied: SharedArrayBuffer;
  readonly snapshot: FlowSnapshot;
}

/** The message that starts a worker. */
export interface QueueWorkerStart {
  readonly config: DaemonConfig;
  readonly queue: number;
  /** Int32Array over it: [0] = stop requested. */
  readonly stop: SharedArrayBuffer;
  /** This thread's trace ring (read by the trace thread). */
  readonly trace: SharedArrayBuffer;
  /** Present for `flowlb`. */
  readonly flows?: FlowChannel;
}

/** Messages a worker sends. */
export type QueueWorkerMessage =
  | { type: "started"; queue: number; line: string }
  | { type: "stopped"; queue: number; packets: number }
  | { type: "error"; queue: number; message: string };

/** The worker global scope (typed here: this module is also type-checked with the CLI). */
const scope = self as unknown as {
  postMessage(m: QueueWorkerMessage): void;
  onmessage:
    | ((e: MessageEvent<QueueWorkerStart | { type: "flows"; snapshot: FlowSnapshot }>) => void)
    | null;
};

let newest: FlowSnapshot | undefined;

/** Target tables of the flows, mapped once per name and unmapped when no flow uses them. */
class TableCache {
  #open = new Map<string, OpenTable | undefined>();

  tablesFor(snapshot: FlowSnapshot): (MaglevTable | undefined)[] {
    const names = new Set<string>();
    const out = snapshot.flows.map((f) => {
      if (f.target === undefined) return undefined;
      names.add(f.target);
      if (!this.#open.has(f.target)) {
        let t: OpenTable | undefined;
        try {
          t = openTable(f.target, false);
        } catch {
          t = undefined; // removed since the flow was set: "no target" until it is back
        }
        this.#open.set(f.target, t);
      }
      return this.#open.get(f.target)?.table;
    });
    return out;
  }

  /** Unmap tables no flow of `snapshot` refers to (after the new set is in use). */
  prune(snapshot: FlowSnapshot): void {
    const used = new Set(snapshot.flows.map((f) => f.target));
    for (const [name, t] of this.#open) {
      if (!used.has(name)) {
        t?.close();
        this.#open.delete(name);
      }
    }
  }

  close(): void {
    for (const t of this.#open.values()) t?.close();
    this.#open.clear();
  }
}

async function serve(start: QueueWorkerStart): Promise<void> {
  const { config: c, queue } = start;
  const stop = new Int32Array(start.stop);
  const owned: { close(): void }[] = [];
  try {
    const lbTier = c.lbshm === "" ? undefined : openTable(c.lbshm, false);
    if (lbTier !== undefined) owned.push(lbTier);
    const ft = openShm(c.ftShm, true);
    owned.push(ft);
    // The trace mask is read once per batch; trace lines go to this thread's ring.
    const traceShm = openTraceShm();
    owned.push(traceShm);
    const traceWords = traceShm.words;
    const ring = new TraceRing(start.trace);
    const trace: TraceSink = { mask: 0, line: (text) => ring.write(text) };
    const fragments = new FragTable({
      size: c.ftSize,
      buckets: c.ftBuckets,
      frags: c.ftFrag,
      mtu: c.mtu,
      ttlMs: c.ftTtl,
      reassembler: c.reassembler,
      stats: ft.buffer,
      // The main thread initialised the object; queue threads share its counters.
      initStats: false,
      atomicStats: true,
    });
    const common = {
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
    const ch = start.flows;
    if (ch === undefined) {
      const target = openTable(c.tshm, false);
      owned.push(target);
      decider = new LbDecider({ ...common, table: target.table, udpencap: c.sctpEncap });
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
      const cache = new TableCache();
      owned.push(cache);
      let current = ch.snapshot;
      const install = (s: FlowSnapshot) => {
        d.setFlows(new FlowSet(s.flows, cache.tablesFor(s), s.slots, lane));
        cache.prune(s);
        current = s;
        Atomics.store(applied, ch.lane, s.version);
        Atomics.notify(applied, ch.lane);
      };
      install(current);
      flowsChanged = () => Atomics.load(version, 0) !== current.version;
      flowSync = async () => {
        const want = Atomics.load(version, 0);
        // The snapshot message was posted before the version was bumped: let it arrive.
        while (newest === undefined || newest.version < want) {
          await new Promise((r) => setTimeout(r, 0));
          if (Atomics.load(stop, 0) !== 0) return;
        }
        install(newest);
      };
    }
    const q = NfQueue.open({ queue, mtu: c.mtu, qlength: c.qlength, failOpen: c.failOpen });
    owned.push(q);
    scope.postMessage({ type: "started", queue, line: startupLine(c.qlength, c.mtu, q.rcvbuf) });
    let packets = 0;
    const buf = q.buffer;
    while (Atomics.load(stop, 0) === 0) {
      const n = q.receiveBatch();
      // After the receive, so a batch is decided with the newest flow set.
      if (flowsChanged()) await flowSync();
      if (n === 0) continue;
      trace.mask = traceWords[MASK_WORD] >>> 0;
      const now = Math.round(performance.now() * 1e6);
      for (let i = 0; i < n; i++) {
        q.verdict(
          i,
          decider.decide(buf, q.payloadOffset(i), q.payloadLength(i), q.l3proto(i), now),
        );
      }
      q.flush();
      packets += n;
    }
    scope.postMessage({ type: "stopped", queue, packets });
  } finally {
    for (const o of owned.reverse()) o.close();
  }
}

scope.onmessage = (e) => {
  const m = e.data;
  if ("type" in m) {
    if (newest === undefined || m.snapshot.version > newest.version) newest = m.snapshot;
    return;
  }
  serve(m).catch((err) => {
    const message = err instanceof Error ? err.message : String(err);
    scope.postMessage({ type: "error", queue: m.queue, message });
  });
};
