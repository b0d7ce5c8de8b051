/**
 * Pending flows of the store (docs/COMPATIBILITY.md#differences D58): a flow restored with a
 * target that cannot be mapped (`setMany(list, true)`) is kept, listed with `"pending": true`,
 * saved, left out of the matching flows, holds no target reference, survives unrelated changes,
 * and becomes a normal flow once `activatePending` finds its table.
 */
import assert from "node:assert/strict";
import { handleRequest, parseRequest } from "../../../lib/flow/control_protocol.ts";
import { formatFlowList } from "../../../lib/flow/format.ts";
import { decodeFlowState, encodeFlowState } from "../../../lib/flow/state_file.ts";
import { FlowStore, matchingFlows, type TargetRegistry } from "../../../lib/flow/store.ts";

/** Counts references per target; names in `missing` cannot be mapped. */
function targets(missing: Set<string>): TargetRegistry & { refs: Map<string, number> } {
  const refs = new Map<string, number>();
  return {
    refs,
    acquire(name) {
      if (missing.has(name)) return false;
      refs.set(name, (refs.get(name) ?? 0) + 1);
      return true;
    },
    release(name) {
      const n = refs.get(name);
      assert.ok(n !== undefined && n > 0, `release of unreferenced ${name}`);
      if (n === 1) refs.delete(name);
      else refs.set(name, n - 1);
    },
  };
}

const RESTORED = [
  { name: "web", target: "tshm-web", priority: "10", protocols: "tcp", dports: "80" },
  { name: "sctp", target: "tshm-web", priority: "5", protocols: "sctp", udpencap: "9899" },
  { name: "dns", target: "tshm-dns", priority: "1", protocols: "udp", dports: "53" },
];

function restored() {
  const missing = new Set(["tshm-web", "nope"]);
  const t = targets(missing);
  const store = new FlowStore(t);
  assert.deepEqual(store.setMany(RESTORED, true), ["OK", "OK", "OK"]);
  return { missing, t, store };
}

const list = (store: FlowStore) =>
  new TextDecoder().decode(
    handleRequest(
      store,
      (parseRequest(new TextEncoder().encode("action:list\neoc:\n")) as {
        request: Parameters<typeof handleRequest>[1];
      }).request,
    ),
  );

Deno.test("pending: a restored flow without its table is kept, listed pending, not matched", () => {
  const { t, store } = restored();
  const s = store.flows.snapshot;
  assert.deepEqual(store.flows.names(), ["web", "#sctp", "sctp", "dns"]);
  assert.deepEqual(Array.from(s.pending), [1, 1, 1, 0], "the helper waits with its flow");
  assert.equal(s.pendingCount, 3);
  assert.deepEqual(matchingFlows(s).flows.map((f) => f.name), ["dns"]);
  assert.deepEqual(Array.from(matchingFlows(s).slots), [s.slots[3]]);
  assert.deepEqual(Object.fromEntries(t.refs), { "tshm-dns": 1 }, "no reference while pending");
  // flow-list: the same objects as 1.2.0, plus a last key on the pending ones.
  const text = list(store);
  const parsed = JSON.parse(text) as Record<string, unknown>[];
  assert.deepEqual(parsed.map((f) => f.pending), [true, true, true, undefined]);
  assert.match(text, /"user_ref": "tshm-web",\n {2}"pending": true\n\}/);
  assert.equal(
    text.replace(/,\n {2}"pending": true/g, ""),
    formatFlowList(store.flows.entries().map(({ flow, matchesCount }) => ({ flow, matchesCount }))),
  );
  // A plain set still refuses a missing table (1.2.0's reply).
  assert.equal(
    store.set({ name: "new", target: "tshm-web" }),
    "FAIL: Couldn't create load-balancer",
  );
});

