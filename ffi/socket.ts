/**
 * Socket helpers over the glibc symbols of `./libc.ts`: option get/set, the
 * receive timeout, and the x86-64 `struct msghdr` / `struct mmsghdr` layouts
 * the NFQUEUE data plane fills once and reuses for every `recvmmsg` and
 * `sendmsg`. Socket option levels and names are defined here (errno values,
 * address families and socket types in `./constants.ts`).
 *
 * All calls are blocking (each queue runs in its own Worker).
 * @module
 */

import { AF_NETLINK, AF_UNIX, EAGAIN, EINTR, SOCK_CLOEXEC, SOCK_RAW } from "./constants.ts";
import { errno, getLibc, LibcError } from "./libc.ts";

/** Socket option level `SOL_SOCKET`. */
export const SOL_SOCKET = 1;
/** `SO_REUSEADDR` (int). */
export const SO_REUSEADDR = 2;
/** `SO_SNDBUF` (int). */
export const SO_SNDBUF = 7;
/** `SO_RCVBUF` (int; the kernel doubles what is set, capped at rmem_max). */
export const SO_RCVBUF = 8;
/** `SO_LINGER` (`struct linger` { int l_onoff; int l_linger }). */
export const SO_LINGER = 13;
/** `SO_PEERCRED` (`struct ucred`). */
export const SO_PEERCRED = 17;
/** `SO_RCVTIMEO` with a 64-bit `struct timeval` (SO_RCVTIMEO_OLD on x86-64). */
export const SO_RCVTIMEO = 20;
/** Socket option level `SOL_NETLINK`. */
export const SOL_NETLINK = 270;
/** `NETLINK_NO_ENOBUFS` (int): do not report ENOBUFS on receive-buffer overrun. */
export const NETLINK_NO_ENOBUFS = 5;

/** recv flag: non-blocking for this call. */
export const MSG_DONTWAIT = 0x40;
/** msg_flags bit: the datagram was longer than the buffer. */
export const MSG_TRUNC = 0x20;
/** send flag: no SIGPIPE when the peer has gone. */
export const MSG_NOSIGNAL = 0x4000;
/** recvmmsg flag: block for the first message only. */
export const MSG_WAITFORONE = 0x10000;

// x86-64 layouts:
//   struct iovec { void *iov_base; size_t iov_len; }                           16 bytes
//   struct msghdr { void *msg_name; socklen_t msg_namelen; (pad 4)
//     struct iovec *msg_iov; size_t msg_iovlen; void *msg_control;
//     size_t msg_controllen; int msg_flags; (pad 4) }                          56 bytes
//   struct mmsghdr { struct msghdr msg_hdr; unsigned msg_len; (pad 4) }        64 bytes
/** Size of `struct iovec`. */
export const IOVEC_SIZE = 16;
/** Offset of `iov_base`. */
export const IOV_OFF_BASE = 0;
/** Offset of `iov_len`. */
export const IOV_OFF_LEN = 8;
/** Offset of `msg_name`. */
export const MSGHDR_OFF_NAME = 0;
/** Offset of `msg_namelen`. */
export const MSGHDR_OFF_NAMELEN = 8;
/** Offset of `msg_iov`. */
export const MSGHDR_OFF_IOV = 16;
/** Offset of `msg_iovlen`. */
export const MSGHDR_OFF_IOVLEN = 24;
/** Offset of `msg_control`. */
export const MSGHDR_OFF_CONTROL = 32;
/** Offset of `msg_controllen`. */
export const MSGHDR_OFF_CONTROLLEN = 40;
/** Offset of `msg_flags` (set by the kernel on receive). */
export const MSGHDR_OFF_FLAGS = 48;
/** Size of `struct msghdr`. */
export const MSGHDR_SIZE = 56;
/** Offset of `msg_len` in `struct mmsghdr` (bytes received). */
export const MMSGHDR_OFF_LEN = 56;
/** Size of `struct mmsghdr`. */
export const MMSGHDR_SIZE = 64;

// Explicit ArrayBuffers: their backing stores live outside the V8 heap and never move.
const intBuf = new Int32Array(new ArrayBuffer(4));
const intBytes = new Uint8Array(intBuf.buffer);
const lenBuf = new Uint32Array(new ArrayBuffer(4));
const lenBytes = new Uint8Array(lenBuf.buffer);

