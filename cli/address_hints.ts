/**
 * The cause and the fix after the control socket's 1.2.0 errors, where the command layer knows
 * the address and whether `NFQLB_FLOW_ADDRESS` gave it: `Connect failed. <strerror>` (flow
 * clients) and `Flow server bind: Address already in use` (flowlb, with the holder's pid).
 * @module
 */
import { currentNetns, unixListenerHolders } from "../daemon/socket_holder.ts";
import { ListenError } from "../daemon/errors.ts";
import {
  type AddressContext,
  bindInUseHint,
  connectHint,
  traceConnectHint,
} from "../lib/hints/sockets.ts";

/** The context of control address `text`. */
function context(text: string, fromEnv: boolean): AddressContext {
  return { text, fromEnv, netns: currentNetns() };
}

/** The line after `Connect failed. <strerror>` for address `text`. */
export function connectFailedHint(text: string, fromEnv: boolean, strerror: string): string {
  const refused = /refused|No such file/.test(strerror);
  return connectHint(context(text, fromEnv), refused);
}

/** The line after `Trace client connect to <addr>: <strerror>` for trace address `text`. */
export function traceConnectFailedHint(text: string, strerror: string): string {
  return traceConnectHint(text, currentNetns(), /refused|No such file/.test(strerror));
}

/**
 * `e` with its hint when it is the flow server's bind failing because the address is in use
 * (who holds it: `/proc/net/unix` and `/proc/<pid>/fd` for a unix address); `e` as it is
 * otherwise.
 */
export function withBindHint(e: unknown, text: string, fromEnv: boolean): unknown {
  if (!(e instanceof ListenError) || e.server !== "Flow" || e.call !== "bind") return e;
  if (!/in use/.test(e.strerror)) return e;
  const holders = text.startsWith("unix:") ? unixListenerHolders(text.slice(5)) : [];
  e.hint = bindInUseHint(context(text, fromEnv), holders);
  return e;
}
