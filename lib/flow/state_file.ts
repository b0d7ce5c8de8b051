/**
 * The `--flow-state` file of `flowlb` (new in this implementation; 1.2.0
 * loses its flows on restart): the flows and trace flows as the request
 * fields that recreate them, in matching order, as JSON.
 *
 * @example
 * ```ts
 * import { parseFlow } from "./parse.ts";
 * import { flowToFields } from "./state_file.ts";
 * const r = parseFlow({ name: "f", target: "t", dports: "80,81" });
 * if (r.ok) flowToFields(r.flow).dports; // "80-81"
 * ```
 * @module
 */
import type { FlowFields } from "./parse.ts";
import { formatCidr, formatMatch, formatPortRange, protocolNames } from "./format.ts";
import type { Flow } from "./types.ts";

/** Format version written to the file. */
export const FLOW_STATE_VERSION = 1;

/** The file contents. */
export interface FlowState {
  readonly version: number;
  readonly flows: FlowFields[];
  readonly traces: FlowFields[];
}

/** The normalised request fields that define `flow` again (helper flows are recreated by `udpencap`). */
export function flowToFields(flow: Flow): FlowFields {
  const f: Record<string, string> = { name: flow.name, priority: String(flow.priority) };
  if (flow.target !== undefined) f.target = flow.target;
  if (flow.protocols !== undefined) f.protocols = protocolNames(flow.protocols).join(",");
  if (flow.dsts !== undefined) f.dsts = flow.dsts.map(formatCidr).join(",");
  if (flow.srcs !== undefined) f.srcs = flow.srcs.map(formatCidr).join(",");
  if (flow.dports !== undefined) f.dports = flow.dports.map(formatPortRange).join(",");
  if (flow.sports !== undefined) f.sports = flow.sports.map(formatPortRange).join(",");
  if (flow.match !== undefined) f.match = flow.match.map(formatMatch).join(",");
  if (flow.udpencap !== 0) f.udpencap = String(flow.udpencap);
  return f;
}

/** Serialise the flows (without `#` helper flows) and trace flows. */
export function encodeFlowState(flows: readonly Flow[], traces: readonly Flow[]): string {
  const state: FlowState = {
    version: FLOW_STATE_VERSION,
    flows: flows.filter((f) => !f.name.startsWith("#")).map(flowToFields),
    traces: traces.map(flowToFields),
  };
  return JSON.stringify(state, null, 1) + "\n";
}

/** Parse a state file; throws an Error saying what is wrong. */
export function decodeFlowState(text: string): FlowState {
  const v = JSON.parse(text);
  if (v?.version !== FLOW_STATE_VERSION || !Array.isArray(v.flows) || !Array.isArray(v.traces)) {
    throw new Error(`not a version ${FLOW_STATE_VERSION} flow state file`);
  }
  const fields = (list: unknown[]) =>
    list.map((e) => {
      if (typeof e !== "object" || e === null) throw new Error("flow entry is not an object");
      for (const x of Object.values(e)) {
        if (typeof x !== "string") throw new Error("flow fields must be strings");
      }
      return e as FlowFields;
    });
  return { version: v.version, flows: fields(v.flows), traces: fields(v.traces) };
}