/** `setsockopt(fd, level, name, &(int)value)`; throws LibcError on failure. */
export function setIntOption(fd: number, level: number, name: number, value: number): void {
  intBuf[0] = value | 0;
  if (getLibc().setsockopt(fd, level, name, intBytes, 4) !== 0) {
    throw new LibcError("setsockopt", errno());
  }
}

/** `getsockopt(fd, level, name)` of an int option; throws LibcError on failure. */
export function getIntOption(fd: number, level: number, name: number): number {
  intBuf[0] = 0;
  lenBuf[0] = 4;
  if (getLibc().getsockopt(fd, level, name, intBytes, lenBytes) !== 0) {
    throw new LibcError("getsockopt", errno());
  }
  return intBuf[0];
}

/**
 * `SO_LINGER` on with a time of 0: the next `close` of a TCP socket resets the connection (RST,
 * unsent data dropped), so the peer reads an error instead of an orderly end. No effect on unix
 * sockets. Throws LibcError on failure.
 */
export function setLingerReset(fd: number): void {
  const linger = new Int32Array([1, 0]);
  const bytes = new Uint8Array(linger.buffer);
  if (getLibc().setsockopt(fd, SOL_SOCKET, SO_LINGER, bytes, bytes.length) !== 0) {
    throw new LibcError("setsockopt", errno());
  }
}

/** Set `SO_RCVTIMEO` to `ms` milliseconds (0 = block forever). */
export function setReceiveTimeout(fd: number, ms: number): void {
  const tv = new BigInt64Array([BigInt(Math.floor(ms / 1000)), BigInt((ms % 1000) * 1000)]);
  const bytes = new Uint8Array(tv.buffer);
  if (getLibc().setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, bytes, bytes.length) !== 0) {
    throw new LibcError("setsockopt", errno());
  }
}

/** Size of `struct sockaddr_nl` { u16 family, u16 pad, u32 pid, u32 groups }. */
const SOCKADDR_NL_SIZE = 12;

/**
 * A netlink socket of `protocol` (e.g. NETLINK_NETFILTER), close-on-exec,
 * bound with port id 0 (the kernel assigns one) and no multicast groups.
 * Messages sent without an address go to the kernel. Throws LibcError
 * (`socket` or `bind`).
 */
export function openNetlinkSocket(protocol: number): number {
  const l = getLibc();
  const fd = l.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
  if (fd < 0) throw new LibcError("socket", errno());
  const sa = new Uint8Array(SOCKADDR_NL_SIZE);
  new DataView(sa.buffer).setUint16(0, AF_NETLINK, true);
  if (l.bind(fd, sa, sa.length) !== 0) {
    const e = errno();
    l.close(fd);
    throw new LibcError("bind", e);
  }
  return fd;
}

/**
 * Send datagram `bytes[0, len)` on netlink socket `fd` whole (EINTR is retried). Throws
 * LibcError (errno 0 for a short send).
 */
export function netlinkSend(fd: number, bytes: Uint8Array, len: number): void {
  const l = getLibc();
  for (;;) {
    const r = Number(l.send(fd, bytes, BigInt(len), 0));
    if (r === len) return;
    const e = errno();
    if (r < 0 && e === EINTR) continue;
    throw new LibcError("send", r < 0 ? e : 0);
  }
}

/**
 * Receive one datagram from netlink socket `fd` into `buf` (EINTR is retried); returns its
 * length. Throws LibcError named `call`, or `timedOut` for EAGAIN (the socket's receive timeout
 * passed without an answer).
 */
export function netlinkRecv(
  fd: number,
  buf: Uint8Array,
  call = "recv",
  timedOut = call,
): number {
  const l = getLibc();
  for (;;) {
    const r = Number(l.recv(fd, buf, BigInt(buf.length), 0));
    if (r >= 0) return r;
    const e = errno();
    if (e !== EINTR) throw new LibcError(e === EAGAIN ? timedOut : call, e);
  }
}

/**
 * A connected pair of unix sockets of `type` (e.g. SOCK_DGRAM), close-on-exec;
 * e.g. one end standing in for the kernel in tests. Throws LibcError.
 */
