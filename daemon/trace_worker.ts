/**
 * The trace server thread of `nfqlb lb` and `flowlb` (docs/COMPATIBILITY.md#trace-and-log): listens on
 * `--trace_address` with backlog 1, serves one `nfqlb trace` client at a
 * time, and forwards the lines the queue threads put in their trace rings.
 *
 * On accept it logs `Trace; active mask=0x…`, then sends `Trace active,
 * mask=0x…`; it then streams trace lines until the client sends anything or
 * closes, sets the mask in `nfqlb-trace` to 0, closes the stream and logs
 * `Trace: closed`. Until a client has ever attached, trace lines go to
 * stderr; after one detached they are discarded until the next attaches.
 * Log lines of the queue threads (their log rings) always go to stderr, and
 * also to the client while one is attached and the mask has bit `log`.
 *
 * Beyond 1.2.0, only root and the daemon's uid are served (`SO_PEERCRED` on unix addresses, a
 * loopback peer's live socket row of `/proc/net/tcp` on tcp addresses, like the control
 * socket): another peer, or one whose uid cannot be established, gets
 * `Trace refused: ...` and is closed, without touching the mask; refusals are logged at most
 * once per 10 s, the rest summarised (`lib/log/rate_limit.ts`).
 * @module
 */
import { LOG_WARNING, logLine } from "../lib/log/levels.ts";
import { LogRateLimiter } from "../lib/log/rate_limit.ts";
import { LibcError } from "../ffi/libc.ts";
import { type Connection, SendBuffer, StreamServer } from "../ffi/stream_server.ts";
import type { SocketAddress } from "../lib/ccompat/sockaddr.ts";
import { formatMask, TRACE_LOG } from "../lib/trace/mask.ts";
import { TraceRing } from "../lib/trace/ring.ts";
import { LOGLEVEL_WORD, MASK_WORD, openTraceShm } from "./open_trace_shm.ts";
import { peerRights } from "./control_admission.ts";
import { peerOf } from "./peer_identity.ts";

/** The message that starts the trace thread. */
export interface TraceStart {
  readonly address: SocketAddress;
  /** The address as given (for messages). */
  readonly addressText: string;
  /** One ring per producer (queue threads, control thread). */
  readonly rings: readonly SharedArrayBuffer[];
  /** One log ring per queue thread (lines already filtered by log level). */
  readonly logs: readonly SharedArrayBuffer[];
  /** Int32Array over it: [0] = stop requested. */
  readonly stop: SharedArrayBuffer;
}

/** Messages the trace thread sends. */
export type TraceMessage = { type: "warning"; text: string } | { type: "stopped" };

const scope = self as unknown as {
  postMessage(m: TraceMessage): void;
  onmessage: ((e: MessageEvent<TraceStart>) => void) | null;
};

/** How often the accept loop looks at the stop flag and the rings (bounds the daemon's stop time). */
const ACCEPT_POLL_MS = 20;
/** How often trace lines are forwarded to an attached client. */
const STREAM_POLL_MS = 20;
/**
 * Trace bytes kept for a client whose socket does not take them (it reads too slowly or not at
 * all); beyond, the client is closed (`Trace: client too slow`). The thread never waits for a
 * client: it keeps draining the rings, logging and watching the stop flag.
 */
const CLIENT_BACKLOG_MAX = 4 << 20;
/** At most one `Trace: refused` log line per 10 s; the others are summarised. */
const REFUSED_LOG_LIMIT = { burst: 1, intervalMs: 10_000, maxKeys: 1 };

/** The line an unauthorised trace client gets before the server closes (ends with `\n`). */
function refusedLine(who: string, ownUid: number | null): string {
  return `Trace refused: ${who} is not root or uid ${ownUid}\n`;
}
const encoder = new TextEncoder();

