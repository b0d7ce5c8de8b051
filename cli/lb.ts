/**
 * `nfqlb lb`: the packet daemon without flows (docs/COMPATIBILITY.md#nfqueue, #packet-decisions). The
 * command validates the options and hands over to `runLb` (daemon/run.ts),
 * which starts one worker thread per queue and stops them on SIGTERM or
 * SIGINT (queues are unbound cleanly).
 * @module
 */
import type { Command } from "./command.ts";
import { LB_SPEC } from "./specs.ts";
import { daemonConfig } from "../daemon/options.ts";
import { runLb } from "../daemon/run.ts";

/** `lb`: load-balance packets from NFQUEUE with one target table. */
export const lbCommand: Command = {
  ...LB_SPEC,
  run: (inv) => runLb(inv.io, daemonConfig(inv.opts)),
};
