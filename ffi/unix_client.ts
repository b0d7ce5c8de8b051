/**
 * A client connection to an abstract unix stream socket whose peer credentials can be read
 * (`SO_PEERCRED`), which `Deno.connect` does not expose: the flow client checks who serves
 * `@nfqlb` before it sends a change (docs/COMPATIBILITY.md#control-protocol). The socket is
 * non-blocking; waiting is a `poll` run off the main thread, so the event loop keeps running.
 * @module
 */
import { AF_UNIX, EAGAIN, EINTR, SOCK_CLOEXEC, SOCK_STREAM } from "./constants.ts";
import { errno, getLibc, LibcError } from "./libc.ts";
import { POLLIN, POLLOUT } from "./poll.ts";
import { MSG_DONTWAIT, MSG_NOSIGNAL, type PeerCredentials, peerCredentials } from "./socket.ts";

/** Socket type flag: non-blocking. */
const SOCK_NONBLOCK = 0o4000;
/** `struct pollfd`: int fd, short events, short revents. */
const POLLFD_SIZE = 8;
const POLLFD_OFF_EVENTS = 4;
/** `sa_family` + `sun_path` bytes of `struct sockaddr_un`. */
const SUN_PATH_OFF = 2;
const SUN_PATH_MAX = 108;
/** How long one `poll` waits before it is repeated. */
const POLL_SLICE_MS = 1000;

/** The peer process of a unix connection. */
export type UnixPeer = PeerCredentials;

/** A connected abstract unix stream socket. */
export class UnixClient {
  declare readonly fd: number;
  #closed = false;
  #pollfd = new Uint8Array(POLLFD_SIZE);

  private constructor(fd: number) {
    this.fd = fd;
  }

  /** Connect to `@name`; throws {@link LibcError} (`socket` or `connect`) on failure. */
  static connect(name: string): UnixClient {
    const l = getLibc();
    const path = new TextEncoder().encode(name);
    if (path.length + 1 > SUN_PATH_MAX) throw new LibcError("connect", 36 /* ENAMETOOLONG */);
    const sa = new Uint8Array(SUN_PATH_OFF + 1 + path.length);
    new DataView(sa.buffer).setUint16(0, AF_UNIX, true);
    sa.set(path, SUN_PATH_OFF + 1); // leading NUL: the abstract namespace
    const fd = l.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) throw new LibcError("socket", errno());
    for (;;) {
      if (l.connect(fd, sa, sa.length) === 0) return new UnixClient(fd);
      const e = errno();
      if (e === EINTR) continue;
      l.close(fd);
      throw new LibcError("connect", e);
    }
  }

  /** The server process's credentials, or undefined when the kernel does not say. */
  peer(): UnixPeer | undefined {
    return peerCredentials(this.fd);
  }

  async #wait(events: number): Promise<void> {
    const dv = new DataView(this.#pollfd.buffer);
    dv.setInt32(0, this.fd, true);
    dv.setInt16(POLLFD_OFF_EVENTS, events, true);
    dv.setInt16(POLLFD_OFF_EVENTS + 2, 0, true);
    await getLibc().poll_async(this.#pollfd, 1n, POLL_SLICE_MS);
  }

  /** Send all of `bytes` (returns their count); throws {@link LibcError} when the connection fails. */
  async write(bytes: Uint8Array<ArrayBuffer>): Promise<number> {
    let off = 0;
    while (off < bytes.length) {
      const part = off === 0 ? bytes : bytes.slice(off);
      const n = Number(
        getLibc().send(this.fd, part, BigInt(part.length), MSG_NOSIGNAL | MSG_DONTWAIT),
      );
      if (n >= 0) {
        off += n;
        continue;
      }
      const e = errno();
      if (e === EAGAIN) await this.#wait(POLLOUT);
      else if (e !== EINTR) throw new LibcError("send", e);
    }
    return bytes.length;
  }

  /** Read into `buf`: the byte count, or null at EOF; throws {@link LibcError} on an error. */
  async read(buf: Uint8Array<ArrayBuffer>): Promise<number | null> {
    for (;;) {
      const n = Number(getLibc().recv(this.fd, buf, BigInt(buf.length), MSG_DONTWAIT));
      if (n > 0) return n;
      if (n === 0) return null;
      const e = errno();
      if (e === EAGAIN) await this.#wait(POLLIN);
      else if (e !== EINTR) throw new LibcError("recv", e);
    }
  }

  /** Close the connection. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    getLibc().close(this.fd);
  }
}