function serve(start: TraceStart): void {
  const stop = new Int32Array(start.stop);
  const rings = start.rings.map((b) => new TraceRing(b));
  const logs = start.logs.map((b) => new TraceRing(b));
  const shm = openTraceShm();
  const words = shm.words;
  const level = () => Atomics.load(words, LOGLEVEL_WORD);
  const mask = () => Atomics.load(words, MASK_WORD) >>> 0;
  let client: Connection | null = null;
  let everAttached = false;
  /** What the client's socket has not taken yet. */
  const out = new SendBuffer(CLIENT_BACKLOG_MAX);
  /** The client fell more than CLIENT_BACKLOG_MAX behind. */
  let tooSlow = false;
  /** Queue `bytes` for the client; false once it is too far behind. */
  const toClient = (bytes: Uint8Array): boolean => {
    if (!tooSlow && !out.push(bytes)) tooSlow = true;
    return !tooSlow;
  };

  /**
   * Forward every trace ring's lines: to the client, to stderr before any
   * client, else nowhere; and every log ring's lines to stderr (and the client).
   * False when the client is gone or too far behind.
   */
  const drain = (): boolean => {
    let ok = true;
    for (const r of rings) {
      r.drain((bytes) => {
        if (client !== null) {
          if (ok) ok = toClient(bytes);
        } else if (!everAttached) {
          Deno.stderr.writeSync(new Uint8Array(bytes));
        }
      });
    }
    for (const r of logs) {
      r.drain((bytes) => {
        Deno.stderr.writeSync(new Uint8Array(bytes));
        if (client !== null && ok && (mask() & TRACE_LOG) !== 0) ok = toClient(bytes);
      });
    }
    if (client !== null && ok) ok = out.flush(client);
    return ok;
  };
  /** A warning-level log line (docs/COMPATIBILITY.md#trace-and-log): stderr by level, and the trace stream with bit 0. */
  const warn = (text: string) => {
    const line = encoder.encode(logLine(LOG_WARNING, text) + "\n");
    if (level() >= LOG_WARNING) Deno.stderr.writeSync(line);
    if (client !== null && (mask() & TRACE_LOG) !== 0 && toClient(line)) out.flush(client);
  };

  let server: StreamServer | null = null;
  try {
    server = StreamServer.listen(start.address, 1);
  } catch (e) {
    const why = e instanceof LibcError ? `${e.call}: ${e.message}` : String(e);
    scope.postMessage({
      type: "warning",
      text: `Trace server on ${start.addressText} not started: ${why}`,
    });
  }
  const buf = new Uint8Array(256);
  const ownUid = Deno.uid();
  const refusedLog = new LogRateLimiter(REFUSED_LOG_LIMIT);
  try {
    while (Atomics.load(stop, 0) === 0) {
      if (server === null) {
        drain();
        Atomics.wait(stop, 0, 0, ACCEPT_POLL_MS);
        continue;
      }
      const conn = server.accept(ACCEPT_POLL_MS);
      if (conn === null) {
        for (const line of refusedLog.flush(Date.now())) warn(line);
        drain();
        continue;
      }
      // Served only when the peer is known for certain to be root or the daemon's uid: unix
      // peers by their credentials, tcp peers only on loopback, by their live socket's row of
      // /proc/net/tcp (D44); anyone else, or a peer that cannot be told, is refused.
      let at = "";
      const peer = peerOf(conn, server.unix, false, (a) => at = a, (t) => warn(`Trace: ${t}`));
      if (peer === undefined || !peerRights(peer, ownUid).privileged) {
        // Told why and closed; the mask and the stream of an attached-before state are left
        // alone (docs/COMPATIBILITY.md#trace-and-log).
        const who = peer?.who ?? (at === "" ? "tcp ? (gone)" : `tcp ${at} (not loopback)`);
        conn.sendNow(encoder.encode(refusedLine(who, ownUid))); // one short line, never waited for
        conn.close();
        const text = `Trace: refused ${who}`;
        for (const line of refusedLog.offer("refused", text, Date.now())) warn(line);
        drain();
        continue;
      }
      // Lines produced before this client attached are not its business: discard them.
      everAttached = true;
      drain();
      client = conn;
      out.clear();
      tooSlow = false;
      const m = mask();
      // 1.2.0's order: the log line (copied to this client with bit log) before `Trace active`.
      warn(`Trace; active mask=${formatMask(m)}`);
      let open = toClient(encoder.encode(`Trace active, mask=${formatMask(m)}\n`));
      while (open && Atomics.load(stop, 0) === 0) {
        open = drain();
        const n = conn.recv(buf, STREAM_POLL_MS);
        if (n !== -1) open = false; // data, EOF or an error: the client is done
      }
      drain();
      const behind = out.pending;
      Atomics.store(words, MASK_WORD, 0);
      client = null;
      conn.close();
      if (tooSlow) warn(`Trace: client too slow (${behind} bytes not taken), closed`);
      warn("Trace: closed");
    }
    drain(); // what the queue threads wrote before they stopped
  } finally {
    client?.close();
    server?.close();
    shm.close();
  }
}

scope.onmessage = (e) => {
  try {
    serve(e.data);
  } catch (err) {
    scope.postMessage({
      type: "warning",
      text: `Trace server: ${err instanceof Error ? err.message : String(err)}`,
    });
  }
  scope.postMessage({ type: "stopped" });
};
