/**
 * A blocking stream-socket server over libc, for the control and trace
 * servers of the daemons (docs/COMPATIBILITY.md#control-protocol, #trace-and-log). Unlike `Deno.listen` it exposes
 * the peer's credentials (`SO_PEERCRED`), needed to authorise requests on the
 * abstract socket (docs/COMPATIBILITY.md#differences D7). Every blocking call has a timeout, so a
 * worker thread running it can notice a stop request; sends never wait (a slow reader cannot
 * stall the thread: what its socket does not take is kept by the caller, e.g. in a
 * {@link SendBuffer}) and use `MSG_NOSIGNAL`, so a client that goes away cannot kill the daemon
 * with SIGPIPE (docs/COMPATIBILITY.md#differences D8).
 *
 * @example
 * ```ts
 * import { StreamServer } from "./stream_server.ts";
 * const srv = StreamServer.listen({ kind: "unix", name: "nfqlb-example" }, 128);
 * const conn = srv.accept(200); // null after 200 ms without a client
 * conn?.close();
 * srv.close();
 * ```
 * @module
 */
import {
  AF_INET,
  AF_INET6,
  AF_UNIX,
  EAGAIN,
  EINTR,
  SOCK_CLOEXEC,
  SOCK_STREAM,
} from "./constants.ts";
import { errno, getLibc, LibcError } from "./libc.ts";
import {
  MSG_DONTWAIT,
  MSG_NOSIGNAL,
  type PeerCredentials,
  peerCredentials,
  setIntOption,
  setLingerReset,
  setReceiveTimeout,
  SO_REUSEADDR,
  SOL_SOCKET,
} from "./socket.ts";
import { parseIPv4, parseIPv6 } from "../lib/ccompat/inet.ts";
import type { SocketAddress } from "../lib/ccompat/sockaddr.ts";

/** The `struct sockaddr` bytes for an address (abstract unix: NUL + name, no trailing NUL). */
export function sockaddrBytes(addr: SocketAddress): Uint8Array<ArrayBuffer> {
  if (addr.kind === "unix") {
    const name = new TextEncoder().encode(addr.name);
    const b = new Uint8Array(3 + name.length);
    new DataView(b.buffer).setUint16(0, AF_UNIX, true);
    b.set(name, 3);
    return b;
  }
  if (addr.v6) {
    const b = new Uint8Array(28);
    const dv = new DataView(b.buffer);
    dv.setUint16(0, AF_INET6, true);
    dv.setUint16(2, addr.port, false);
    b.set(parseIPv6(addr.host)!, 8);
    return b;
  }
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, AF_INET, true);
  dv.setUint16(2, addr.port, false);
  b.set(parseIPv4(addr.host)!, 4);
  return b;
}

export type { PeerCredentials };

/** One accepted connection. */
export class Connection {
  declare readonly fd: number;
  /** The peer's credentials (unix sockets only). */
  declare readonly peer: PeerCredentials | undefined;
  #closed = false;

  constructor(fd: number, unix: boolean) {
    this.fd = fd;
    this.peer = unix ? peerCredentials(fd) : undefined;
  }

  /**
   * Receive into `buf` waiting at most `timeoutMs`: the byte count, 0 at EOF,
   * −1 on timeout, −2 on another error (e.g. a reset connection).
   */
  recv(buf: Uint8Array<ArrayBuffer>, timeoutMs: number): number {
    setReceiveTimeout(this.fd, timeoutMs);
    for (;;) {
      const n = Number(getLibc().recv(this.fd, buf, BigInt(buf.length), 0));
      if (n >= 0) return n;
      const e = errno();
      if (e === EAGAIN) return -1;
      if (e !== EINTR) return -2;
    }
  }

  /**
   * Receive what is there without waiting (for a poll loop): the byte count, 0 at EOF,
   * −1 if nothing is there yet, −2 on another error.
   */
  recvNow(buf: Uint8Array<ArrayBuffer>): number {
    for (;;) {
      const n = Number(getLibc().recv(this.fd, buf, BigInt(buf.length), MSG_DONTWAIT));
      if (n >= 0) return n;
      const e = errno();
      if (e === EAGAIN) return -1;
      if (e !== EINTR) return -2;
    }
  }

  /**
   * Send what the socket takes of `bytes` from `offset` on without waiting (for a poll loop):
   * the byte count (≥ 0), −1 when the socket buffer is full, −2 when the peer went away or
   * another error (never raises SIGPIPE).
   */
  sendNow(bytes: Uint8Array<ArrayBuffer>, offset = 0): number {
    const part = offset === 0 ? bytes : bytes.subarray(offset);
    for (;;) {
      const n = Number(
        getLibc().send(this.fd, part, BigInt(part.length), MSG_NOSIGNAL | MSG_DONTWAIT),
      );
      if (n >= 0) return n;
      const e = errno();
      if (e === EAGAIN) return -1;
      if (e !== EINTR) return -2;
    }
  }

  /**
   * Send what the socket takes of `bytes` from `offset` on without waiting, in as many calls as
   * it takes them: the new offset (`bytes.length` when all is sent), and whether the peer went
   * away (the offset then says what was sent before).
   */
  sendRest(bytes: Uint8Array<ArrayBuffer>, offset: number): { offset: number; gone: boolean } {
    while (offset < bytes.length) {
      const n = this.sendNow(bytes, offset);
      if (n === -1) break;
      if (n < 0) return { offset, gone: true };
      offset += n;
    }
    return { offset, gone: false };
  }