Deno.test("pending: an unrelated change keeps the pending flows, also in the saved state", () => {
  const { store } = restored();
  assert.equal(store.set({ name: "other", target: "tshm-dns", dports: "99" }), "OK");
  assert.equal(store.delete("dns"), "OK");
  const saved = decodeFlowState(
    encodeFlowState(store.flows.snapshot.flows, store.traces.snapshot.flows),
  );
  assert.deepEqual(saved.flows.map((f) => f.name), ["web", "sctp", "other"]);
  assert.equal(saved.flows[0].target, "tshm-web");
  assert.ok(store.flows.isPending("web") && store.flows.isPending("#sctp"));
  assert.ok(!store.flows.isPending("other"));
});

Deno.test("pending: activatePending probes each target once and activates when it maps", () => {
  const { missing, t, store } = restored();
  const probes: string[] = [];
  const probe = (name: string) => {
    probes.push(name);
    return !missing.has(name);
  };
  const v = store.flows.snapshot.version;
  assert.deepEqual(store.activatePending(probe), []);
  assert.deepEqual(probes, ["tshm-web"], "one probe per target");
  assert.equal(store.flows.snapshot.version, v, "nothing published");
  missing.delete("tshm-web");
  const slots = store.flows.snapshot.slots;
  assert.deepEqual(store.activatePending(probe), [
    { name: "web", target: "tshm-web" },
    { name: "sctp", target: "tshm-web" },
  ]);
  const s = store.flows.snapshot;
  assert.equal(s.version, v + 1);
  assert.equal(s.pendingCount, 0);
  assert.deepEqual(Array.from(s.slots), Array.from(slots), "same counters");
  assert.equal(matchingFlows(s), s);
  assert.deepEqual(Object.fromEntries(t.refs), { "tshm-web": 2, "tshm-dns": 1 });
  assert.doesNotMatch(list(store), /pending/);
  assert.deepEqual(store.activatePending(probe), []);
  for (const n of ["web", "sctp", "dns"]) assert.equal(store.delete(n), "OK");
  assert.deepEqual(Object.fromEntries(t.refs), {}, "every reference given back");
});

Deno.test("pending: replace and delete hold no reference; a set with the table activates", () => {
  const { missing, t, store } = restored();
  // Same target, still missing: replaced, still pending, OK.
  assert.equal(store.set({ ...RESTORED[0], dports: "8080" }), "OK");
  assert.ok(store.flows.isPending("web"));
  assert.equal(store.flows.get("web")!.flow.dports![0].lo, 8080);
  // Another missing target: refused, unchanged.
  assert.equal(
    store.set({ ...RESTORED[0], target: "nope" }),
    "FAIL: Couldn't create new load-balancer",
  );
  // Another target that maps: a normal flow.
  assert.equal(store.set({ ...RESTORED[0], target: "tshm-dns" }), "OK");
  assert.ok(!store.flows.isPending("web"));
  assert.deepEqual(Object.fromEntries(t.refs), { "tshm-dns": 2 });
  // Deleting a pending flow releases nothing.
  assert.equal(store.delete("sctp"), "OK");
  assert.deepEqual(store.flows.names(), ["web", "dns"]);
  assert.deepEqual(Object.fromEntries(t.refs), { "tshm-dns": 2 });
  // The table appears: a set of the pending flow with the same target takes it at once.
  assert.deepEqual(store.setMany([RESTORED[1]], true), ["OK"]);
  assert.ok(store.flows.isPending("sctp"));
  missing.delete("tshm-web");
  assert.equal(store.set(RESTORED[1]), "OK");
  assert.ok(!store.flows.isPending("sctp") && !store.flows.isPending("#sctp"));
  assert.deepEqual(Object.fromEntries(t.refs), { "tshm-dns": 2, "tshm-web": 1 });
});

Deno.test("pending: snapshots with pending flows survive structuredClone", () => {
  const { store } = restored();
  const c = structuredClone(store.flows.snapshot);
  assert.deepEqual(Array.from(c.pending), [1, 1, 1, 0]);
  assert.deepEqual(matchingFlows(c).flows.map((f) => f.name), ["dns"]);
});
