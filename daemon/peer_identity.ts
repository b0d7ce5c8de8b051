/**
 * Who is at the other end of a control or trace connection (docs/COMPATIBILITY.md, D7 and D44):
 * on a unix address the kernel's `SO_PEERCRED`; on a tcp address a loopback peer's uid from the
 * row of its live socket in `/proc/net/tcp{,6}`, and nobody else unless the operator said so.
 * A uid that cannot be established with certainty is left undefined, which
 * {@link peerRights} treats as unprivileged: every path that cannot tell fails closed.
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
import { liveOwner } from "../lib/ccompat/inet_diag.ts";
import { formatIPv6 } from "../lib/ccompat/inet.ts";
import {
  isLoopback,
  procNetTcpUid,
  type TcpEndpoint,
  unmapIPv4,
} from "../lib/ccompat/proc_net_tcp.ts";
import { type PeerInfo, peerRights } from "./control_admission.ts";

export { peerRights };

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

/** This thread's sock_diag socket; null once it could not be opened (then /proc/net/tcp). */
let diag: SockDiag | null | undefined;

/**
 * The uid owning the other end (`peer`) of our connection whose end is `local`, when that is a
 * live socket of this host's network namespace held by a process; undefined otherwise (no such
 * socket: a remote peer, or a client that already closed — the kernel keeps an orphan or
 * time-wait socket with uid 0 and no inode — or no answer). One exact `NETLINK_SOCK_DIAG` lookup
 * (~15 µs, whatever the number of sockets); where sock_diag cannot be opened, one read of
 * `/proc/net/tcp{,6}` (a walk of every socket, so only as a fallback).
 */
function peerSocketOwner(local: TcpEndpoint, peer: TcpEndpoint): number | undefined {
  if (diag === undefined) {
    try {
      diag = SockDiag.open();
    } catch {
      diag = null;
    }
  }
  if (diag !== null) {
    try {
      return liveOwner(diag.lookup(peer, local), peer, local);
    } catch {
      return undefined; // no answer in time: not known
    }
  }
  return procPeerUid(local, peer);
}

/** {@link peerSocketOwner} from `/proc/net/tcp{,6}` (IPv4-mapped ends are looked up as IPv4). */
function procPeerUid(local: TcpEndpoint, peer: TcpEndpoint): number | undefined {
  const peer4 = peer.addr.length === 4 ? peer.addr : unmapIPv4(peer.addr);
  const local4 = local.addr.length === 4 ? local.addr : unmapIPv4(local.addr);
  if (peer4 !== undefined && local4 !== undefined) {
    const uid = procNetTcpUid(
      readProcNet("tcp"),
      { addr: peer4, port: peer.port },
      { addr: local4, port: local.port },
    );
    if (uid !== undefined || peer.addr.length === 4) return uid;
  }
  return procNetTcpUid(readProcNet("tcp6"), peer, local);
}

const sameEnd = (a: TcpEndpoint, b: TcpEndpoint) =>
  a.port === b.port && a.addr.length === b.addr.length && a.addr.every((v, i) => v === b.addr[i]);

/**
 * The peer of a tcp connection. Loopback peers are checked: the uid of their live socket,
 * undefined (unprivileged) when it is not known for certain. Other peers are refused (undefined
 * result, `refused` hears of them) unless `unauthenticated`; then a peer that is a live socket of
 * this host (a local user connecting to one of its own addresses) is still checked, and only a
 * peer with no local socket is unchecked.
 *
 * The answer counts only if our socket still holds the same four-tuple after the lookup: once
 * the client resets the connection, the tuple is free and a socket of another user could take it
 * during the lookup; our socket then fails `getpeername` (it is closed) and the uid is unknown.
 */
function tcpPeer(
  conn: Connection,
  unauthenticated: boolean,
  refused: (at: string) => void,
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
  let uid = peerSocketOwner(ends.local, ends.peer);
  if (uid !== undefined) {
    let still;
    try {
      still = tcpEnds(conn.fd);
    } catch {
      still = undefined;
    }
    const held = still !== undefined && sameEnd(still.local, ends.local) &&
      sameEnd(still.peer, ends.peer);
    if (!held) uid = undefined;
  }
  if (!loopback && uid === undefined) return { uid: undefined, unchecked: true, who: `tcp ${at}` };
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
): PeerInfo | undefined {
  return unix ? unixPeer(conn) : tcpPeer(conn, unauthenticated, refused);
}
