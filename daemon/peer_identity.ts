/**
 * Who is at the other end of a control or trace connection (docs/COMPATIBILITY.md, D7 and D44):
 * on a unix address the kernel's `SO_PEERCRED`; on a tcp address a loopback peer's uid from its
 * live socket (one exact `NETLINK_SOCK_DIAG` lookup; `/proc/net/tcp{,6}` where sock_diag does not
 * work), and nobody else unless the operator said so.
 * A uid that cannot be established with certainty is left undefined, which `peerRights`
 * (./control_admission.ts) treats as unprivileged: every path that cannot tell fails closed.
 *
 * @example
 * ```ts
 * import { peerRights } from "./control_admission.ts";
 * // A peer whose uid could not be read is not privileged, whatever the daemon's uid.
 * peerRights({ uid: undefined, unchecked: false, who: "uid ?" }, 0).privileged; // false
 * ```
 * @module
 */
import type { Connection } from "../ffi/stream_server.ts";
import { tcpEnds } from "../ffi/socket_names.ts";
import { SockDiag } from "../ffi/sock_diag.ts";
import { ENOENT } from "../ffi/constants.ts";
import { liveOwner } from "../lib/ccompat/inet_diag.ts";
import { formatIPv6 } from "../lib/ccompat/inet.ts";
import {
  isLoopback,
  procNetTcpHex,
  procNetTcpUid,
  sameEndpoint,
  type TcpEndpoint,
  unmapIPv4,
} from "../lib/ccompat/proc_net_tcp.ts";
import type { PeerInfo } from "./control_admission.ts";

/** `ep` as `a.b.c.d:port` or `[v6]:port`. */
function endpointText(ep: TcpEndpoint): string {
  const a = ep.addr;
  return a.length === 4 ? `${a.join(".")}:${ep.port}` : `[${formatIPv6(a)}]:${ep.port}`;
}

/** The text of `/proc/net/<file>` of this network namespace, or "" when it cannot be read. */
function readProcNet(file: "tcp" | "tcp6"): string {
  try {
    return Deno.readTextFileSync(`/proc/net/${file}`);
  } catch {
    return "";
  }
}

/** This thread's sock_diag socket, once it is known to answer (see {@link diagSocket}). */
let diag: SockDiag | undefined;
/** When sock_diag may be tried again (ms since epoch) after it could not be used. */
let diagRetryAt = 0;
/** Retry interval for a sock_diag socket that could not be opened or did not answer. */
const DIAG_RETRY_MS = 10_000;

/** What is known of the socket at the other end of a tcp connection. */
type PeerSocket =
  /** A live socket held by a process of this namespace: its uid. */
  | { readonly kind: "local"; readonly uid: number }
  /** No socket of this namespace has that tuple: the peer is on another host. */
  | { readonly kind: "none" }
  /** A socket no process holds (closed early), no answer, or no way to ask: not known. */
  | { readonly kind: "unknown" };

const UNKNOWN: PeerSocket = { kind: "unknown" };
const NONE: PeerSocket = { kind: "none" };

/**
 * This thread's sock_diag socket, or undefined (then `/proc/net/tcp`) while it cannot be used.
 * A new socket is first asked for our own end of `local`–`peer`, which certainly exists: a kernel
 * whose sock_diag cannot see TCP sockets (its inet_diag module missing) answers ENOENT to every
 * lookup, which must not pass for "no such socket". `warn` hears once why sock_diag is not used.
 */
function diagSocket(
  local: TcpEndpoint,
  peer: TcpEndpoint,
  warn: (text: string) => void,
): SockDiag | undefined {
  if (diag !== undefined || Date.now() < diagRetryAt) return diag;
  let d: SockDiag | undefined;
  let why: string;
  try {
    d = SockDiag.open();
    const own = d.lookup(local, peer);
    if (liveOwner(own, local, peer) !== undefined) {
      diag = d;
      return d;
    }
    why = "errno" in own ? `it does not find TCP sockets (errno ${own.errno})` : "a wrong answer";
  } catch (e) {
    why = e instanceof Error ? e.message : String(e);
  }
  d?.close();
  diagRetryAt = Date.now() + DIAG_RETRY_MS;
  warn(
    `sock_diag (NETLINK_SOCK_DIAG) not usable: ${why}; tcp peers are looked up in ` +
      `/proc/net/tcp (slower), retried in ${DIAG_RETRY_MS / 1000} s`,
  );
  return undefined;
}

/**
 * The socket at the other end (`peer`) of our connection whose end is `local`: one exact
 * `NETLINK_SOCK_DIAG` lookup (~5 µs, whatever the number of sockets); where sock_diag cannot be
 * used, one read of `/proc/net/tcp{,6}` (a walk of every socket). Only ENOENT from the kernel, or
 * no row at all in `/proc`, says "none"; a socket no process holds (the kernel keeps an orphan or
 * time-wait socket with uid 0 and no inode after the client closed) or no answer is "unknown".
 */
