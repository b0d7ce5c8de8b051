/**
 * Deno.dlopen bindings to the glibc socket calls the NFQUEUE data plane
 * needs: `setsockopt`, `getsockopt`, `recvmmsg` and `sendmsg`, plus helpers
 * for the x86-64 `struct msghdr` / `struct mmsghdr` layouts.
 *
 * All calls are blocking (each queue runs in its own Worker). The symbols on
 * the hot path (`recvmmsg`, `sendmsg`) take only typed-array `buffer`, integer
 * and `pointer` parameters and return `i32`, so Deno can use its fast call
 * path for them. errno is read with `errno()` from `./libc.ts`.
 *
 * The library is opened lazily on first use.
 * @module
 */

import { errno, LibcError } from "./libc.ts";

/** Socket option level `SOL_SOCKET`. */
export const SOL_SOCKET = 1;
/** `SO_SNDBUF` (int). */
export const SO_SNDBUF = 7;
/** `SO_RCVBUF` (int; the kernel doubles what is set, capped at rmem_max). */
export const SO_RCVBUF = 8;
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
/** recvmmsg flag: block for the first message only. */
export const MSG_WAITFORONE = 0x10000;

/** errno: operation not permitted. */
export const EPERM = 1;
/** errno: interrupted system call. */
export const EINTR = 4;
/** errno: try again (also the SO_RCVTIMEO timeout). */
export const EAGAIN = 11;
/** errno: device or resource busy. */
export const EBUSY = 16;
/** errno: no buffer space available. */
export const ENOBUFS = 105;

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

/** The libc socket symbols bound by {@link getSocketLib}. */
export const SOCKET_SYMBOLS = {
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  // int recvmmsg(int fd, struct mmsghdr *vec, unsigned vlen, int flags, struct timespec *timeout)
  recvmmsg: { parameters: ["i32", "buffer", "u32", "i32", "pointer"], result: "i32" },
  // ssize_t sendmsg(int fd, const struct msghdr *msg, int flags): used instead of send()
  // because its length lives in the iovec (written with a DataView), so no BigInt is
  // needed per call. The result fits in 32 bits (length of one datagram, or -1).
  sendmsg: { parameters: ["i32", "buffer", "i32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The bound socket symbols. */
export type SocketLib = Deno.DynamicLibrary<typeof SOCKET_SYMBOLS>["symbols"];

let lib: SocketLib | undefined;

/** The glibc socket symbols, opened on first use. */
export function getSocketLib(): SocketLib {
  if (lib === undefined) lib = Deno.dlopen("libc.so.6", SOCKET_SYMBOLS).symbols;
  return lib;
}

// Explicit ArrayBuffers: their backing stores live outside the V8 heap and never move.
const intBuf = new Int32Array(new ArrayBuffer(4));
const intBytes = new Uint8Array(intBuf.buffer);
const lenBuf = new Uint32Array(new ArrayBuffer(4));
const lenBytes = new Uint8Array(lenBuf.buffer);

/** `setsockopt(fd, level, name, &(int)value)`; throws LibcError on failure. */
export function setIntOption(fd: number, level: number, name: number, value: number): void {
  intBuf[0] = value | 0;
  if (getSocketLib().setsockopt(fd, level, name, intBytes, 4) !== 0) {
    throw new LibcError("setsockopt", errno());
  }
}

/** `getsockopt(fd, level, name)` of an int option; throws LibcError on failure. */
export function getIntOption(fd: number, level: number, name: number): number {
  intBuf[0] = 0;
  lenBuf[0] = 4;
  if (getSocketLib().getsockopt(fd, level, name, intBytes, lenBytes) !== 0) {
    throw new LibcError("getsockopt", errno());
  }
  return intBuf[0];
}

/** Set `SO_RCVTIMEO` to `ms` milliseconds (0 = block forever). */
export function setReceiveTimeout(fd: number, ms: number): void {
  const tv = new BigInt64Array([BigInt(Math.floor(ms / 1000)), BigInt((ms % 1000) * 1000)]);
  const bytes = new Uint8Array(tv.buffer);
  if (getSocketLib().setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, bytes, bytes.length) !== 0) {
    throw new LibcError("setsockopt", errno());
  }
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