  /** Close the connection. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    getLibc().close(this.fd);
  }

  /**
   * Close the connection with a reset (`SO_LINGER` 0), for a reply that is given up part-way:
   * a TCP peer then reads an error (ECONNRESET), not an orderly end after a prefix. On a unix
   * socket it is a plain close (the peer sees the end of the stream). Idempotent.
   */
  reset(): void {
    if (this.#closed) return;
    try {
      setLingerReset(this.fd);
    } catch {
      // closing anyway
    }
    this.close();
  }
}

/**
 * Bytes for one connection that its socket has not taken yet, sent without waiting (for a
 * thread that must not block on a slow reader): {@link SendBuffer.push} queues a copy, up to
 * `max` unsent bytes, {@link SendBuffer.flush} sends what the socket takes, in one call per
 * contiguous run.
 */
export class SendBuffer {
  #buf: Uint8Array<ArrayBuffer>;
  #start = 0;
  #end = 0;

  /** A buffer that holds at most `max` unsent bytes. */
  constructor(readonly max: number) {
    this.#buf = new Uint8Array(Math.min(max, 65536));
  }

  /** Unsent bytes. */
  get pending(): number {
    return this.#end - this.#start;
  }

  /** Queue a copy of `bytes`; false (nothing queued) when more than `max` would be unsent. */
  push(bytes: Uint8Array): boolean {
    const n = bytes.length;
    const pending = this.pending;
    if (pending + n > this.max) return false;
    if (this.#end + n > this.#buf.length) {
      if (pending + n > this.#buf.length) {
        const grown = new Uint8Array(
          Math.min(this.max, Math.max(pending + n, 2 * this.#buf.length)),
        );
        grown.set(this.#buf.subarray(this.#start, this.#end));
        this.#buf = grown;
      } else {
        this.#buf.copyWithin(0, this.#start, this.#end);
      }
      this.#start = 0;
      this.#end = pending;
    }
    this.#buf.set(bytes, this.#end);
    this.#end += n;
    return true;
  }

  /** Send what `conn` takes without waiting; false when the peer went away. */
  flush(conn: Connection): boolean {
    const { offset, gone } = conn.sendRest(this.#buf.subarray(0, this.#end), this.#start);
    this.#start = offset;
    if (gone) return false;
    if (offset === this.#end) this.#start = this.#end = 0;
    return true;
  }

  /** Forget the unsent bytes. */
  clear(): void {
    this.#start = this.#end = 0;
  }
}

/** A listening stream socket. */
export class StreamServer {
  declare readonly fd: number;
  declare readonly unix: boolean;
  #closed = false;
  /** The receive timeout is set for {@link StreamServer.acceptNow}. */
  #nowMode = false;

  private constructor(fd: number, unix: boolean) {
    this.fd = fd;
    this.unix = unix;
  }

  /**
   * Bind and listen on `addr`. Throws {@link LibcError} whose `call` is
   * `socket`, `bind` or `listen` (e.g. EADDRINUSE from bind).
   */
  static listen(addr: SocketAddress, backlog: number): StreamServer {
    const l = getLibc();
    const family = addr.kind === "unix" ? AF_UNIX : addr.v6 ? AF_INET6 : AF_INET;
    const fd = l.socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw new LibcError("socket", errno());
    try {
      if (addr.kind === "tcp") setIntOption(fd, SOL_SOCKET, SO_REUSEADDR, 1);
      const sa = sockaddrBytes(addr);
      if (l.bind(fd, sa, sa.length) !== 0) throw new LibcError("bind", errno());
      if (l.listen(fd, backlog) !== 0) throw new LibcError("listen", errno());
    } catch (e) {
      getLibc().close(fd);
      throw e;
    }
    return new StreamServer(fd, addr.kind === "unix");
  }

  /** Wait at most `timeoutMs` for a client: the connection, or null on timeout. */
  accept(timeoutMs: number): Connection | null {
    this.#nowMode = false;
    setReceiveTimeout(this.fd, timeoutMs);
    return this.#accept();
  }

  /**
   * Accept a pending client without waiting (for a poll loop): the connection, or null when
   * none is pending. Throws {@link LibcError} (`accept`) on other errors, e.g. EMFILE.
   */
  acceptNow(): Connection | null {
    if (!this.#nowMode) {
      // accept(2) honours SO_RCVTIMEO: a client that vanished between poll and accept costs 1 ms.
      setReceiveTimeout(this.fd, 1);
      this.#nowMode = true;
    }
    return this.#accept();
  }

  /** One accept4, retried on EINTR; null when none is pending (EAGAIN, or the timeout). */
  #accept(): Connection | null {
    for (;;) {
      const fd = getLibc().accept4(this.fd, null, null, SOCK_CLOEXEC);
      if (fd >= 0) return new Connection(fd, this.unix);
      const e = errno();
      if (e === EINTR) continue;
      if (e === EAGAIN) return null;
      throw new LibcError("accept", e);
    }
  }

  /** Stop listening. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    getLibc().close(this.fd);
  }
}
