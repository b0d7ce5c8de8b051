/**
 * The Linux (x86-64, glibc) numbers the FFI modules share: errno values,
 * address families and socket types. Each is defined here only; socket
 * option levels and names live in `./socket.ts`, open/mmap flags in
 * `./libc.ts` (their only users).
 * @module
 */

/** errno: operation not permitted. */
export const EPERM = 1;
/** errno: no such file or directory. */
export const ENOENT = 2;
/** errno: interrupted system call. */
export const EINTR = 4;
/** errno: bad file descriptor. */
export const EBADF = 9;
/** errno: try again (also the SO_RCVTIMEO timeout). */
export const EAGAIN = 11;
/** errno: out of memory. */
export const ENOMEM = 12;
/** errno: permission denied. */
export const EACCES = 13;
/** errno: device or resource busy. */
export const EBUSY = 16;
/** errno: the file exists (`O_CREAT | O_EXCL`). */
export const EEXIST = 17;
/** errno: invalid argument. */
export const EINVAL = 22;
/** errno: no buffer space available. */
export const ENOBUFS = 105;

/** Address family: unspecified (nfgenmsg family of queue-wide requests). */
export const AF_UNSPEC = 0;
/** Address family: local (unix) sockets. */
export const AF_UNIX = 1;
/** Address family: IPv4. */
export const AF_INET = 2;
/** Address family: IPv6. */
export const AF_INET6 = 10;
/** Address family: netlink. */
export const AF_NETLINK = 16;

/** Socket type: byte stream. */
export const SOCK_STREAM = 1;
/** Socket type: datagrams. */
export const SOCK_DGRAM = 2;
/** Socket type: raw datagrams (netlink). */
export const SOCK_RAW = 3;
/** Socket type flag: close on exec. */
export const SOCK_CLOEXEC = 0o2000000;

/** Netlink protocol of the netfilter subsystems (`linux/netlink.h`). */
export const NETLINK_NETFILTER = 12;
