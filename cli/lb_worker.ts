/**
 * One NFQUEUE reader thread of `nfqlb lb`: maps the tables itself, opens its
 * queue, then loops receive-batch → decide → verdicts until the shared stop
 * flag is set. Messages to the main thread: `started` (with the start-up
 * line), `stopped`, or `error` (with a one-line message).
 * @module
 */
import { NfQueue, startupLine } from "../ffi/nfqueue.ts";
import { openShm } from "../ffi/shm.ts";
import { FragTable } from "../lib/fragtable.ts";
import { LbDecider } from "../lib/lb.ts";
import type { DaemonConfig } from "./daemon_options.ts";
import { Fatal } from "./command.ts";
import { openTable } from "./open_table.ts";

/** The message that starts a worker. */
export interface LbWorkerStart {
  readonly config: DaemonConfig;
  readonly queue: number;
  /** Int32Array over it: [0] = stop requested. */
  readonly stop: SharedArrayBuffer;
}

/** Messages a worker sends. */
export type LbWorkerMessage =
  | { type: "started"; queue: number; line: string }
  | { type: "stopped"; queue: number; packets: number }
  | { type: "error"; queue: number; message: string };

/** The worker global scope (typed here: this module is also type-checked with the CLI). */
const scope = self as unknown as {
  postMessage(m: LbWorkerMessage): void;
  onmessage: ((e: MessageEvent<LbWorkerStart>) => void) | null;
};

function post(m: LbWorkerMessage): void {
  scope.postMessage(m);
}

function serve(start: LbWorkerStart): void {
  const { config: c, queue } = start;
  const stop = new Int32Array(start.stop);
  const tables = [openTable(c.tshm, false)];
  if (c.lbshm !== "") tables.push(openTable(c.lbshm, false));
  const ft = openShm(c.ftShm, true);
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
  const lb = new LbDecider({
    table: tables[0].table,
    lbTier: tables[1]?.table,
    fragments,
    hashMode: c.hashMode,
    udpencap: c.sctpEncap,
    notargetsFwmark: c.notargetsFwmark,
  });
  const q = NfQueue.open({ queue, mtu: c.mtu, qlength: c.qlength, failOpen: c.failOpen });
  let packets = 0;
  try {
    post({ type: "started", queue, line: startupLine(c.qlength, c.mtu, q.rcvbuf) });
    while (Atomics.load(stop, 0) === 0) {
      const n = q.receiveBatch();
      if (n === 0) continue;
      const now = Math.round(performance.now() * 1e6);
      const buf = q.buffer;
      for (let i = 0; i < n; i++) {
        q.verdict(i, lb.decide(buf, q.payloadOffset(i), q.payloadLength(i), q.l3proto(i), now));
      }
      q.flush();
      packets += n;
    }
  } finally {
    q.close();
    for (const t of tables) t.close();
    ft.close();
  }
  post({ type: "stopped", queue, packets });
}

scope.onmessage = (e) => {
  try {
    serve(e.data);
  } catch (err) {
    const message = err instanceof Fatal || err instanceof Error ? err.message : String(err);
    post({ type: "error", queue: e.data.queue, message });
  }
};
