/**
 * The control server thread of `nfqlb flowlb` (docs/COMPATIBILITY.md#control-protocol): owns the flow store,
 * serves one request per connection, strictly one connection at a time, and
 * publishes every new flow snapshot to the main thread. Beyond 1.2.0:
 * changes are accepted only from root or the daemon's own uid (SO_PEERCRED
 * on the abstract socket; on `tcp:` only loopback peers are admitted, unless
 * `--control-unauthenticated`, their uid read from `/proc/net/tcp{,6}` at accept); a peer whose
 * uid is not known for certain is unprivileged. Every read is bounded in size and time; replies
 * are written without blocking the loop (the unsent rest is kept per connection and sent when
 * the socket takes more, within a deadline and a budget for unprivileged peers), never raise
 * SIGPIPE, and with `--flow-state` the flows are saved after each change (write, then rename)
 * and restored at start. Nothing is saved, activated or served before the daemon has started
 * (`started`: every queue bound); clients that connect earlier wait in the listen backlog.
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
import { FlowStore, type TargetRegistry } from "../lib/flow/store.ts";
import type { FlowSnapshot } from "../lib/flow/store.ts";
import type { SocketAddress } from "../lib/ccompat/sockaddr.ts";
import { POLLIN, POLLOUT, PollSet } from "../ffi/poll.ts";
import { LogRateLimiter } from "../lib/log/rate_limit.ts";
import { type AdmissionLimits, admit, peerRights } from "./control_admission.ts";
import { ListenError, type ListenFailure } from "./errors.ts";
import { peerOf } from "./peer_identity.ts";
import { FlowStateSaver, removeStaleTmpFiles, restoreFlowState } from "./flow_state_file.ts";
import { PendingFlowRetry, untrustedPendingLine } from "./pending_flows.ts";
import { LOG_DEBUG, LOG_NOTICE } from "../lib/log/levels.ts";
import { TraceRing } from "../lib/trace/ring.ts";
import type { TraceSink } from "../lib/trace/mask.ts";
import { tracedTargets, traceReply, traceRequest } from "../lib/trace/control_lines.ts";
import { LOGLEVEL_WORD, MASK_WORD, openTraceShm } from "./open_trace_shm.ts";
import { FP_FLOWS_FLUSHED } from "../lib/fastpath/channel.ts";
import {
  flowTargetProblem,
  mappableTargets as targets,
  trustedTableProblem,
} from "./open_table.ts";

/** The message that starts the control thread. */
export interface ControlStart {
  readonly address: SocketAddress;
  /** `--flow-state` file, or "". */
  readonly flowState: string;
  /** One match-counter lane per queue thread. */
  readonly lanes: number;
  /** Int32Array over it: [0] = stop requested. */
  readonly stop: SharedArrayBuffer;
  /**
   * Int32Array over it: [0] = 1 once the daemon has started: every queue bound, the shared
   * objects initialised (daemon/threads.ts). Until then the thread listens but saves, activates
   * and serves nothing: a second flowlb whose queue is taken (it is about to exit 1) must not
   * write the running one's `--flow-state`.
   */
  readonly started: SharedArrayBuffer;
  /**
   * Int32Array over it: [lane] = flow version each queue thread has installed, then
   * [lanes + lane] = its trace-flow version.
   */
  readonly applied: SharedArrayBuffer;
  /** `--control-unauthenticated`: admit tcp peers that are not loopback (unchecked). */
  readonly unauthenticated?: boolean;
  /** This thread's trace ring (read by the trace thread): bits `flow-conf` and `target`. */
  readonly trace?: SharedArrayBuffer;
  /** `--fastpath`: the channel whose flushed versions a change also waits for. */
  readonly fastpath?: SharedArrayBuffer;
  /** Tests only: smaller bounds than {@link REPLY_TIMEOUT_MS} and {@link UNPRIVILEGED_OUTPUT_MAX}. */
  readonly limits?: { readonly replyTimeoutMs?: number; readonly unprivilegedOutputMax?: number };
}

