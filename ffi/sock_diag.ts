/**
 * A `NETLINK_SOCK_DIAG` socket that looks up one TCP socket by its four-tuple (the messages are
 * `lib/ccompat/inet_diag.ts`): who owns the other end of a loopback connection, in one request
 * and one reply, with a receive timeout so a lost answer cannot hang the caller.
 *
 * @example
 * ```ts ignore
 * import { SockDiag } from "./sock_diag.ts";
 * const d = SockDiag.open();
 * d.lookup(clientEnd, serverEnd); // { state: 1, uid: 1000, inode: 4242, ... } or { errno: 2 }
 * d.close();
 * ```
 * @module
 */
import {
  closeFd,
  netlinkRecv,
  netlinkSend,
  openNetlinkSocket,
  setReceiveTimeout,
} from "./socket.ts";
import type { TcpEndpoint } from "../lib/ccompat/proc_net_tcp.ts";
import {
  INET_DIAG_REQUEST_SIZE,
  type InetDiagAnswer,
  readInetDiagReply,
  writeInetDiagRequest,
} from "../lib/ccompat/inet_diag.ts";

/** Netlink protocol of socket diagnostics (`linux/sock_diag.h`). */
const NETLINK_SOCK_DIAG = 4;

/** A sock_diag socket of the calling thread's network namespace. */
export class SockDiag {
  readonly #fd: number;
  readonly #req = new Uint8Array(INET_DIAG_REQUEST_SIZE);
  readonly #rx = new Uint8Array(8192);
  #seq = 0;
  #closed = false;

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /** Open the socket with a receive timeout of `timeoutMs`. Throws LibcError. */
  static open(timeoutMs = 500): SockDiag {
    const fd = openNetlinkSocket(NETLINK_SOCK_DIAG);
    try {
      setReceiveTimeout(fd, timeoutMs);
    } catch (e) {
      closeFd(fd);
      throw e;
    }
    return new SockDiag(fd);
  }

  /**
   * The TCP socket whose local end is `socket` and remote end `remote`, or the errno of the
   * kernel's refusal (ENOENT: no such socket). Throws LibcError when the socket fails or the
   * kernel does not answer within the timeout.
   */
  lookup(socket: TcpEndpoint, remote: TcpEndpoint): InetDiagAnswer {
    const seq = this.#seq = (this.#seq + 1) >>> 0;
    const len = writeInetDiagRequest(this.#req, seq, socket, remote);
    if (len === 0) return { errno: 22 }; // EINVAL: the ends are of different families
    netlinkSend(this.#fd, this.#req, len);
    for (;;) {
      const r = netlinkRecv(this.#fd, this.#rx, "recv (sock_diag)");
      const answer = readInetDiagReply(this.#rx, r, seq);
      if (answer !== undefined) return answer;
      // An answer to an earlier request that timed out: read on.
    }
  }

  /** Close the socket (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeFd(this.#fd);
  }
}
