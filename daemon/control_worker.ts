/**
 * The control server thread of `nfqlb flowlb` (docs/COMPATIBILITY.md#control-protocol): owns the flow store,
 * serves one request per connection, strictly one connection at a time, and
 * publishes every new flow snapshot to the main thread. Beyond 1.2.0:
 * changes are accepted only from root or the daemon's own uid (SO_PEERCRED
 * on the abstract socket), every read is bounded in size and time, replies
 * never raise SIGPIPE, and with `--flow-state` the flows are saved after each
 * change (write, then rename) and restored at start.
 * @module
 */
import { LibcError } from "../ffi/libc.ts";
import { type Connection, StreamServer } from "../ffi/stream_server.ts";
import {
  handleRequest,
  type ReadResult,
  RequestReader,
  textReply,
} from "../lib/flow/control_protocol.ts";
import { decodeFlowState, encodeFlowState } from "../lib/flow/state_file.ts";
import { FlowStore, type TargetRegistry } from "../lib/flow/store.ts";
import type { FlowSnapshot } from "../lib/flow/store.ts";
import type { SocketAddress } from "../lib/ccompat/sockaddr.ts";
import { ListenError, type ListenFailure } from "./errors.ts";
import { openTable } from "./open_table.ts";

/** The message that starts the control thread. */
export interface ControlStart {
  readonly address: SocketAddress;
  /** `--flow-state` file, or "". */
  readonly flowState: string;
  /** One match-counter lane per queue thread. */
  readonly lanes: number;
  /** Int32Array over it: [0] = stop requested. */
  readonly stop: SharedArrayBuffer;
  /** Int32Array over it: [lane] = flow version each queue thread has installed. */
  readonly applied: SharedArrayBuffer;
}

/** Messages the control thread sends. */
export type ControlMessage =
  | {
    type: "ready";
    counters: SharedArrayBuffer;
    capacity: number;
    snapshot: FlowSnapshot;
    restored: number;
  }
  | { type: "flows"; snapshot: FlowSnapshot }
  | { type: "log"; text: string }
  /** A failure; `listen` is set when the control server socket could not be set up. */
  | { type: "error"; message: string; listen?: ListenFailure }
  | { type: "stopped" };

/** Actions that change the daemon's state and need an authorised peer. */
const MUTATING = new Set(["set", "delete", "trace-set", "trace-delete"]);
/** How long a client may take to send its request. */
const REQUEST_TIMEOUT_MS = 2000;
/** Poll interval of the stop flag while waiting for clients. */
const ACCEPT_POLL_MS = 200;
/**
 * How long a change waits for every queue thread to install it before the
 * reply (they pick it up within one receive timeout, 200 ms).
 */
const APPLY_TIMEOUT_MS = 1000;

/** Wait until every lane has installed `version` (or the timeout passed). */
function waitApplied(applied: Int32Array, version: number): void {
  const deadline = Date.now() + APPLY_TIMEOUT_MS;
  for (let lane = 0; lane < applied.length; lane++) {
    for (;;) {
      const v = Atomics.load(applied, lane);
      const left = deadline - Date.now();
      if (v >= version || left <= 0) break;
      Atomics.wait(applied, lane, v, left);
    }
  }
}

const scope = self as unknown as {
  postMessage(m: ControlMessage): void;
  onmessage: ((e: MessageEvent<ControlStart>) => void) | null;
};

/** Targets exist when their table can be mapped and is valid; workers map their own copies. */
const targets: TargetRegistry = {
  acquire(name) {
    try {
      openTable(name, false).close();
      return true;
    } catch {
      return false;
    }
  },
  release() {},
};

/** Read one request from `conn` within the time limit. */
function readRequest(conn: Connection): ReadResult {
  const reader = new RequestReader();
  const buf = new Uint8Array(4096);
  const deadline = Date.now() + REQUEST_TIMEOUT_MS;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) return { status: "rejected", reply: new Uint8Array(0), lines: [], warnings: [] };
    const n = conn.recv(buf, left);
    if (n < 0) return { status: "rejected", reply: new Uint8Array(0), lines: [], warnings: [] };
    const r = n === 0 ? reader.end() : reader.push(buf.subarray(0, n));
    if (r.status !== "more") return r;
  }
}