export function socketPair(type: number): [number, number] {
  const fds = new Int32Array(2);
  const r = getLibc().socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, new Uint8Array(fds.buffer));
  if (r !== 0) throw new LibcError("socketpair", errno());
  return [fds[0], fds[1]];
}

/** `close(fd)`, ignoring errors. */
export function closeFd(fd: number): void {
  getLibc().close(fd);
}

/** The address of a typed array's first byte, as a number (for struct fields). */
export function addressOf(buf: Uint8Array): number {
  const p = Deno.UnsafePointer.of(buf);
  if (p === null) throw new Error("cannot take the address of an empty buffer");
  return Number(Deno.UnsafePointer.value(p));
}

/**
 * Fill `vec` (`count` × `struct mmsghdr`) so that message `k` is received into
 * `rx[k * slot, (k + 1) * slot)` through the iovec array `iov` (`count` × 16
 * bytes). `rx`, `iov` and `vec` must stay alive (and unmoved) while used.
 */
export function initMmsghdrs(
  vec: Uint8Array,
  iov: Uint8Array,
  rx: Uint8Array,
  slot: number,
  count: number,
): void {
  if (vec.length < count * MMSGHDR_SIZE || iov.length < count * IOVEC_SIZE) {
    throw new RangeError("mmsghdr or iovec array too small");
  }
  if (rx.length < count * slot) throw new RangeError("receive buffer too small");
  const vv = new DataView(vec.buffer, vec.byteOffset, vec.byteLength);
  const iv = new DataView(iov.buffer, iov.byteOffset, iov.byteLength);
  const rxAddr = BigInt(addressOf(rx));
  const iovAddr = BigInt(addressOf(iov));
  vec.fill(0);
  for (let k = 0; k < count; k++) {
    iv.setBigUint64(k * IOVEC_SIZE + IOV_OFF_BASE, rxAddr + BigInt(k * slot), true);
    iv.setBigUint64(k * IOVEC_SIZE + IOV_OFF_LEN, BigInt(slot), true);
    const m = k * MMSGHDR_SIZE;
    vv.setBigUint64(m + MSGHDR_OFF_IOV, iovAddr + BigInt(k * IOVEC_SIZE), true);
    vv.setBigUint64(m + MSGHDR_OFF_IOVLEN, 1n, true);
  }
}

/**
 * Fill `msg` (one `struct msghdr`, 56 bytes) and `iov` (one `struct iovec`)
 * to send from `tx` to the socket's default destination (for netlink: the
 * kernel). Set the length per call with {@link setSendLength}.
 */
export function initSendMsghdr(msg: Uint8Array, iov: Uint8Array, tx: Uint8Array): void {
  if (msg.length < MSGHDR_SIZE || iov.length < IOVEC_SIZE) throw new RangeError("too small");
  const mv = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  const iv = new DataView(iov.buffer, iov.byteOffset, iov.byteLength);
  msg.fill(0);
  iov.fill(0);
  iv.setBigUint64(IOV_OFF_BASE, BigInt(addressOf(tx)), true);
  mv.setBigUint64(MSGHDR_OFF_IOV, BigInt(addressOf(iov)), true);
  mv.setBigUint64(MSGHDR_OFF_IOVLEN, 1n, true);
}

/** Set the iov_len of an iovec prepared by {@link initSendMsghdr} (no allocation). */
export function setSendLength(iovView: DataView, len: number): void {
  iovView.setUint32(IOV_OFF_LEN, len >>> 0, true);
  iovView.setUint32(IOV_OFF_LEN + 4, 0, true);
}

/** The peer process of a unix-socket connection. */
export interface PeerCredentials {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

/** `sizeof(struct ucred)`: pid, uid, gid (3 × 32 bits). */
const UCRED_SIZE = 12;

/** `SO_PEERCRED` of a unix socket: the other end's process, or undefined when the kernel does not say. */
export function peerCredentials(fd: number): PeerCredentials | undefined {
  const cred = new Uint8Array(UCRED_SIZE);
  const len = new Uint32Array([UCRED_SIZE]);
  if (
    getLibc().getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, new Uint8Array(len.buffer)) !== 0
  ) {
    return undefined;
  }
  const dv = new DataView(cred.buffer);
  return { pid: dv.getInt32(0, true), uid: dv.getUint32(4, true), gid: dv.getUint32(8, true) };
}
