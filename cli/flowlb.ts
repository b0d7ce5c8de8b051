/**
 * `nfqlb flowlb`: the packet daemon with flows (docs/COMPATIBILITY.md#nfqueue, #packet-decisions, #flows, #control-protocol). The
 * command validates the options, reads the control address from
 * `NFQLB_FLOW_ADDRESS` and hands over to `runFlowLb` (daemon/run.ts).
 * @module
 */
import type { Command } from "./command.ts";
import { DEFAULT_FLOW_ADDRESS, FLOW_ADDRESS_ENV, FLOWLB_SPEC } from "./specs.ts";
import { daemonConfig } from "../daemon/options.ts";
import { runFlowLb } from "../daemon/run.ts";
import { withBindHint } from "./address_hints.ts";

/** `flowlb`: classify packets by flow, then load-balance with the flow's target table. */
export const flowlbCommand: Command = {
  ...FLOWLB_SPEC,
  async run(inv) {
    const config = daemonConfig(inv.opts);
    const fromEnv = Deno.env.get(FLOW_ADDRESS_ENV);
    const flowAddress = fromEnv ?? DEFAULT_FLOW_ADDRESS;
    try {
      return await runFlowLb(inv.io, config, flowAddress);
    } catch (e) {
      throw withBindHint(e, flowAddress, fromEnv !== undefined);
    }
  },
};
