/**
 * The control thread's trace lines (lib/trace/control_lines.ts, docs/COMPATIBILITY.md#trace-and-log
 * bits flow-conf and target): 1.2.0's texts, only with their bit.
 */
import assert from "node:assert/strict";
import { tracedTargets, traceReply, traceRequest } from "../../../lib/trace/control_lines.ts";
import { TRACE_FLOW_CONF, TRACE_TARGET } from "../../../lib/trace/mask.ts";

function sink(mask: number) {
  const lines: string[] = [];
  return { lines, s: { mask, line: (l: string) => lines.push(l) } };
}

Deno.test("target: create, find with the flow count, failed map, delete with the last flow", () => {
  const { lines, s } = sink(TRACE_TARGET);
  const t = tracedTargets({ acquire: (n) => n !== "gone", release: () => {} }, s);
  assert.equal(t.acquire("a"), true);
  assert.equal(t.acquire("a"), true);
  assert.equal(t.acquire("gone"), false);
  t.release("a");
  t.release("a");
  assert.deepEqual(lines, [
    "Creating LB; a",
    "Found LB; a (2)",
    "Map shm failed; gone",
    "Delete load-balancer; a",
  ]);
  const off = sink(TRACE_FLOW_CONF);
  const u = tracedTargets({ acquire: () => true, release: () => {} }, off.s);
  u.acquire("b");
  u.release("b");
  assert.deepEqual(off.lines, [], "nothing without bit target");
});

Deno.test("flow-conf: one FlowCmd line per request line, writeReply for the reply", () => {
  const { lines, s } = sink(TRACE_FLOW_CONF);
  traceRequest(s, ["action:set", "name:x", "eoc:"]);
  traceReply(s, new TextEncoder().encode("OK\0"));
  assert.deepEqual(lines, [
    "FlowCmd [action:set]",
    "FlowCmd [name:x]",
    "FlowCmd [eoc:]",
    "writeReply [OK]",
  ]);
  const off = sink(TRACE_TARGET);
  traceRequest(off.s, ["action:set"]);
  traceReply(off.s, new TextEncoder().encode("OK\0"));
  assert.deepEqual(off.lines, []);
});
