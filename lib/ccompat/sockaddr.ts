/**
 * The control/trace socket address syntax of nfqlb (docs/COMPATIBILITY.md#control-protocol):
 * `unix:NAME` (Linux abstract namespace) or `tcp:ADDR:PORT` /
 * `tcp:[IPV6]:PORT` with a numeric host.
 *
 * @example
 * ```ts
 * import { parseSocketAddress } from "./sockaddr.ts";
 * parseSocketAddress("unix:nfqlb"); // { kind: "unix", name: "nfqlb" }
 * parseSocketAddress("tcp:[::1]:7000"); // { kind: "tcp", host: "::1", port: 7000, v6: true }
 * ```
 * @module
 */
import { cAtoi } from "./cnum.ts";
import { parseIPv4, parseIPv6 } from "./inet.ts";

/** A parsed address. */
export type SocketAddress =
  | { readonly kind: "unix"; readonly name: string }
  | { readonly kind: "tcp"; readonly host: string; readonly port: number; readonly v6: boolean };

/** Parse an address; `undefined` when it is not valid. */
export function parseSocketAddress(s: string): SocketAddress | undefined {
  if (s.startsWith("unix:")) {
    const name = s.slice(5);
    // sun_path holds 108 bytes: one NUL then the name.
    if (name.length === 0 || new TextEncoder().encode(name).length > 107) return undefined;
    return { kind: "unix", name };
  }
  if (!s.startsWith("tcp:")) return undefined;
  const rest = s.slice(4);
  let host: string;
  let portText: string;
  let v6: boolean;
  if (rest.startsWith("[")) {
    const m = /^\[([^\]]+)\]:([0-9]+)$/.exec(rest);
    if (m === null || parseIPv6(m[1]) === undefined) return undefined;
    [, host, portText] = m;
    v6 = true;
  } else {
    const colon = rest.lastIndexOf(":");
    if (colon < 0) return undefined;
    host = rest.slice(0, colon);
    portText = rest.slice(colon + 1);
    if (parseIPv4(host) === undefined || !/^[0-9]+$/.test(portText)) return undefined;
    v6 = false;
  }
  const port = cAtoi(portText);
  if (port < 0 || port > 65535) return undefined;
  return { kind: "tcp", host, port, v6 };
}
