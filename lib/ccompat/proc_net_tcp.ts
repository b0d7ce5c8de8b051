/**
 * The owner of a TCP socket from `/proc/net/tcp` or `/proc/net/tcp6`, used to find the uid of
 * a loopback peer of a `tcp:` control address (docs/COMPATIBILITY.md#control-protocol). The
 * kernel prints each address as 32-bit words in host byte order (`%08X`, little-endian on x86)
 * and ports big-endian (`%04X`); the uid is the eighth column. Pure: works on the file's text.
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
const COL_UID = 7;

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
 * The uid owning the socket whose local end is `socket` and whose remote end is `remote`, or
 * undefined when no line of `text` (a `/proc/net/tcp` or `/proc/net/tcp6` dump) matches.
 * Both endpoints must have the address length of the file (4 for tcp, 16 for tcp6).
 */
export function procNetTcpUid(
  text: string,
  socket: TcpEndpoint,
  remote: TcpEndpoint,
): number | undefined {
  const local = procNetTcpHex(socket);
  const rem = procNetTcpHex(remote);
  for (const line of text.split("\n")) {
    const cols = line.trim().split(/\s+/);
    if (cols.length <= COL_UID) continue;
    if (cols[COL_LOCAL].toUpperCase() !== local || cols[COL_REMOTE].toUpperCase() !== rem) {
      continue;
    }
    const uid = cols[COL_UID];
    if (!/^[0-9]{1,10}$/.test(uid)) return undefined;
    return Number(uid);
  }
  return undefined;
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
