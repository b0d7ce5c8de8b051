/**
 * The `NETLINK_SOCK_DIAG` messages that look up one TCP socket by its four-tuple
 * (`linux/inet_diag.h`): who owns the other end of a loopback control or trace connection.
 * An exact lookup (no `NLM_F_DUMP`) costs the kernel one hash lookup, where reading
 * `/proc/net/tcp` costs a walk of every socket of the namespace (a user can grow that table with
 * time-wait sockets for free). Pure: bytes in, values out; the socket is `ffi/sock_diag.ts`.
 *
 * Request: `nlmsghdr` (16 bytes, type `SOCK_DIAG_BY_FAMILY`, `NLM_F_REQUEST`) then
 * `inet_diag_req_v2` (56): family, protocol, ext, pad, states (u32), `inet_diag_sockid` (48:
 * sport, dport big-endian; src[16], dst[16] in network order; if; cookie[2]). The kernel finds
 * the socket whose local end is src:sport and remote end dst:dport. Reply: `inet_diag_msg` (72):
 * family, state, timer, retrans, the socket id, expires, rqueue, wqueue, uid, inode; or an
 * `NLMSG_ERROR` (ENOENT: no such socket).
 *
 * @example
 * ```ts
 * import { INET_DIAG_REQUEST_SIZE, writeInetDiagRequest } from "./inet_diag.ts";
 * const buf = new Uint8Array(INET_DIAG_REQUEST_SIZE);
 * const ep = (port: number) => ({ addr: new Uint8Array([127, 0, 0, 1]), port });
 * writeInetDiagRequest(buf, 7, ep(40000), ep(8080)); // 72
 * buf[16]; // 2 (AF_INET)
 * ```
 * @module
 */
import { sameEndpoint, type TcpEndpoint, unmapIPv4 } from "./proc_net_tcp.ts";

/** `nlmsg_type` of sock_diag requests and replies. */
const SOCK_DIAG_BY_FAMILY = 20;
/** `nlmsg_type` of an error (or acknowledgement). */
const NLMSG_ERROR = 2;
const NLM_F_REQUEST = 1;
const NLMSG_HDRLEN = 16;
const REQ_V2_SIZE = 56;
const DIAG_MSG_SIZE = 72;
/** Bytes of a whole request. */
export const INET_DIAG_REQUEST_SIZE = NLMSG_HDRLEN + REQ_V2_SIZE;
const AF_INET = 2;
const AF_INET6 = 10;
const IPPROTO_TCP = 6;
/** `INET_DIAG_NOCOOKIE`: match any socket of the tuple. */
const NOCOOKIE = 0xffffffff;

/** Offsets in `inet_diag_sockid` (from its start). */
const ID_SPORT = 0;
const ID_DPORT = 2;
const ID_SRC = 4;
const ID_DST = 20;
const ID_IF = 36;
const ID_COOKIE = 40;
/** Offsets in `inet_diag_msg`. */
const MSG_FAMILY = 0;
const MSG_STATE = 1;
const MSG_ID = 4;
const MSG_UID = 64;
const MSG_INODE = 68;

/**
 * TCP states (`include/net/tcp_states.h`) in which a socket with an inode is held by a process:
 * ESTABLISHED, FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING. A time-wait or request
 * socket has no owner (uid 0, inode 0); SYN_SENT, CLOSE and LISTEN are no connected peer.
 */
const TCP_LIVE_STATES: ReadonlySet<number> = new Set([1, 4, 5, 8, 9, 11]);

/** A socket the kernel reported. */
export interface InetDiagSocket {
  /** TCP state (1 = ESTABLISHED ...). */
  readonly state: number;
  readonly uid: number;
  /** 0 for a socket no process holds. */
  readonly inode: number;
  /** Its local and remote ends as reported (4-byte addresses for AF_INET). */
  readonly local: TcpEndpoint;
  readonly remote: TcpEndpoint;
}

/** The lookup's answer: a socket, or the errno of the kernel's refusal (ENOENT: none). */
export type InetDiagAnswer = InetDiagSocket | { readonly errno: number };

/** Both ends as IPv4 when both are IPv4 or IPv4-mapped, else as IPv6; undefined if mixed. */
function sameFamily(
  a: TcpEndpoint,
  b: TcpEndpoint,
): { family: number; a: TcpEndpoint; b: TcpEndpoint } | undefined {
  const a4 = a.addr.length === 4 ? a.addr : unmapIPv4(a.addr);
  const b4 = b.addr.length === 4 ? b.addr : unmapIPv4(b.addr);
  if (a4 !== undefined && b4 !== undefined) {
    return { family: AF_INET, a: { addr: a4, port: a.port }, b: { addr: b4, port: b.port } };
  }
  if (a.addr.length === 16 && b.addr.length === 16) return { family: AF_INET6, a, b };
  return undefined;
}

