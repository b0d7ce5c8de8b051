/** --flow-state: flows survive encode → decode → set with identical listings. */
import assert from "node:assert/strict";
import { F2_FIELDS } from "../../../testkit/spec_examples.ts";
import { FlowStore } from "../../../lib/flow/store.ts";
import { formatFlowList } from "../../../lib/flow/format.ts";
import { decodeFlowState, encodeFlowState } from "../../../lib/flow/state_file.ts";

const targets = { acquire: () => true, release: () => {} };

Deno.test("flow state round trip keeps every field, order and helper flows", () => {
  const a = new FlowStore(targets);
  const defs = [
    F2_FIELDS,
    { name: "sctp", target: "lb-b", priority: "-7", protocols: "sctp", udpencap: "9899" },
    { name: "none", target: "lb-a", dports: "" },
  ];
  for (const d of defs) assert.equal(a.set(d), "OK");
  assert.equal(a.traceSet({ name: "tr", protocols: "udp" }), "OK");
  const text = encodeFlowState(a.flows.snapshot.flows, a.traces.snapshot.flows);
  const state = decodeFlowState(text);
  const b = new FlowStore(targets);
  for (const f of state.flows) assert.equal(b.set(f), "OK", JSON.stringify(f));
  for (const f of state.traces) assert.equal(b.traceSet(f), "OK");
  assert.equal(formatFlowList(b.flows.entries()), formatFlowList(a.flows.entries()));
  assert.equal(
    formatFlowList(b.traces.entries(), "trace"),
    formatFlowList(a.traces.entries(), "trace"),
  );
  assert.ok(b.flows.names().includes("#sctp"));
});

Deno.test("flow state: bad files are rejected with a reason", () => {
  assert.throws(() => decodeFlowState("{}"), /not a version 1 flow state file/);
  assert.throws(() => decodeFlowState('{"version":1,"flows":[3],"traces":[]}'), /not an object/);
  assert.throws(() => decodeFlowState('{"version":1,"flows":[{"a":1}],"traces":[]}'), /strings/);
  assert.throws(() => decodeFlowState("nope"), SyntaxError);
});
