/**
 * A `NETLINK_ROUTE` socket that dumps the policy-routing rules of one family (the messages are
 * `lib/netlink/fib_rule.ts`): the fwmark rules `ip rule show` lists, without an `ip` process.
 * A receive timeout bounds every wait for the kernel.
 *
 * @example
 * ```ts ignore
 * import { dumpFwmarkRules } from "./rtnetlink.ts";
 * dumpFwmarkRules(4); // [{ fwmark: 104, mask: 0xffffffff, table: "104" }]
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
import { LibcError } from "./libc.ts";
import type { FwmarkRule } from "../lib/doctor/rules.ts";
import {
  FIB_RULE_REQUEST_SIZE,
  readFibRuleDump,
  writeFibRuleDumpRequest,
} from "../lib/netlink/fib_rule.ts";

/** Netlink protocol of routing (`linux/netlink.h`). */
const NETLINK_ROUTE = 0;

/**
 * The fwmark rules of `family` in the calling thread's network namespace (`not` rules left out),
 * in the kernel's order. Throws LibcError when the socket fails, the kernel refuses, or does not
 * answer within `timeoutMs`.
 */
export function dumpFwmarkRules(family: 4 | 6, timeoutMs = 500): FwmarkRule[] {
  const fd = openNetlinkSocket(NETLINK_ROUTE);
  try {
    setReceiveTimeout(fd, timeoutMs);
    const req = new Uint8Array(FIB_RULE_REQUEST_SIZE);
    const seq = 1;
    netlinkSend(fd, req, writeFibRuleDumpRequest(req, seq, family));
    const rx = new Uint8Array(65536);
    const out: FwmarkRule[] = [];
    for (;;) {
      const n = netlinkRecv(fd, rx, "recv (rtnetlink)");
      const state = readFibRuleDump(rx, n, seq, out);
      if (state === "done") return out;
      if (state !== "more") throw new LibcError("RTM_GETRULE", state.errno);
    }
  } finally {
    closeFd(fd);
  }
}
