/**
 * The owner of a TCP socket from `/proc/net/tcp` or `/proc/net/tcp6`, used to find the uid of
 * a loopback peer of a `tcp:` control address (docs/COMPATIBILITY.md#control-protocol). The
 * kernel prints each address as 32-bit words in host byte order (`%08X`, little-endian on x86)
 * and ports big-endian (`%04X`); the state is the fourth column, the uid the eighth, the inode
 * the tenth. Pure: works on the file's text.
 *
 * Only a row of a live socket tells its owner: a socket whose process closed it (an orphan,
 * e.g. a client that sent its request and closed at once) and time-wait and request sockets are
 * printed with uid 0 and inode 0, which says nothing about who made them. So a row counts only
 * when its inode is not 0 and its state is one of a connection that a process still holds
 * ({@link LIVE_STATES}); anything else is "unknown", which callers must treat as unprivileged.
 *
 * @example
 * ```ts
 * import { procNetTcpUid } from "./proc_net_tcp.ts";
 * const text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n" +
 *   "   1: 0100007F:A000 0100007F:1F90 01 00000000:00000000 00:00000000 00000000 65534 0 9 1\n";
 * procNetTcpUid(
 *   text,
 *   { addr: new Uint8Array([127, 0, 0, 1]), port: 0xa000 },
 *   { addr: new Uint8Array([127, 0, 0, 1]), port: 8080 },
 * ); // 65534
 * ```
 * @module
 */

/** An address (4 or 16 bytes, network order) and port. */
export interface TcpEndpoint {
  readonly addr: Uint8Array;
  readonly port: number;
}

/** Column indexes of a `/proc/net/tcp{,6}` line split on white space. */
const COL_LOCAL = 1;
const COL_REMOTE = 2;
const COL_STATE = 3;
const COL_UID = 7;
const COL_INODE = 9;

/**
 * The states (`st`, include/net/tcp_states.h) in which a row with an inode is a socket a process
 * holds: ESTABLISHED (01), FIN_WAIT1 (04), FIN_WAIT2 (05), CLOSE_WAIT (08), LAST_ACK (09) and
 * CLOSING (0B) — a client that shut down its sending side but still holds the socket to read
 * the reply is one of these. TIME_WAIT (06) and SYN_RECV (03) rows are never sockets of a
 * process (uid and inode 0, or the listener's uid), and SYN_SENT, CLOSE, LISTEN are not a
 * connected peer.
 */
const LIVE_STATES: ReadonlySet<string> = new Set(["01", "04", "05", "08", "09", "0B"]);

/** `ep` as the kernel prints it in `/proc/net/tcp{,6}` (`ADDR:PORT`, upper-case hex). */
export function procNetTcpHex(ep: TcpEndpoint): string {
  let s = "";
  for (let w = 0; w + 4 <= ep.addr.length; w += 4) {
    // Each 32-bit word is printed as a little-endian host integer.
    const a = ep.addr;
    const v = (a[w] | (a[w + 1] << 8) | (a[w + 2] << 16) | (a[w + 3] << 24)) >>> 0;
    s += v.toString(16).toUpperCase().padStart(8, "0");
  }
  return `${s}:${ep.port.toString(16).toUpperCase().padStart(4, "0")}`;
}

/**
 * The uid owning the live socket whose local end is `socket` and whose remote end is `remote`,
 * or undefined when it is not known for certain: no row of `text` (a `/proc/net/tcp` or
 * `/proc/net/tcp6` dump) matches, the matching rows are not of a live socket (inode 0, or a
 * state not in {@link LIVE_STATES}: an orphan or time-wait socket, printed as uid 0), a uid or
 * inode is garbled, or two live rows disagree. Both endpoints must have the address length of
 * the file (4 for tcp, 16 for tcp6).
 */
export function procNetTcpUid(
  text: string,
  socket: TcpEndpoint,
  remote: TcpEndpoint,
): number | undefined {
  const local = procNetTcpHex(socket);
  const rem = procNetTcpHex(remote);
  let found: number | undefined;
  for (const line of text.split("\n")) {
    const cols = line.trim().split(/\s+/);
    if (cols.length <= COL_INODE) continue;
    if (cols[COL_LOCAL].toUpperCase() !== local || cols[COL_REMOTE].toUpperCase() !== rem) {
      continue;
    }
    const uid = cols[COL_UID];
    const inode = cols[COL_INODE];
    if (!/^[0-9]{1,10}$/.test(uid) || !/^[0-9]{1,20}$/.test(inode)) return undefined;
    if (/^0+$/.test(inode) || !LIVE_STATES.has(cols[COL_STATE].toUpperCase())) continue;
    if (found !== undefined && found !== Number(uid)) return undefined;
    found = Number(uid);
  }
  return found;
}

/** Whether `a` and `b` are the same endpoint: same port, same address bytes (and length). */
export function sameEndpoint(a: TcpEndpoint, b: TcpEndpoint): boolean {
  return a.port === b.port && a.addr.length === b.addr.length &&
    a.addr.every((v, i) => v === b.addr[i]);
}

/** The IPv4 address inside an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), or undefined. */
export function unmapIPv4(addr: Uint8Array): Uint8Array | undefined {
  if (addr.length !== 16) return undefined;
  for (let i = 0; i < 10; i++) if (addr[i] !== 0) return undefined;
  if (addr[10] !== 0xff || addr[11] !== 0xff) return undefined;
  return addr.slice(12);
}

/** Whether `addr` is a loopback address: 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104. */
export function isLoopback(addr: Uint8Array): boolean {
  if (addr.length === 4) return addr[0] === 127;
  if (addr.length !== 16) return false;
  const v4 = unmapIPv4(addr);
  if (v4 !== undefined) return v4[0] === 127;
  for (let i = 0; i < 15; i++) if (addr[i] !== 0) return false;
  return addr[15] === 1;
}
