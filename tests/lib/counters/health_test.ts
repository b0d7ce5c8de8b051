/**
 * `GET /healthz` reasons (lib/counters/health.ts): healthy only when a packet for a configured VIP
 * would be forwarded — queues bound, tables valid, an active target in lb's table or in some
 * flow's table (flowlb).
 */
import assert from "node:assert/strict";
import {
  type HealthInput,
  healthProblems,
  MAX_FLOW_LINES,
  PROC_QUEUES,
} from "../../../lib/counters/health.ts";

const BOUND: HealthInput = {
  queueFirst: 2,
  queueLast: 3,
  bound: new Set([2, 3]),
  tables: new Map(),
};

Deno.test("health: lb needs its queues bound and an active target in its table", () => {
  const lb = (active: number, bound = new Set([2, 3])) =>
    healthProblems({ ...BOUND, bound, tables: new Map([["t", { active }]]), target: "t" });
  assert.deepEqual(lb(1), []);
  assert.deepEqual(lb(0), [
    "table t: no active target: every packet gets no target (nfqlb activate ...)",
  ]);
  assert.deepEqual(lb(4, new Set([3])), [`queue 2: not bound (${PROC_QUEUES})`]);
  assert.deepEqual(
    healthProblems({ ...BOUND, bound: "EACCES", tables: new Map([["t", { active: 1 }]]) }),
    [`cannot read ${PROC_QUEUES}: EACCES`],
  );
  // Non-root: the kernel's list is unreadable, the queue threads' own word stands in for it.
  const own = (bound: Set<number>) =>
    healthProblems({
      ...BOUND,
      bound,
      boundFromDaemon: "Permission denied",
      tables: new Map([["t", { active: 1 }]]),
      target: "t",
    });
  assert.deepEqual(own(new Set([2, 3])), []);
  assert.deepEqual(own(new Set([2])), [
    `queue 3: not bound (its queue thread does not hold it; ${PROC_QUEUES}: Permission denied)`,
  ]);
  // A table that does not map says why once (not also "no active target").
  assert.deepEqual(
    healthProblems({
      ...BOUND,
      tables: new Map([["t", { problem: "FAILED mapSharedData: t", active: 0 }]]),
      target: "t",
    }),
    ["table t: FAILED mapSharedData: t"],
  );
});

Deno.test("health: flowlb needs a flow whose table has an active target", () => {
  const tables = new Map([["a", { active: 0 }], ["b", { active: 2 }]]);
  const flowlb = (flows: { name: string; target: string | undefined }[]) =>
    healthProblems({ ...BOUND, tables, flows });
  assert.deepEqual(flowlb([]), ["no flows: no packet is load-balanced (nfqlb flow-set ...)"]);
  // A helper flow (no target) does not count.
  assert.deepEqual(flowlb([{ name: "#sctp", target: undefined }]), [
    "no flows: no packet is load-balanced (nfqlb flow-set ...)",
  ]);
  assert.deepEqual(flowlb([{ name: "x", target: "a" }]), [
    "no flow has a table with an active target: every packet gets no target",
    "flow x: table a: no active target",
  ]);
  assert.deepEqual(flowlb([{ name: "x", target: "a" }, { name: "y", target: "b" }]), []);
});

Deno.test("health: a table that does not map is a reason even when another flow works", () => {
  const tables = new Map([["a", { problem: "truncated", active: 0 }], ["b", { active: 1 }]]);
  assert.deepEqual(
    healthProblems({
      ...BOUND,
      tables,
      flows: [{ name: "x", target: "a" }, { name: "y", target: "b" }],
    }),
    ["table a: truncated"],
  );
  assert.deepEqual(
    healthProblems({ ...BOUND, tables, flows: [{ name: "x", target: "a" }] }),
    [
      "table a: truncated",
      "no flow has a table with an active target: every packet gets no target",
      "flow x: table a: does not map",
    ],
  );
});

Deno.test("health: at most MAX_FLOW_LINES flows are named, the rest counted", () => {
  const flows = Array.from({ length: MAX_FLOW_LINES + 5 }, (_, i) => ({
    name: `f${i}`,
    target: "a",
  }));
  const p = healthProblems({ ...BOUND, tables: new Map([["a", { active: 0 }]]), flows });
  assert.equal(p.length, 1 + MAX_FLOW_LINES + 1);
  assert.equal(p.at(-1), "... and 5 more flows");
});

Deno.test("health: a queue whose verdicts cannot be sent is a reason, with how long and why", () => {
  const lb = (sendStuck: HealthInput["sendStuck"]) =>
    healthProblems({ ...BOUND, tables: new Map([["t", { active: 1 }]]), target: "t", sendStuck });
  assert.deepEqual(lb([]), []);
  assert.deepEqual(lb([{ queue: 3, forMs: 1234.4, error: "Cannot allocate memory" }]), [
    "queue 3: verdicts not sent for 1234 ms: Cannot allocate memory",
  ]);
  // A wall clock that stepped back says 0, not a negative time.
  assert.deepEqual(lb([{ queue: 2, forMs: -5, error: "No buffer space available" }]), [
    "queue 2: verdicts not sent for 0 ms: No buffer space available",
  ]);
});
