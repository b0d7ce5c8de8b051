/**
 * Both ends of a connected TCP socket (`getsockname`, `getpeername`), for authorising the peer
 * of a `tcp:` control address (docs/COMPATIBILITY.md#control-protocol).
 * @module
 */
import { AF_INET, AF_INET6 } from "./constants.ts";
import { errno, getLibc, LibcError } from "./libc.ts";
import type { TcpEndpoint } from "../lib/ccompat/proc_net_tcp.ts";

/** Room for a `struct sockaddr_in6` (28 bytes), the largest address used here. */
const SOCKADDR_MAX = 28;
/** Offsets in `struct sockaddr_in` / `sockaddr_in6`. */
const OFF_FAMILY = 0;
const OFF_PORT = 2;
const OFF_ADDR4 = 4;
const OFF_ADDR6 = 8;

/** Both ends of a TCP connection. */
export interface TcpEnds {
  /** Our end. */
  readonly local: TcpEndpoint;
  /** The other end. */
  readonly peer: TcpEndpoint;
}

function name(fd: number, call: "getsockname" | "getpeername"): TcpEndpoint {
  const sa = new Uint8Array(SOCKADDR_MAX);
  const len = new Uint32Array([SOCKADDR_MAX]);
  if (getLibc()[call](fd, sa, new Uint8Array(len.buffer)) !== 0) {
    throw new LibcError(call, errno());
  }
  const dv = new DataView(sa.buffer);
  const family = dv.getUint16(OFF_FAMILY, true);
  const port = dv.getUint16(OFF_PORT, false);
  if (family === AF_INET) return { addr: sa.slice(OFF_ADDR4, OFF_ADDR4 + 4), port };
  if (family === AF_INET6) return { addr: sa.slice(OFF_ADDR6, OFF_ADDR6 + 16), port };
  throw new Error(`${call}: not an IP socket (family ${family})`);
}

/** Our end and the peer's end of the TCP connection `fd`. Throws {@link LibcError}. */
export function tcpEnds(fd: number): TcpEnds {
  return { local: name(fd, "getsockname"), peer: name(fd, "getpeername") };
}
