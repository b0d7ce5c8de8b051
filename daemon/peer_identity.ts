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

/**
 * The uid owning the other end of a loopback connection (`peer` connected to `local`): the row
 * of `/proc/net/tcp{,6}` whose local end is the peer and remote end is us, if it is the row of a
 * live socket (`procNetTcpUid`); undefined otherwise — e.g. the client already closed its
 * socket, which the kernel then prints as uid 0. IPv4 clients of an IPv6 listener appear with
 * mapped addresses on our side and in `/proc/net/tcp` on theirs. The files are read once more
 * when no live row is found, since a row can be skipped while the kernel's table changes under
 * the read.
 */
function loopbackPeerUid(local: TcpEndpoint, peer: TcpEndpoint): number | undefined {
  return loopbackPeerUidOnce(local, peer) ?? loopbackPeerUidOnce(local, peer);
}

function loopbackPeerUidOnce(local: TcpEndpoint, peer: TcpEndpoint): number | undefined {
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

/**
 * The peer of a tcp connection: loopback peers are checked (uid from `/proc/net/tcp{,6}`,
 * undefined = unprivileged); others are refused (undefined result, `refused` hears of them)
 * unless `unauthenticated`.
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
  if (!isLoopback(ends.peer.addr)) {
    if (!unauthenticated) {
      refused(at);
      return undefined;
    }
    return { uid: undefined, unchecked: true, who: `tcp ${at}` };
  }
  const uid = loopbackPeerUid(ends.local, ends.peer);
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
