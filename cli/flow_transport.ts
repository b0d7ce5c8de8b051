/**
 * The client side of the control protocol (docs/COMPATIBILITY.md#control-protocol): connect to the
 * daemon's address, send one request, read the reply until EOF. Before a change on a unix
 * address the server's credentials are checked (`SO_PEERCRED`: root or the client's uid). A unix
 * server whose backlog of pending connections is full (a non-blocking connect fails with EAGAIN)
 * is tried again for up to {@link BUSY_RETRY_MS}, with short pauses, before the connect fails.
 * @module
 */
import { EAGAIN } from "../ffi/constants.ts";
import { LibcError, strerror } from "../ffi/libc.ts";
import { UnixClient } from "../ffi/unix_client.ts";
import type { SocketAddress } from "../lib/ccompat/sockaddr.ts";
import { ReplyError, TransportError, UntrustedServerError } from "./flow_commands.ts";

/** Longest reply read (a list of many flows); the rest is discarded. */
const MAX_REPLY = 64 << 20;

/** glibc's text for the errno of a Deno error ("... (os error 111)" → strerror(111)), if any. */
function osErrorText(e: unknown): string | undefined {
  const m = /\(os error (\d+)\)/.exec(String(e));
  return m !== null ? strerror(Number(m[1])) : undefined;
}

/** A Deno connect error as a TransportError with glibc's text. */
function connectError(e: unknown): TransportError {
  return new TransportError(osErrorText(e) ?? String(e));
}

/** How long a connect to a unix server whose listen backlog is full is tried again (ms). */
export const BUSY_RETRY_MS = 2000;
/** The first pause between two tries (ms); each pause doubles, up to {@link BUSY_PAUSE_MAX_MS}. */
const BUSY_PAUSE_MS = 5;
const BUSY_PAUSE_MAX_MS = 100;

/** The error after {@link BUSY_RETRY_MS} of a full backlog. */
function busyError(): TransportError {
  return new TransportError(
    `${strerror(EAGAIN)} (the server's backlog of pending connections stayed full for ` +
      `${BUSY_RETRY_MS / 1000} s)`,
  );
}

/** Whether `e` is a connect's EAGAIN: a unix server's listen backlog is full. */
function isBusy(e: unknown): boolean {
  return e instanceof Deno.errors.WouldBlock || (e instanceof LibcError && e.errno === EAGAIN);
}

/**
 * `connect()`, tried again while the server's backlog is full, for up to {@link BUSY_RETRY_MS};
 * then {@link TransportError}. Other errors are thrown at once.
 */
async function retryWhileBusy<T>(connect: () => T | Promise<T>): Promise<T> {
  const deadline = Date.now() + BUSY_RETRY_MS;
  let pause = BUSY_PAUSE_MS;
  for (;;) {
    try {
      return await connect();
    } catch (e) {
      if (!isBusy(e)) throw e;
      const left = deadline - Date.now();
      if (left <= 0) throw busyError();
      await new Promise((r) => setTimeout(r, Math.min(pause, left)));
      pause = Math.min(2 * pause, BUSY_PAUSE_MAX_MS);
    }
  }
}

/**
 * Connect to a daemon's address; throws TransportError with glibc's text on failure (a full
 * backlog of a unix server only after {@link BUSY_RETRY_MS}).
 */
export async function connectSocket(address: SocketAddress): Promise<Deno.Conn> {
  try {
    return address.kind === "unix"
      ? await retryWhileBusy(() => Deno.connect({ transport: "unix", path: `\0${address.name}` }))
      : await Deno.connect({ hostname: address.host, port: address.port });
  } catch (e) {
    if (e instanceof TransportError) throw e;
    throw connectError(e);
  }
}

/** A connection to the daemon: Deno's, or ours when the server's credentials are needed. */
interface Stream {
  write(bytes: Uint8Array<ArrayBuffer>): Promise<number>;
  read(buf: Uint8Array<ArrayBuffer>): Promise<number | null>;
  close(): void;
}

/**
 * Connect to `@name` (tried again while its backlog is full) and check that root or this
 * process's uid serves it (`SO_PEERCRED`); throws {@link UntrustedServerError} (closing the
 * connection, nothing sent) otherwise.
 */
export async function connectTrustedUnix(name: string): Promise<UnixClient> {
  let client: UnixClient;
  try {
    client = await retryWhileBusy(() => UnixClient.connect(name));
  } catch (e) {
    if (e instanceof LibcError) throw new TransportError(e.message);
    throw e;
  }
  const peer = client.peer();
  const own = Deno.uid() ?? -1;
  if (peer === undefined || (peer.uid !== 0 && peer.uid !== own)) {
    client.close();
    throw new UntrustedServerError(peer?.uid ?? -1, peer?.pid ?? -1, own);
  }
  return client;
}

/** The text of a read error: glibc's for an errno (Deno's "... (os error N)" or a LibcError). */
function readErrorText(e: unknown): string {
  if (e instanceof LibcError) return e.message;
  return osErrorText(e) ?? String(e instanceof Error ? e.message : e);
}

/**
 * Send `request` to `address` and return the whole reply. With `change` on a unix address,
 * the server must be root or this process's uid (docs/COMPATIBILITY.md#control-protocol).
 * A write that fails (the server closed early: it refused the request) ends the request, and
 * the reply is read. A read that fails (e.g. the server reset the connection) throws
 * {@link ReplyError}, unless a whole text reply (up to its NUL) was read: what came before the
 * failure is never returned as if it were the reply.
 */
export async function socketTransport(
  address: SocketAddress,
  request: Uint8Array,
  change = false,
): Promise<Uint8Array> {
  const conn: Stream = change && address.kind === "unix"
    ? await connectTrustedUnix(address.name)
    : await connectSocket(address);
  const chunks: Uint8Array[] = [];
  let total = 0;
  let nul = false;
  try {
    try {
      const req = new Uint8Array(request);
      let off = 0;
      while (off < req.length) off += await conn.write(req.subarray(off));
    } catch {
      // The server closed before it took the whole request: its reply, if any, is read below.
    }
    const buf = new Uint8Array(65536);
    for (;;) {
      let n: number | null;
      try {
        n = await conn.read(buf);
      } catch (e) {
        if (nul) break; // a whole text reply came first
        throw new ReplyError(
          `Reply failed. ${readErrorText(e)} (after ${total} bytes; nothing printed)`,
        );
      }
      if (n === null) break;
      if (!nul && buf.subarray(0, n).includes(0)) nul = true;
      if (total + n <= MAX_REPLY) chunks.push(buf.slice(0, n));
      total += n;
    }
  } finally {
    conn.close();
  }
  // Only the chunks kept (a chunk crossing MAX_REPLY is dropped whole): no zero padding, which
  // would read as a NUL-terminated text reply.
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}
