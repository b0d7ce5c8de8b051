/**
 * `nfqlb lb`: the packet daemon without flows (SPEC 1.8, 5.2, 5.5). The main
 * thread validates options and tables, creates the fragment statistics
 * object, starts one worker thread per queue and stops them on SIGTERM or
 * SIGINT (queues are unbound cleanly).
 * @module
 */
import { createShm } from "../ffi/shm.ts";
import { LibcError } from "../ffi/libc.ts";
import { FTSHM_SIZE, initFtStats } from "../lib/ftshm.ts";
import { type Command, die, type Invocation } from "./command.ts";
import { type DaemonConfig, daemonConfig, daemonOptions } from "./daemon_options.ts";
import { openTable } from "./open_table.ts";
import type { LbWorkerMessage, LbWorkerStart } from "./lb_worker.ts";

/** Create (zero) the fragment statistics object and write its static fields. */
function createFtShm(c: DaemonConfig): void {
  let m;
  try {
    m = createShm(c.ftShm, FTSHM_SIZE);
  } catch (e) {
    if (e instanceof LibcError) die(`createSharedData: ${e.message}`);
    throw e;
  }
  new Uint8Array(m.buffer).fill(0);
  initFtStats(m.buffer, {
    ttlMs: c.ftTtl,
    size: c.ftSize,
    mtu: c.mtu,
    buckets: c.ftBuckets,
    frags: c.ftFrag,
  });
  m.close();
}

/** Start the queue workers and serve until a signal; returns the exit status. */
export async function runQueues(
  inv: Invocation,
  c: DaemonConfig,
  workerUrl: URL,
): Promise<number> {
  const stop = new SharedArrayBuffer(4);
  const stopFlag = new Int32Array(stop);
  const workers: Worker[] = [];
  let running = 0;
  let status = 0;
  let done!: () => void;
  const finished = new Promise<void>((r) => done = r);
  const requestStop = () => {
    Atomics.store(stopFlag, 0, 1);
  };
  const signals: Deno.Signal[] = ["SIGTERM", "SIGINT"];
  for (const s of signals) Deno.addSignalListener(s, requestStop);
  for (let queue = c.queueFirst; queue <= c.queueLast; queue++) {
    const w = new Worker(workerUrl, { type: "module", name: `queue-${queue}` });
    running++;
    w.onmessage = (e: MessageEvent<LbWorkerMessage>) => {
      const m = e.data;
      if (m.type === "started") inv.io.out(m.line + "\n");
      else {
        if (m.type === "error") {
          inv.io.err(`queue ${m.queue}: ${m.message}\n`);
          status = 1;
          requestStop();
        }
        w.terminate();
        if (--running === 0) done();
      }
    };
    w.onerror = (e) => {
      e.preventDefault();
      inv.io.err(`queue ${queue}: ${e.message}\n`);
      status = 1;
      requestStop();
      w.terminate();
      if (--running === 0) done();
    };
    w.postMessage({ config: c, queue, stop } satisfies LbWorkerStart);
    workers.push(w);
  }
  await finished;
  for (const s of signals) Deno.removeSignalListener(s, requestStop);
  return status;
}

/** `lb`: load-balance packets from NFQUEUE with one target table. */
export const lbCommand: Command = {
  name: "lb",
  help: "lb [options]\n" +
    "  Load-balance packets from NFQUEUE: ACCEPT with the fwmark of the target that the\n" +
    "  Maglev table in --tshm selects for the packet's 5-tuple hash. Stop with SIGTERM/SIGINT.",
  options: daemonOptions("lb"),
  run(inv) {
    const c = daemonConfig(inv);
    // Fail early, in the main thread, with 1.2.0's messages; workers map their own copies.
    openTable(c.tshm, false).close();
    if (c.lbshm !== "") openTable(c.lbshm, false).close();
    createFtShm(c);
    if (c.tun !== "") {
      inv.io.err(
        `lb: --tun=${c.tun}: re-injection of stored fragments is not implemented yet; ` +
          "fragments that arrive before their first fragment are dropped (ft_frag=0)\n",
      );
    }
    const frag = c.tun !== "" ? 0 : c.ftFrag;
    inv.io.out(
      `FragTable; size=${c.ftSize}, buckets=${c.ftBuckets}, frag=${frag}, mtu=${c.mtu}, ` +
        `ttl=${c.ftTtl}\n`,
    );
    return runQueues(inv, { ...c, ftFrag: frag }, new URL("./lb_worker.ts", import.meta.url));
  },
};