/**
 * Write into `buf` the request for the TCP socket whose local end is `socket` and remote end
 * `remote` (IPv4-mapped addresses are asked as IPv4, where the kernel keeps such connections).
 * Returns the length ({@link INET_DIAG_REQUEST_SIZE}), or 0 for ends of different families.
 */
export function writeInetDiagRequest(
  buf: Uint8Array,
  seq: number,
  socket: TcpEndpoint,
  remote: TcpEndpoint,
): number {
  const f = sameFamily(socket, remote);
  if (f === undefined || buf.length < INET_DIAG_REQUEST_SIZE) return 0;
  buf.fill(0, 0, INET_DIAG_REQUEST_SIZE);
  const dv = new DataView(buf.buffer, buf.byteOffset, INET_DIAG_REQUEST_SIZE);
  dv.setUint32(0, INET_DIAG_REQUEST_SIZE, true);
  dv.setUint16(4, SOCK_DIAG_BY_FAMILY, true);
  dv.setUint16(6, NLM_F_REQUEST, true);
  dv.setUint32(8, seq >>> 0, true);
  const r = NLMSG_HDRLEN;
  buf[r] = f.family;
  buf[r + 1] = IPPROTO_TCP;
  dv.setUint32(r + 4, 0xffffffff, true); // every state
  const id = r + 8;
  dv.setUint16(id + ID_SPORT, socket.port, false);
  dv.setUint16(id + ID_DPORT, remote.port, false);
  buf.set(f.a.addr, id + ID_SRC);
  buf.set(f.b.addr, id + ID_DST);
  dv.setUint32(id + ID_IF, 0, true);
  dv.setUint32(id + ID_COOKIE, NOCOOKIE, true);
  dv.setUint32(id + ID_COOKIE + 4, NOCOOKIE, true);
  return INET_DIAG_REQUEST_SIZE;
}

/**
 * The answer to request `seq` in the datagram `buf[0, len)`, or undefined when it holds none
 * (another sequence number, a truncated message).
 */
export function readInetDiagReply(
  buf: Uint8Array,
  len: number,
  seq: number,
): InetDiagAnswer | undefined {
  const dv = new DataView(buf.buffer, buf.byteOffset, Math.min(len, buf.length));
  let off = 0;
  while (off + NLMSG_HDRLEN <= dv.byteLength) {
    const mlen = dv.getUint32(off, true);
    if (mlen < NLMSG_HDRLEN || off + mlen > dv.byteLength) return undefined;
    const type = dv.getUint16(off + 4, true);
    const p = off + NLMSG_HDRLEN;
    if (dv.getUint32(off + 8, true) === (seq >>> 0)) {
      if (type === NLMSG_ERROR && mlen >= NLMSG_HDRLEN + 4) {
        return { errno: -dv.getInt32(p, true) };
      }
      if (type === SOCK_DIAG_BY_FAMILY && mlen >= NLMSG_HDRLEN + DIAG_MSG_SIZE) {
        const n = dv.getUint8(p + MSG_FAMILY) === AF_INET ? 4 : 16;
        const id = p + MSG_ID;
        const at = (o: number, port: number) => ({
          addr: buf.slice(id + o, id + o + n),
          port: dv.getUint16(id + port, false),
        });
        return {
          state: dv.getUint8(p + MSG_STATE),
          uid: dv.getUint32(p + MSG_UID, true),
          inode: dv.getUint32(p + MSG_INODE, true),
          local: at(ID_SRC, ID_SPORT),
          remote: at(ID_DST, ID_DPORT),
        };
      }
    }
    off += (mlen + 3) & ~3;
  }
  return undefined;
}

/**
 * The uid that owns the socket of `answer` when it is the live socket asked for (the ends
 * `socket` and `remote`, a state of {@link TCP_LIVE_STATES}, an inode); undefined otherwise, which
 * callers treat as "not known for certain".
 */
export function liveOwner(
  answer: InetDiagAnswer | undefined,
  socket: TcpEndpoint,
  remote: TcpEndpoint,
): number | undefined {
  if (answer === undefined || "errno" in answer) return undefined;
  if (!TCP_LIVE_STATES.has(answer.state) || answer.inode === 0) return undefined;
  const f = sameFamily(socket, remote);
  const g = sameFamily(answer.local, answer.remote);
  if (f === undefined || g === undefined) return undefined;
  return sameEndpoint(f.a, g.a) && sameEndpoint(f.b, g.b) ? answer.uid : undefined;
}
