/**
 * `nfqlb flowlb`: the packet daemon with flows (SPEC 1.8, 5.4, 6, 7). The
 * control thread serves the flow commands on `NFQLB_FLOW_ADDRESS` and sends
 * every new flow snapshot here; this thread forwards it to the queue threads
 * and bumps the shared version they poll between batches.
 * @module
 */
import { parseSocketAddress } from "../lib/ccompat/sockaddr.ts";
import type { FlowSnapshot } from "../lib/flow/store.ts";
import { type Command, die, type Io } from "./command.ts";
import { prepareDaemon, startQueueThreads, stopOnSignals } from "../daemon/threads.ts";
import { daemonConfig, daemonOptions } from "../daemon/options.ts";
import type { ControlMessage, ControlStart } from "../daemon/control_worker.ts";
import { DEFAULT_FLOW_ADDRESS, FLOW_ADDRESS_ENV } from "./flow_commands.ts";

type Ready = ControlMessage & { type: "ready" };

/** The control-server worker and the events it reports. */
class ControlThread {
  declare readonly ready: Promise<Ready>;
  declare readonly stopped: Promise<void>;
  /** Called with every new flow snapshot. */
  onFlows: (snapshot: FlowSnapshot) => void = () => {};
  /** Called when the control thread fails after start-up. */
  onError: () => void = () => {};
  readonly #worker: Worker;

  constructor(io: Io, start: ControlStart) {
    let ready!: (m: Ready) => void;
    let failed!: (e: Error) => void;
    let stopped!: () => void;
    let isReady = false;
    this.ready = new Promise<Ready>((res, rej) => [ready, failed] = [res, rej]);
    this.stopped = new Promise<void>((res) => stopped = res);
    this.#worker = new Worker(new URL("../daemon/control_worker.ts", import.meta.url), {
      type: "module",
      name: "control",
    });
    this.#worker.onmessage = (e: MessageEvent<ControlMessage>) => {
      const m = e.data;
      if (m.type === "ready") {
        isReady = true;
        ready(m);
      } else if (m.type === "flows") this.onFlows(m.snapshot);
      else if (m.type === "log") io.err(`flowlb: ${m.text}\n`);
      else if (m.type === "stopped") stopped();
      else if (!isReady) failed(new Error(m.message));
      else {
        io.err(`flowlb: control: ${m.message}\n`);
        this.onError();
        stopped();
      }
    };
    this.#worker.postMessage(start);
  }

  terminate(): void {
    this.#worker.terminate();
  }
}

/** `flowlb`: classify packets by flow, then load-balance with the flow's target table. */
export const flowlbCommand: Command = {
  name: "flowlb",
  help: "flowlb [options]\n" +
    "  Classify packets from NFQUEUE by flow (see flow-set) and load-balance each with its\n" +
    `  flow's target table. Flow commands connect to ${FLOW_ADDRESS_ENV} (default\n` +
    `  ${DEFAULT_FLOW_ADDRESS}). Stop with SIGTERM/SIGINT.`,
  options: daemonOptions("flowlb"),
  async run(inv) {
    const parsed = daemonConfig(inv);
    const addressText = Deno.env.get(FLOW_ADDRESS_ENV) ?? DEFAULT_FLOW_ADDRESS;
    const address = parseSocketAddress(addressText);
    if (address === undefined) die(`Failed to parse address [${addressText}]`);
    const c = prepareDaemon(inv, parsed, "flowlb");
    const stop = new SharedArrayBuffer(4);
    const stopFlag = new Int32Array(stop);
    const lanes = c.queueLast - c.queueFirst + 1;
    const applied = new SharedArrayBuffer(4 * lanes);
    const control = new ControlThread(inv.io, {
      address,
      flowState: c.flowState,
      lanes,
      stop,
      applied,
    });
    let ready: Ready;
    try {
      ready = await control.ready;
    } catch (e) {
      control.terminate();
      die((e as Error).message);
    }
    if (ready.restored > 0) {
      inv.io.err(`flowlb: restored ${ready.restored} flows from ${c.flowState}\n`);
    }
    const version = new Int32Array(new SharedArrayBuffer(4));
    let latest = ready.snapshot;
    Atomics.store(version, 0, latest.version);
    const threads = startQueueThreads(inv, c, stop, (lane) => ({
      lane,
      counters: ready.counters,
      lanes,
      capacity: ready.capacity,
      version: version.buffer as SharedArrayBuffer,
      applied,
      snapshot: latest,
    }));
    control.onFlows = (snapshot) => {
      latest = snapshot;
      threads.broadcast({ type: "flows", snapshot });
      Atomics.store(version, 0, snapshot.version);
    };
    control.onError = () => Atomics.store(stopFlag, 0, 1);
    stopOnSignals(stop, threads.finished);
    const status = await threads.finished;
    Atomics.store(stopFlag, 0, 1);
    await control.stopped;
    control.terminate();
    return status;
  },
};
