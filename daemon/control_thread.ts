/**
 * The main thread's handle on the control-server worker of `flowlb`
 * (control_worker.ts): starts it, and turns its messages into a start-up
 * promise, flow snapshots, log lines and a stop event.
 * @module
 */
import { LOG_WARNING, logLine } from "../lib/log/levels.ts";
import type { FlowSnapshot } from "../lib/flow/store.ts";
import type { ControlMessage, ControlStart } from "./control_worker.ts";
import { type DaemonError, ListenError, ThreadError } from "./errors.ts";
import type { Io } from "./io.ts";
import { workerUrl } from "./worker_url.ts";

/** What the control thread reports once it serves requests. */
export type ControlReady = ControlMessage & { type: "ready" };

/** The control-server worker and the events it reports. */
export class ControlThread {
  /**
   * Resolves when the server listens; rejects with a {@link ListenError}
   * (`Flow server bind: ...`) or a {@link ThreadError} when start-up fails.
   */
  declare readonly ready: Promise<ControlReady>;
  /** Resolves when the thread has stopped serving. */
  declare readonly stopped: Promise<void>;
  /** Called with every new flow snapshot. */
  onFlows: (snapshot: FlowSnapshot) => void = () => {};
  /** Called with every new trace-flow snapshot. */
  onTraces: (snapshot: FlowSnapshot) => void = () => {};
  /**
   * Called when the control thread fails after start-up. It must not stop the queue threads
   * (the data path outlives the control plane); the default does nothing.
   */
  onError: () => void = () => {};
  readonly #worker: Worker;

  /** Start the worker; log lines and later failures go to `io.err` prefixed with `flowlb:`. */
  constructor(io: Io, start: ControlStart) {
    let ready!: (m: ControlReady) => void;
    let failed!: (e: DaemonError) => void;
    let stopped!: () => void;
    let isReady = false;
    this.ready = new Promise<ControlReady>((res, rej) => [ready, failed] = [res, rej]);
    this.stopped = new Promise<void>((res) => stopped = res);
    this.#worker = new Worker(workerUrl("control_worker.ts", import.meta.url), {
      type: "module",
      name: "control",
    });
    this.#worker.onmessage = (e: MessageEvent<ControlMessage>) => {
      const m = e.data;
      if (m.type === "ready") {
        isReady = true;
        ready(m);
      } else if (m.type === "flows") this.onFlows(m.snapshot);
      else if (m.type === "traces") this.onTraces(m.snapshot);
      else if (m.type === "log") {
        io.err(logLine(m.level ?? LOG_WARNING, `flowlb: ${m.text}`) + "\n");
      } else if (m.type === "stopped") stopped();
      else if (!isReady) {
        failed(
          m.listen !== undefined
            ? new ListenError(m.listen)
            : new ThreadError("control", m.message),
        );
      } else {
        // A control-plane failure after start-up never stops the data path: the queue
        // threads keep serving packets with the flows they have (docs/COMPATIBILITY.md#differences).
        const text = `flowlb: control: ${m.message}; the control socket is closed, ` +
          "packets are still served";
        io.err(logLine(LOG_WARNING, text) + "\n");
        this.onError();
        stopped();
      }
    };
    this.#worker.postMessage(start);
  }

  /** Stop the worker at once. */
  terminate(): void {
    this.#worker.terminate();
  }
}