/** Messages the control thread sends. */
export type ControlMessage =
  | {
    type: "ready";
    counters: SharedArrayBuffer;
    capacity: number;
    snapshot: FlowSnapshot;
    /** The trace flows' counters, slots and list (docs/COMPATIBILITY.md#trace-and-log). */
    traceCounters: SharedArrayBuffer;
    traceCapacity: number;
    traceSnapshot: FlowSnapshot;
    restored: number;
  }
  | { type: "flows"; snapshot: FlowSnapshot }
  | { type: "traces"; snapshot: FlowSnapshot }
  /** A log line; `level` defaults to warning. */
  | { type: "log"; text: string; level?: number }
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

/** Back-off after a failed accept (e.g. EMFILE/ENFILE: no fd left for the connection). */
const ACCEPT_BACKOFF_MS = 100;

/**
 * The log lines of the serve loop go through a rate limiter, so neither a flood of bad requests
 * nor a failing accept can fill the disk or pile up messages for the main thread: at most
 * `burst` lines per source and interval (and 256 sources) are posted; the rest are counted and
 * summarised (`... repeated N times`).
 */
const serveLog = new LogRateLimiter({ burst: 10, intervalMs: 5000 });

/** The source of a log line: its text before the first `[` or `:` (`readCmd; Unrecognized command `). */
function logSource(text: string): string {
  const m = /^[^[:]*/.exec(text);
  return m === null ? text : m[0];
}

/** Post `text` as a log line, subject to the rate limiter. */
function limitedLog(text: string, now = Date.now()): void {
  for (const line of serveLog.offer(logSource(text), text, now)) {
    scope.postMessage({ type: "log", text: line });
  }
}

/** Post the summaries of rate-limit intervals that have ended. */
function flushLog(now = Date.now()): void {
  for (const line of serveLog.flush(now)) scope.postMessage({ type: "log", text: line });
}

/** Sleep `ms` in the worker (blocking). */
function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Wait until every lane has installed `version`; false when the timeout passed first. */
function waitApplied(applied: Int32Array, version: number): boolean {
  const deadline = Date.now() + APPLY_TIMEOUT_MS;
  for (let lane = 0; lane < applied.length; lane++) {
    for (;;) {
      const v = Atomics.load(applied, lane);
      if (v >= version) break;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      Atomics.wait(applied, lane, v, left);
    }
  }
  return true;
}

const scope = self as unknown as {
  postMessage(m: ControlMessage): void;
  onmessage: ((e: MessageEvent<ControlStart>) => void) | null;
};

/** An open control connection: its partial request, then the unsent rest of its reply. */
interface Open {
  readonly conn: Connection;
  readonly reader: RequestReader;
  /** The whole request must have arrived by then; once replying, the whole reply (ms, Date.now()). */
  deadline: number;
  readonly uid: number | undefined;
  /** Root or the daemon's uid, known for certain: served first, never refused for others. */
  readonly privileged: boolean;
  /** May change flows: privileged, or a non-loopback peer under `--control-unauthenticated`. */
  readonly mayChange: boolean;
  /** The peer for log lines: `uid N (pid P)` or `uid N (tcp ADDR)`. */
  readonly who: string;
  /** The reply being written, or null while the request is read. */
  out: Uint8Array<ArrayBuffer> | null;
  /** Bytes of `out` sent so far. */
  sent: number;
}

/**
 * Pending connections the kernel queues (capped by net.core.somaxconn): room for a burst of
 * concurrent clients (a full backlog fails a non-blocking connect with EAGAIN).
 */
const LISTEN_BACKLOG = 1024;
/** Caps on open control connections (daemon/control_admission.ts). */
const LIMITS: AdmissionLimits = { perUid: 32, total: 256 };
/** Pending clients accepted per loop round, so the backlog drains even under a connect flood. */
const ACCEPT_BURST = 1024;
/**
 * A whole reply must be taken by the client within this time, counted from the request; a
 * slower reader is closed (it holds a connection and its unsent reply until then).
 */
const REPLY_TIMEOUT_MS = 5000;
/**
 * The unsent reply bytes of all unprivileged connections together (each connection holds at
 * most its one reply). A reply that would take them beyond is not sent at all (checked before
 * its first byte, so a client never gets a prefix): the peer gets {@link busyReply} instead.
 * Privileged peers' replies do not count.
 */
const UNPRIVILEGED_OUTPUT_MAX = 16 << 20;

/** The text reply (+ NUL) an unprivileged peer gets instead of a reply of `bytes` over the cap. */
function busyReply(bytes: number, max: number): Uint8Array {
  return textReply(
    `FAIL: reply of ${bytes} bytes not sent: the replies waiting for unprivileged clients ` +
      `would exceed ${max} bytes; try again later`,
  );
}

/**
 * In one loop round, unprivileged requests are handled until this much time has passed; the
 * rest wait for the next round (their bytes stay in the socket), so a request of root or the
 * daemon's uid, handled first in every round, waits at most about one round.
 */
const ROUND_BUDGET_MS = 10;

function serve(start: ControlStart): void {
  const stop = new Int32Array(start.stop);
  const replyTimeoutMs = start.limits?.replyTimeoutMs ?? REPLY_TIMEOUT_MS;
  const outputMax = start.limits?.unprivilegedOutputMax ?? UNPRIVILEGED_OUTPUT_MAX;
  // Trace lines of bits flow-conf and target; the mask is read from nfqlb-trace per request.
  const ring = start.trace === undefined ? undefined : new TraceRing(start.trace);
  const traceShm = ring === undefined ? undefined : openTraceShm();
  const sink: TraceSink = { mask: 0, line: (text) => ring?.write(text) };
  const readMask = () => {
    sink.mask = traceShm === undefined ? 0 : traceShm.words[MASK_WORD] >>> 0;
  };
  /** Whether the log level (in `nfqlb-trace`) lets debug lines through. */
  const debugOn = () => traceShm !== undefined && traceShm.words[LOGLEVEL_WORD] >= LOG_DEBUG;
  // A restore adopts only trusted tables (owned by root or our uid, not writable by others):
  // the file names them, but anyone may have created them since (after a reboot, before nfqlb
  // init). Their flows wait, pending, like those whose table is missing (D58).
  let restoring = false;
  // Why the last acquire of a table failed (said in the reply's note and logged, D65).
  const problems = new Map<string, string>();
  const registry: TargetRegistry = {
    acquire: (name) => {
      if (restoring) return trustedTableProblem(name) === undefined;
      if (targets.acquire(name)) return true;
      const problem = flowTargetProblem(name) ?? `table [${name}]: cannot be mapped`;
      problems.clear();
      problems.set(name, problem);
      limitedLog(`control: flow-set: ${problem}`);
      return false;
    },
    release: (name) => targets.release(name),
    problem: (name) => problems.get(name),
  };
  const store = new FlowStore(tracedTargets(registry, sink), { lanes: start.lanes });
  let restored = 0;
  if (start.flowState !== "") {
    restoring = true;
    try {
      restored = restore(store, start.flowState);
    } finally {
      restoring = false;
    }
  }
  let server: StreamServer;
  try {
    server = StreamServer.listen(start.address, LISTEN_BACKLOG);
  } catch (e) {
    if (e instanceof LibcError) {
      const listen: ListenFailure = { server: "Flow", call: e.call, strerror: e.message };
      scope.postMessage({ type: "error", message: new ListenError(listen).message, listen });
      return;
    }
    throw e;
  }
  const saver = new FlowStateSaver(start.flowState, store, (text) => {
    scope.postMessage({ type: "log", text });
  });
  const save = () => saver.save();
  // Restored flows whose table did not map yet: probed from the loop below (D58).
  // A pending flow's table is used only when it is trusted (owned by root or our uid, not
  // writable by others): anyone may create /dev/shm objects. An untrusted one is said once.
  // The probe maps the table once; the store's acquire on activation is the only other map.
  const untrustedSaid = new Set<string>();
  const probe = (name: string) => {
    const problem = trustedTableProblem(name);
    if (problem?.startsWith("untrusted") && !untrustedSaid.has(name)) {
      untrustedSaid.add(name);
      scope.postMessage({ type: "log", text: untrustedPendingLine(name, problem) });
    }
    return problem === undefined;
  };
  const pending = new PendingFlowRetry(store, probe, (text) => {
    scope.postMessage({ type: "log", text, level: LOG_NOTICE });
  });
  store.flows.onChange((snapshot) => scope.postMessage({ type: "flows", snapshot }));
  store.flows.onChange(save);
  store.traces.onChange(save);
  store.traces.onChange((snapshot) => scope.postMessage({ type: "traces", snapshot }));
  scope.postMessage({
    type: "ready",
    counters: store.flows.counters.buffer,
    capacity: store.flows.counters.capacity,
    snapshot: store.flows.snapshot,
    traceCounters: store.traces.counters.buffer,
    traceCapacity: store.traces.counters.capacity,
    traceSnapshot: store.traces.snapshot,
    restored,
  });
  const unauthenticated = start.unauthenticated === true;
  if (unauthenticated && !server.unix) {
    scope.postMessage({
      type: "log",
      text: "control: --control-unauthenticated: the control socket is unauthenticated, " +
        "any host that reaches it may change flows",
    });
  }
  const ownUid = Deno.uid();
  // Per queue thread: the flow version it uses, then (after all lanes) its trace-flow version.
  const applied = new Int32Array(start.applied, 0, start.lanes);
  const appliedTraces = new Int32Array(start.applied, 4 * start.lanes, start.lanes);
  // --fastpath: the flow and trace-flow versions the writer has flushed the maps for.
  const flushed = start.fastpath === undefined
    ? undefined
    : new Int32Array(start.fastpath, 4 * FP_FLOWS_FLUSHED, 2);
  const open: Open[] = [];
  const poll = new PollSet(LIMITS.total * 2 + 1);
  const buf = new Uint8Array(4096);
  const listenerPoll = new PollSet(1);
  listenerPoll.add(server.fd, POLLIN);

  /**
   * The reply to one complete read result of `o` (with its trace line, bit flow-conf), or null
   * when the connection is closed without one.
   */
  const answer = (o: Open, r: ReadResult): Uint8Array | null => {
    /** `reply`, traced. */
    const send = (reply: Uint8Array) => {
      traceReply(sink, reply);
      return reply;
    };
    readMask();
    if (r.status !== "more") {
      traceRequest(sink, r.lines, r.warnings);
      for (const w of r.warnings) limitedLog(w);
      // Debug lines only at log level 7 (`nfqlb loglevel 7`), when the trace object is mapped.
      if (r.status === "rejected" && r.debug !== undefined && debugOn()) {
        for (const d of r.debug) scope.postMessage({ type: "log", text: d, level: LOG_DEBUG });
      }
    }
    if (r.status === "rejected") {
      return r.reply.length > 0 ? send(r.reply) : null;
    } else if (r.status === "request") {
      const action = r.request.action ?? "";
      if (MUTATING.has(action) && !o.mayChange) {
        limitedLog(`control: refused ${action} from ${o.who}`);
        return send(textReply("FAIL: permission denied"));
      } else {
        const before = store.flows.snapshot.version;
        const tracesBefore = store.traces.snapshot.version;
        // A change whose save fails gets a FAIL reply saying so (D29).
        const reply = saver.reply(() => handleRequest(store, r.request));
        const after = store.flows.snapshot.version;
        // Reply only when the change is in use by every queue thread.
        if (after !== before) waitApplied(applied, after);
        const tracesAfter = store.traces.snapshot.version;
        if (tracesAfter !== tracesBefore) waitApplied(appliedTraces, tracesAfter);
        // ... and no kernel fast-path element holds a decision made before it.
        if (flushed !== undefined) {
          const late = (after !== before && !waitApplied(flushed.subarray(0, 1), after)) ||
            (tracesAfter !== tracesBefore && !waitApplied(flushed.subarray(1, 2), tracesAfter));
          if (late) {
            limitedLog(
              `control: the fast path did not confirm a flow change within ${APPLY_TIMEOUT_MS} ms`,
            );
          }
        }
        return send(reply);
      }
    }
    return null;
  };

  /** Unsent reply bytes of the unprivileged connections. */
  const unprivilegedPending = (): number => {
    let n = 0;
    for (const o of open) if (o.out !== null && !o.privileged) n += o.out.length - o.sent;
    return n;
  };

  /**
   * Send what the socket of `o` takes of its reply without waiting: true when `o` is done
   * (all sent, or the peer is gone) and must be closed.
   */
  const flush = (o: Open): boolean => {
    const { offset, gone } = o.conn.sendRest(o.out!, o.sent);
    o.sent = offset;
    return gone || offset === o.out!.length;
  };

  /**
   * Handle one complete read result of `o`: start its reply. True when `o` is done and must be
   * closed; false when the rest of its reply waits for the socket (POLLOUT).
   */
  const finish = (o: Open, r: ReadResult): boolean => {
    let reply = answer(o, r);
    if (reply === null) return true;
    if (!o.privileged && unprivilegedPending() + reply.length > outputMax) {
      // All or nothing, decided before the first byte goes out: never a prefix of the reply.
      const busy = busyReply(reply.length, outputMax);
      if (reply.length > busy.length) {
        limitedLog(
          `control: refused the reply to ${o.who}: ${reply.length} bytes, unprivileged ` +
            `replies waiting would exceed ${outputMax} bytes`,
        );
        reply = busy;
      }
    }
    o.out = new Uint8Array(reply);
    o.sent = 0;
    o.deadline = Date.now() + replyTimeoutMs;
    return flush(o);
  };

  /**
   * Close `o`; with part of its reply unsent, with a reset, so that a TCP client reads an error
   * instead of an orderly end after a prefix (a unix client sees the end of the stream: the
   * client checks that a list is whole).
   */
  const closeOpen = (o: Open) => {
    if (o.out !== null && o.sent < o.out.length) o.conn.reset();
    else o.conn.close();
  };

  /** Accept every pending client, within the caps. */
  const acceptPending = () => {
    for (let i = 0; i < ACCEPT_BURST; i++) {
      // Only accept what is pending: a blocking accept would wait out its timeout (a jiffy or two).
      if (i > 0 && listenerPoll.wait(0) <= 0) return;
      let conn;
      try {
        conn = server.acceptNow();
      } catch (e) {
        // EMFILE/ENFILE and the like: the control plane waits, the data path goes on.
        if (!(e instanceof LibcError)) throw e;
        limitedLog(`control: accept: ${e.message}`);
        sleepMs(ACCEPT_BACKOFF_MS);
        return;
      }
      if (conn === null) return;
      // The peer is looked up now, while the client is still connected: a tcp client that
      // closes early is no longer a live socket whose owner can be known (unprivileged then).
      const peer = peerOf(
        conn,
        server.unix,
        unauthenticated,
        (at) => limitedLog(`control: refused connection from ${at}: not loopback`),
        (text) => limitedLog(`control: ${text}`),
      );
      if (peer === undefined) {
        conn.close();
        continue;
      }
      const uid = peer.uid;
      const { privileged, mayChange } = peerRights(peer, ownUid);
      const decision = admit(open, { uid, privileged }, LIMITS);
      if (!decision.admit) {
        limitedLog(
          `control: refused connection from uid ${uid ?? "?"}: too many (${decision.reason})`,
        );
        conn.close();
        continue;
      }
      if (decision.evict >= 0) {
        closeOpen(open[decision.evict]);
        open.splice(decision.evict, 1);
      }
      open.push({
        conn,
        reader: new RequestReader(),
        deadline: Date.now() + REQUEST_TIMEOUT_MS,
        uid,
        privileged,
        mayChange,
        who: peer.who,
        out: null,
        sent: 0,
      });
    }
  };

  try {
    // Until the daemon has started nothing is saved, activated or served (clients wait in the
    // backlog): a daemon that fails to start leaves another one's --flow-state alone.
    const started = new Int32Array(start.started);
    while (Atomics.load(started, 0) === 0 && Atomics.load(stop, 0) === 0) {
      Atomics.wait(started, 0, 0, ACCEPT_POLL_MS);
    }
    if (start.flowState !== "" && Atomics.load(stop, 0) === 0) {
      try {
        removeStaleTmpFiles(start.flowState);
      } catch (e) {
        limitedLog(`flow-state: ${start.flowState}: stale temporary files: ${e}`);
      }
    }
    while (Atomics.load(stop, 0) === 0) {
      const now = Date.now();
      flushLog(now);
      pending.tick(now);
      // Deadlines: a client that has not sent its whole request, or taken its whole reply, in
      // time is closed.
      for (let i = open.length - 1; i >= 0; i--) {
        const o = open[i];
        if (o.deadline <= now) {
          if (o.out !== null) {
            limitedLog(
              `control: closed ${o.who}: reply not taken within ${replyTimeoutMs} ms ` +
                `(${o.out.length - o.sent} of ${o.out.length} bytes unsent)`,
            );
          }
          closeOpen(o);
          open.splice(i, 1);
        }
      }
      let wait = ACCEPT_POLL_MS;
      for (const o of open) wait = Math.min(wait, Math.max(0, o.deadline - now));
      poll.clear();
      poll.add(server.fd, POLLIN);
      for (const o of open) poll.add(o.conn.fd, o.out === null ? POLLIN : POLLOUT);
      if (poll.wait(wait) <= 0) continue;
      const listenerReady = poll.revents(0) !== 0;
      // Privileged peers first, then the others, each in arrival order.
      const ready: Open[] = [];
      for (let i = 0; i < open.length; i++) if (poll.revents(i + 1) !== 0) ready.push(open[i]);
      ready.sort((x, y) => Number(y.privileged) - Number(x.privileged));
      const done = new Set<Open>();
      const roundStart = Date.now();
      for (const o of ready) {
        if (o.out !== null) {
          // Writable (or failed): send more of the reply.
          if (flush(o)) done.add(o);
          continue;
        }
        // Unprivileged requests beyond the round's budget wait for the next round.
        if (!o.privileged && Date.now() - roundStart >= ROUND_BUDGET_MS) continue;
        const n = o.conn.recvNow(buf);
        if (n === -1) continue;
        const r: ReadResult = n === -2
          ? { status: "rejected", reply: new Uint8Array(0), lines: [], warnings: [] }
          : n === 0
          ? o.reader.end()
          : o.reader.push(buf.subarray(0, n));
        if (r.status === "more") continue;
        if (finish(o, r)) done.add(o);
      }
      if (done.size > 0) {
        for (let i = open.length - 1; i >= 0; i--) {
          if (done.has(open[i])) {
            closeOpen(open[i]);
            open.splice(i, 1);
          }
        }
      }
      if (listenerReady) acceptPending();
    }
  } finally {
    for (const o of open) closeOpen(o);
    server.close();
  }
  scope.postMessage({ type: "stopped" });
}

/**
 * Load `--flow-state` (daemon/flow_state_file.ts); returns how many flows were restored.
 * Refused entries and a corrupt file are logged; an unsafe file or directory throws, which
 * ends the start-up with that message.
 */
function restore(store: FlowStore, path: string): number {
  return restoreFlowState(store, path, (text) => scope.postMessage({ type: "log", text }));
}

scope.onmessage = (e) => {
  try {
    serve(e.data);
  } catch (err) {
    scope.postMessage({ type: "error", message: err instanceof Error ? err.message : String(err) });
  }
};