function serve(start: ControlStart): void {
  const stop = new Int32Array(start.stop);
  const store = new FlowStore(targets, { lanes: start.lanes });
  let restored = 0;
  if (start.flowState !== "") restored = restore(store, start.flowState);
  let server: StreamServer;
  try {
    server = StreamServer.listen(start.address, 128);
  } catch (e) {
    if (e instanceof LibcError) {
      const listen: ListenFailure = { server: "Flow", call: e.call, strerror: e.message };
      scope.postMessage({ type: "error", message: new ListenError(listen).message, listen });
      return;
    }
    throw e;
  }
  const save = () => {
    if (start.flowState === "") return;
    const tmp = `${start.flowState}.tmp`;
    try {
      Deno.writeTextFileSync(
        tmp,
        encodeFlowState(store.flows.snapshot.flows, store.traces.snapshot.flows),
        { mode: 0o600 },
      );
      Deno.renameSync(tmp, start.flowState);
    } catch (e) {
      scope.postMessage({
        type: "log",
        text: `flow-state: save to ${start.flowState} failed: ${e}`,
      });
    }
  };
  store.flows.onChange((snapshot) => scope.postMessage({ type: "flows", snapshot }));
  store.flows.onChange(save);
  store.traces.onChange(save);
  scope.postMessage({
    type: "ready",
    counters: store.flows.counters.buffer,
    capacity: store.flows.counters.capacity,
    snapshot: store.flows.snapshot,
    restored,
  });
  const ownUid = Deno.uid();
  const applied = new Int32Array(start.applied);
  try {
    while (Atomics.load(stop, 0) === 0) {
      const conn = server.accept(ACCEPT_POLL_MS);
      if (conn === null) continue;
      try {
        const r = readRequest(conn);
        for (const w of r.status === "more" ? [] : r.warnings) {
          scope.postMessage({ type: "log", text: w });
        }
        if (r.status === "rejected") {
          if (r.reply.length > 0) conn.sendAll(r.reply.slice());
        } else if (r.status === "request") {
          const peer = conn.peer;
          const action = r.request.action ?? "";
          if (MUTATING.has(action) && peer !== undefined && peer.uid !== 0 && peer.uid !== ownUid) {
            scope.postMessage({
              type: "log",
              text: `control: refused ${action} from uid ${peer.uid} (pid ${peer.pid})`,
            });
            conn.sendAll(textReply("FAIL: permission denied").slice());
          } else {
            const before = store.flows.snapshot.version;
            const reply = handleRequest(store, r.request);
            const after = store.flows.snapshot.version;
            // Reply only when the change is in use by every queue thread.
            if (after !== before) waitApplied(applied, after);
            conn.sendAll(reply.slice());
          }
        }
      } finally {
        conn.close();
      }
    }
  } finally {
    server.close();
  }
  scope.postMessage({ type: "stopped" });
}

/** Load `--flow-state`; returns how many flows were restored. Problems are logged. */
function restore(store: FlowStore, path: string): number {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      scope.postMessage({ type: "log", text: `flow-state: cannot read ${path}: ${e}` });
    }
    return 0;
  }
  let n = 0;
  try {
    const state = decodeFlowState(text);
    for (const f of state.flows) {
      const reply = store.set(f);
      if (reply === "OK") n++;
      else scope.postMessage({ type: "log", text: `flow-state: flow ${f.name}: ${reply}` });
    }
    for (const f of state.traces) store.traceSet(f);
  } catch (e) {
    scope.postMessage({ type: "log", text: `flow-state: ${path}: ${(e as Error).message}` });
  }
  return n;
}

scope.onmessage = (e) => {
  try {
    serve(e.data);
  } catch (err) {
    scope.postMessage({ type: "error", message: err instanceof Error ? err.message : String(err) });
  }
};