function peerSocket(
  local: TcpEndpoint,
  peer: TcpEndpoint,
  warn: (text: string) => void,
): PeerSocket {
  const d = diagSocket(local, peer, warn);
  if (d !== undefined) {
    let answer;
    try {
      answer = d.lookup(peer, local);
    } catch {
      d.close(); // no answer in time: a new socket (and check) next time
      diag = undefined;
      return UNKNOWN;
    }
    if ("errno" in answer) return answer.errno === ENOENT ? NONE : UNKNOWN;
    const uid = liveOwner(answer, peer, local);
    return uid === undefined ? UNKNOWN : { kind: "local", uid };
  }
  return procPeerSocket(local, peer);
}

/** {@link peerSocket} from `/proc/net/tcp{,6}` (IPv4-mapped ends are looked up as IPv4). */
function procPeerSocket(local: TcpEndpoint, peer: TcpEndpoint): PeerSocket {
  const peer4 = peer.addr.length === 4 ? peer.addr : unmapIPv4(peer.addr);
  const local4 = local.addr.length === 4 ? local.addr : unmapIPv4(local.addr);
  const rows: [string, TcpEndpoint, TcpEndpoint][] = [];
  if (peer4 !== undefined && local4 !== undefined) {
    rows.push([readProcNet("tcp"), { addr: peer4, port: peer.port }, {
      addr: local4,
      port: local.port,
    }]);
  }
  if (peer.addr.length === 16) rows.push([readProcNet("tcp6"), peer, local]);
  let seen = false;
  for (const [text, p, l] of rows) {
    const uid = procNetTcpUid(text, p, l);
    if (uid !== undefined) return { kind: "local", uid };
    seen ||= text.includes(` ${procNetTcpHex(p)} ${procNetTcpHex(l)} `);
  }
  return seen ? UNKNOWN : NONE;
}

/**
 * The peer of a tcp connection. Loopback peers are checked: the uid of their live socket,
 * undefined (unprivileged) when it is not known for certain. Other peers are refused (undefined
 * result, `refused` hears of them) unless `unauthenticated`; then only a peer that no socket of this
 * host has the tuple of is unchecked: a local user connecting to one of the host's own addresses
 * is checked, also when it closed its socket early (then unprivileged).
 *
 * The answer counts only if our socket still holds the same four-tuple after the lookup: once
 * the client resets the connection, the tuple is free and a socket of another user could take it
 * during the lookup; our socket then fails `getpeername` (it is closed) and the uid is unknown.
 */
function tcpPeer(
  conn: Connection,
  unauthenticated: boolean,
  refused: (at: string) => void,
  warn: (text: string) => void,
): PeerInfo | undefined {
  let ends;
  try {
    ends = tcpEnds(conn.fd);
  } catch {
    return undefined; // the client is already gone
  }
  const at = endpointText(ends.peer);
  const loopback = isLoopback(ends.peer.addr);
  if (!loopback && !unauthenticated) {
    refused(at);
    return undefined;
  }
  let found = peerSocket(ends.local, ends.peer, warn);
  if (found.kind === "local") {
    let still;
    try {
      still = tcpEnds(conn.fd);
    } catch {
      still = undefined;
    }
    const held = still !== undefined && sameEndpoint(still.local, ends.local) &&
      sameEndpoint(still.peer, ends.peer);
    if (!held) found = UNKNOWN;
  }
  // Unchecked only when no socket of this host has the tuple: a remote peer the operator let in.
  if (!loopback && found.kind === "none") {
    return { uid: undefined, unchecked: true, who: `tcp ${at}` };
  }
  const uid = found.kind === "local" ? found.uid : undefined;
  return { uid, unchecked: false, who: `uid ${uid ?? "?"} (tcp ${at})` };
}

/** The peer of a unix connection: its `SO_PEERCRED` uid, undefined (unprivileged) without it. */
function unixPeer(conn: Connection): PeerInfo {
  const p = conn.peer;
  if (p === undefined) return { uid: undefined, unchecked: false, who: "uid ? (no SO_PEERCRED)" };
  return { uid: p.uid, unchecked: false, who: `uid ${p.uid} (pid ${p.pid})` };
}

/**
 * The peer of `conn`, accepted on a unix (`unix`) or tcp address: undefined when the connection
 * is to be closed at once (a non-loopback tcp peer without `unauthenticated`, or a client
 * already gone). Look it up right after accept, while the client is still connected: a tcp
 * client that has closed is no longer a live socket whose owner can be known.
 */
export function peerOf(
  conn: Connection,
  unix: boolean,
  unauthenticated: boolean,
  refused: (at: string) => void,
  warn: (text: string) => void,
): PeerInfo | undefined {
  return unix ? unixPeer(conn) : tcpPeer(conn, unauthenticated, refused, warn);
}
