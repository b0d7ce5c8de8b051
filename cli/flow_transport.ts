/**
 * The client side of the control protocol (docs/COMPATIBILITY.md#control-protocol): connect to the
 * daemon's address, send one request, read the reply until EOF.
 * @module
 */
import { strerror } from "../ffi/libc.ts";
import type { SocketAddress } from "../lib/ccompat/sockaddr.ts";
import { TransportError } from "./flow_commands.ts";

/** Longest reply read (a list of many flows); the rest is discarded. */
const MAX_REPLY = 64 << 20;

/** glibc's text for a Deno connect error ("Connection refused (os error 111)" → strerror(111)). */
function connectError(e: unknown): TransportError {
  const m = /\(os error (\d+)\)/.exec(String(e));
  return new TransportError(m !== null ? strerror(Number(m[1])) : String(e));
}

/** Connect to a daemon's address; throws TransportError with glibc's text on failure. */
export async function connectSocket(address: SocketAddress): Promise<Deno.Conn> {
  try {
    return address.kind === "unix"
      ? await Deno.connect({ transport: "unix", path: `\0${address.name}` })
      : await Deno.connect({ hostname: address.host, port: address.port });
  } catch (e) {
    throw connectError(e);
  }
}

/** Send `request` to `address` and return the whole reply. */
export async function socketTransport(
  address: SocketAddress,
  request: Uint8Array,
): Promise<Uint8Array> {
  const conn = await connectSocket(address);
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    let off = 0;
    while (off < request.length) off += await conn.write(request.subarray(off));
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      if (total + n <= MAX_REPLY) chunks.push(buf.slice(0, n));
      total += n;
    }
  } catch {
    // An I/O error after connecting: return what was read so far.
  } finally {
    conn.close();
  }
  const out = new Uint8Array(Math.min(total, MAX_REPLY));
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}
