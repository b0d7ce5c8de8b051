/**
 * The cause and the fix after 1.2.0's `Connect failed. <strerror>` (flow clients) and
 * `Flow server bind: <strerror>` (flowlb): which address in which network namespace, and what
 * to do. Pure text; the caller finds the namespace and the holder (docs/COMPATIBILITY.md#command-line).
 *
 * @example
 * ```ts
 * import { connectHint } from "./sockets.ts";
 * connectHint({ text: "unix:nfqlb", fromEnv: false, netns: "net:[4026531840]" });
 * // "  no flowlb answers on abstract unix socket @nfqlb in network namespace net:[4026531840]; ..."
 * ```
 * @module
 */

/** The control address a command used or a daemon tried. */
export interface AddressContext {
  /** The address as written (`unix:nfqlb`, `tcp:127.0.0.1:7000`). */
  readonly text: string;
  /** It came from `NFQLB_FLOW_ADDRESS` (else it is the default). */
  readonly fromEnv: boolean;
  /** This network namespace: its `ip netns` name(s) and id, e.g. `lb (net:[4026532281])`. */
  readonly netns: string;
}

/** A process that holds a listening socket. */
export interface SocketHolder {
  readonly pid: number;
  /** `/proc/<pid>/comm`, `?` when unreadable. */
  readonly comm: string;
}

/** `unix:nfqlb` → `abstract unix socket @nfqlb`; `tcp:...` as it is. */
function describe(a: AddressContext): string {
  const from = a.fromEnv ? " (NFQLB_FLOW_ADDRESS)" : "";
  return a.text.startsWith("unix:")
    ? `${a.text}${from}, the abstract unix socket @${
      a.text.slice(5)
    } of network namespace ${a.netns}`
    : `${a.text}${from} in network namespace ${a.netns}`;
}

/**
 * The line after `Connect failed. <strerror>` (two spaces first); `refused`: nothing listens
 * there (ECONNREFUSED, ENOENT), else only the address is said.
 */
export function connectHint(a: AddressContext, refused = true): string {
  if (!refused) return `  the address: ${describe(a)}`;
  return `  no flowlb answers on ${describe(a)}; start nfqlb flowlb in this network ` +
    `namespace, run the command in the daemon's (ip netns exec NS nfqlb ...), or set ` +
    `NFQLB_FLOW_ADDRESS to the daemon's address`;
}

/**
 * The line after `Flow server bind: Address already in use` (two spaces first): who holds the
 * address, or how to find out.
 */
export function bindInUseHint(a: AddressContext, holders: readonly SocketHolder[]): string {
  const who = holders.length > 0
    ? `held by ${holders.map((h) => `pid ${h.pid} (${h.comm})`).join(", ")}`
    : a.text.startsWith("unix:")
    ? `held by another process (find it with: ss -xlp | grep '@${a.text.slice(5)} ')`
    : `held by another process (find it with: ss -ltnp)`;
  return `  ${describe(a)} is ${who}: another flowlb already runs in this network namespace; ` +
    `stop it, or give this one another address with NFQLB_FLOW_ADDRESS (and its clients the same)`;
}

/**
 * The line after `Refusing to talk to the control server: owned by uid <uid> ...`: the flow
 * commands talk only to a daemon of their own uid (or root), so if that server is the flowlb
 * meant (a non-root daemon), run the command as its uid; else something else holds the address.
 * `user` is that uid's name when `/etc/passwd` has it.
 *
 * @example
 * ```ts
 * import { untrustedServerHint } from "./sockets.ts";
 * untrustedServerHint(65534, "nobody");
 * // "  if it is the flowlb you meant (it runs as uid 65534 (nobody)), run the command as that
 * //  user: sudo -u nobody nfqlb ..., or setpriv --reuid=65534 nfqlb ...; if not, another program
 * //  holds the address"
 * ```
 */
export function untrustedServerHint(uid: number, user?: string): string {
  const sudo = user === undefined ? `sudo -u '#${uid}'` : `sudo -u ${user}`;
  const who = user === undefined ? `uid ${uid}` : `uid ${uid} (${user})`;
  return `  if it is the flowlb you meant (it runs as ${who}), run the command as that user: ` +
    `${sudo} nfqlb ..., or setpriv --reuid=${uid} nfqlb ...; if not, another program holds ` +
    "the address";
}

/**
 * The line after `Trace client connect to <addr>: <strerror>` (two spaces first); `refused`:
 * nothing listens there, else only the address is said. `netns` as in {@link AddressContext}.
 */
export function traceConnectHint(text: string, netns: string, refused: boolean): string {
  const where = text.startsWith("unix:")
    ? `${text}, the abstract unix socket @${text.slice(5)} of network namespace ${netns}`
    : `${text} in network namespace ${netns}`;
  if (!refused) return `  the address: ${where}`;
  return `  no lb or flowlb serves traces on ${where}; start one in this network namespace, run ` +
    `the command in the daemon's (ip netns exec NS nfqlb trace ...), or give the daemon's ` +
    `address with --trace_address=ADDR`;
}
