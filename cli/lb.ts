/**
 * `nfqlb lb`: the packet daemon without flows (SPEC 1.8, 5.2, 5.5). The main
 * thread validates options and tables, creates the fragment statistics
 * object, starts one worker thread per queue and stops them on SIGTERM or
 * SIGINT (queues are unbound cleanly).
 * @module
 */
import type { Command } from "./command.ts";
import { prepareDaemon, startQueueThreads, stopOnSignals } from "../daemon/threads.ts";
import { daemonConfig, daemonOptions } from "../daemon/options.ts";
import { openTable } from "../daemon/open_table.ts";

/** `lb`: load-balance packets from NFQUEUE with one target table. */
export const lbCommand: Command = {
  name: "lb",
  help: "lb [options]\n" +
    "  Load-balance packets from NFQUEUE: ACCEPT with the fwmark of the target that the\n" +
    "  Maglev table in --tshm selects for the packet's 5-tuple hash. Stop with SIGTERM/SIGINT.",
  options: daemonOptions("lb"),
  run(inv) {
    const parsed = daemonConfig(inv);
    // Fail early, in the main thread, with 1.2.0's messages; workers map their own copies.
    openTable(parsed.tshm, false).close();
    const c = prepareDaemon(inv, parsed, "lb");
    const stop = new SharedArrayBuffer(4);
    const threads = startQueueThreads(inv, c, stop);
    stopOnSignals(stop, threads.finished);
    return threads.finished;
  },
};
