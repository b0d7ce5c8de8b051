/**
 * The flow store: ordering (docs/COMPATIBILITY.md#flows; #differences D17), set/delete replies (6.8),
 * udpencap helper flows (6.7), target reference counting and atomicity
 * (11 #16), trace flows (9.4, 11 #5), snapshots and matches_count counters.
 */
import assert from "node:assert/strict";
import type { FlowFields } from "../../../lib/flow/parse.ts";
import { FlowList, type FlowSnapshot, FlowStore, MatchCounters } from "../../../lib/flow/store.ts";

/** A fake target registry counting references; names in `broken` cannot be mapped. */
class FakeTargets {
  refs = new Map<string, number>();
  calls: string[] = [];
  broken = new Set<string>();
  acquire(name: string): boolean {
    this.calls.push(`acquire ${name}`);
    if (this.broken.has(name)) return false;
    this.refs.set(name, (this.refs.get(name) ?? 0) + 1);
    return true;
  }
  release(name: string): void {
    this.calls.push(`release ${name}`);
    const n = this.refs.get(name);
    assert.ok(n !== undefined && n > 0, `release of unreferenced ${name}`);
    if (n === 1) this.refs.delete(name);
    else this.refs.set(name, n - 1);
  }
  snapshot(): Record<string, number> {
    return Object.fromEntries([...this.refs].sort());
  }
}

function setup(options = {}) {
  const targets = new FakeTargets();
  return { targets, store: new FlowStore(targets, options) };
}

const names = (s: FlowStore) => s.flows.names();
const ok = (r: string) => assert.equal(r, "OK");

/** Count one match of flow `name` on `lane` the way a packet thread does. */
function hit(list: FlowList, name: string, lane = 0, times = 1): void {
  const snap = list.snapshot;
  const i = snap.flows.findIndex((f) => f.name === name);
  const cells = list.counters.lane(lane);
  for (let t = 0; t < times; t++) cells[snap.slots[i]]++;
}

Deno.test("6.4: equal priorities keep insertion order; higher priority first", () => {
  const { store } = setup();
  for (const n of ["a", "b", "c", "d"]) ok(store.set({ name: n, target: "lb", priority: "3" }));
  assert.deepEqual(names(store), ["a", "b", "c", "d"]);
  ok(store.set({ name: "e", target: "lb", priority: "0" }));
  ok(store.set({ name: "z", target: "lb", priority: "5" }));
  assert.deepEqual(names(store), ["z", "a", "b", "c", "d", "e"]);
});

Deno.test("6.4: a redefined flow keeps its array position before the stable sort", () => {
  const { store } = setup();
  for (const n of ["a", "b", "c", "d"]) ok(store.set({ name: n, target: "lb", priority: "3" }));
  ok(store.set({ name: "e", target: "lb", priority: "0" }));
  ok(store.set({ name: "c", target: "lb", priority: "0" }));
  // c now has prio 0 and was further up the array than the older prio-0 flow e.
  assert.deepEqual(names(store), ["a", "b", "d", "c", "e"]);
  // Redefining with the same priority keeps the place.
  ok(store.set({ name: "a", target: "lb", priority: "3" }));
  assert.deepEqual(names(store), ["a", "b", "d", "c", "e"]);
  ok(store.set({ name: "e", target: "lb", priority: "3" }));
  assert.deepEqual(names(store), ["a", "b", "d", "e", "c"]);
});

Deno.test("11 #17: extreme priorities are compared, not subtracted", () => {
  const { store } = setup();
  ok(store.set({ name: "min", target: "lb", priority: "-2147483648" }));
  ok(store.set({ name: "max", target: "lb", priority: "2147483647" }));
  ok(store.set({ name: "zero", target: "lb" }));
  ok(store.set({ name: "neg", target: "lb", priority: "-1" }));
  assert.deepEqual(names(store), ["max", "zero", "neg", "min"]);
});

Deno.test("6.8: replacement by name resets matches_count; others keep theirs", () => {
  const { store } = setup({ lanes: 3 });
  ok(store.set({ name: "a", target: "lb" }));
  ok(store.set({ name: "b", target: "lb" }));
  hit(store.flows, "a", 0, 2);
  hit(store.flows, "a", 2, 3);
  hit(store.flows, "b", 1, 7);
  assert.equal(store.flows.get("a")!.matchesCount, 5);
  ok(store.set({ name: "a", target: "lb", priority: "9" }));
  assert.equal(store.flows.get("a")!.matchesCount, 0);
  assert.equal(store.flows.get("b")!.matchesCount, 7);
  assert.deepEqual(store.flows.entries().map((e) => [e.flow.name, e.matchesCount]), [
    ["a", 0],
    ["b", 7],
  ]);
});

Deno.test("6.8: delete replies, unknown names, FAIL: no name", () => {
  const { store, targets } = setup();
  assert.equal(store.delete(undefined), "FAIL: no name");
  ok(store.delete("nope"));
  ok(store.delete(""));
  ok(store.set({ name: "a", target: "lb" }));
  const v = store.flows.snapshot.version;
  ok(store.delete("A")); // exact comparison
  assert.equal(store.flows.snapshot.version, v);
  ok(store.delete("a"));
  assert.deepEqual(names(store), []);
  assert.deepEqual(targets.snapshot(), {});
  assert.equal(store.flows.snapshot.version, v + 1);
});

Deno.test("6.7: udpencap creates #name before the main flow, same priority", () => {
  const { store, targets } = setup();
  ok(store.set({ name: "x", target: "lb", priority: "100" }));
  ok(store.set({
    name: "sctp",
    target: "nfqlb",
    priority: "100",
    protocols: "sctp",
    dsts: "10.0.0.0/32,1000::/128",
    srcs: "1.2.3.4/32",
    dports: "6000",
    sports: "7",
    match: "sctp[0:2]=1",
    udpencap: "9899",
  }));
  assert.deepEqual(names(store), ["x", "#sctp", "sctp"]);
  const [, helper, main] = store.flows.snapshot.flows;
  assert.equal(helper.priority, 100);
  assert.equal(helper.target, undefined);
  assert.equal(helper.udpencap, 9899);
  assert.deepEqual(helper.dports, [{ lo: 9899, hi: 9899 }]);
  assert.equal(helper.dsts, main.dsts);
  assert.equal(helper.srcs, main.srcs);
  assert.equal(helper.sports, undefined);
  assert.equal(helper.match, undefined);
  assert.equal(main.udpencap, 9899);
  // Only the main flow holds a target reference.
  assert.deepEqual(targets.snapshot(), { lb: 1, nfqlb: 1 });
  // Redefinition (same udpencap) updates both in place.
  ok(
    store.set({
      name: "sctp",
      target: "nfqlb",
      priority: "200",
      protocols: "SCTP",
      udpencap: "9899",
    }),
  );
  assert.deepEqual(names(store), ["#sctp", "sctp", "x"]);
  assert.equal(store.flows.snapshot.flows[0].priority, 200);
  assert.equal(store.flows.snapshot.flows[0].dsts, undefined);
  // Deleting the helper on its own is ignored; deleting the flow removes both.
  ok(store.delete("#sctp"));
  assert.deepEqual(names(store), ["#sctp", "sctp", "x"]);
  ok(store.delete("sctp"));
  assert.deepEqual(names(store), ["x"]);
  assert.deepEqual(targets.snapshot(), { lb: 1 });
});

Deno.test("6.7: changing udpencap is refused (also 0 → P and P → 0)", () => {
  const { store } = setup();
  ok(store.set({ name: "s", target: "lb", protocols: "sctp", udpencap: "9899" }));
  ok(store.set({ name: "t", target: "lb", protocols: "sctp" }));
  const alter = "FAIL: Alter udpencap not allowed";
  assert.equal(store.set({ name: "s", target: "lb", protocols: "sctp", udpencap: "9898" }), alter);
  assert.equal(store.set({ name: "s", target: "lb", protocols: "sctp" }), alter);
  assert.equal(store.set({ name: "t", target: "lb", protocols: "sctp", udpencap: "1" }), alter);
  // 75435 & 0xffff = 9899: the same udpencap.
  ok(store.set({ name: "s", target: "lb", protocols: "sctp", udpencap: "75435" }));
  assert.equal(
    store.set({ name: "u", target: "lb", protocols: "sctp,udp", udpencap: "5" }),
    "FAIL: only sctp for updencap",
  );
});

Deno.test("targets: one acquire per flow binding, released on replace and delete", () => {
  const { store, targets } = setup();
  ok(store.set({ name: "a", target: "lb1" }));
  ok(store.set({ name: "b", target: "lb1" }));
  assert.deepEqual(targets.snapshot(), { lb1: 2 });
  targets.calls = [];
  ok(store.set({ name: "a", target: "lb1", priority: "4" })); // same target: no calls
  assert.deepEqual(targets.calls, []);
  ok(store.set({ name: "a", target: "lb2" }));
  assert.deepEqual(targets.calls, ["acquire lb2", "release lb1"]);
  assert.deepEqual(targets.snapshot(), { lb1: 1, lb2: 1 });
  ok(store.delete("b"));
  ok(store.delete("a"));
  assert.deepEqual(targets.snapshot(), {});
});

/** Run `fields` through `set` and assert it fails with `error` and changes nothing. */
function assertAtomicFailure(
  store: FlowStore,
  targets: FakeTargets,
  fields: FlowFields,
  error: string,
): void {
  const before = store.flows.snapshot;
  const refs = targets.snapshot();
  const counts = store.flows.entries().map((e) => e.matchesCount);
  assert.equal(store.set(fields), error, JSON.stringify(fields));
  assert.equal(store.flows.snapshot, before, "snapshot must not change");
  assert.deepEqual(targets.snapshot(), refs, "target references must not change");
  assert.deepEqual(store.flows.entries().map((e) => e.matchesCount), counts);
}

Deno.test("11 #16: every set failure path changes nothing (new flows)", () => {
  const { store, targets } = setup();
  ok(store.set({ name: "keep", target: "lb" }));
  hit(store.flows, "keep", 0, 3);
  targets.broken.add("gone");
  const cases: [FlowFields, string][] = [
    [{ target: "lb" }, "Invalid name"],
    [{ name: "", target: "lb" }, "Invalid name"],
    [{ name: "#n", target: "lb" }, "Invalid name"],
    [{ name: "a b", target: "lb" }, "Invalid name"],
    [{ name: "n".repeat(1024), target: "lb" }, "Name too long"],
    [{ name: "n" }, "FAIL: Couldn't create load-balancer"],
    [{ name: "n", target: "gone" }, "FAIL: Couldn't create load-balancer"],
    [{ name: "n", target: "new", udpencap: "5" }, "FAIL: only sctp for updencap"],
    [{ name: "n", target: "new", protocols: "icmp" }, "Invalid protocols"],
    [{ name: "n", target: "new", dports: "0" }, "Invalid dports"],
    [{ name: "n", target: "new", sports: "70000" }, "Invalid sports"],
    [{ name: "n", target: "new", dsts: "1.2.3.4" }, "Invalid dsts"],
    [{ name: "n", target: "new", srcs: "::/129" }, "Invalid srcs"],
    [{ name: "n", target: "new", match: "tcp[20:1]=1" }, "Match [tcp[20:1]=1] Out of bounds"],
    [
      { name: "n", target: "new", protocols: "sctp", udpencap: "9", dsts: "x" },
      "Invalid dsts",
    ],
  ];
  for (const [fields, error] of cases) assertAtomicFailure(store, targets, fields, error);
  assert.deepEqual(names(store), ["keep"]);
  assert.equal(store.flows.get("keep")!.matchesCount, 3);
});

Deno.test("11 #16: every set failure path changes nothing (redefinitions)", () => {
  const { store, targets } = setup();
  ok(store.set({ name: "s", target: "lb", protocols: "sctp", udpencap: "9899", priority: "5" }));
  ok(store.set({ name: "p", target: "lb" }));
  hit(store.flows, "s", 0, 2);
  hit(store.flows, "#s", 0, 4);
  targets.broken.add("gone");
  const s = { name: "s", target: "lb", protocols: "sctp", udpencap: "9899" };
  const cases: [FlowFields, string][] = [
    [{ ...s, udpencap: "1" }, "FAIL: Alter udpencap not allowed"],
    [{ ...s, target: "gone" }, "FAIL: Couldn't create new load-balancer"],
    [{ ...s, target: undefined }, "FAIL: Couldn't create new load-balancer"],
    [{ ...s, protocols: "sctp,tcp" }, "FAIL: only sctp for updencap"],
    [{ ...s, target: "other", protocols: "tcp" }, "FAIL: only sctp for updencap"],
    [{ ...s, target: "other", dports: "5-4" }, "Invalid dports"],
    [{ ...s, target: "other", match: "udp[0:1]=1 " }, "Match [udp[0:1]=1 ] Doesn't match regexp"],
    [{ name: "p", target: "other", srcs: "1.2.3.4/33" }, "Invalid srcs"],
    [{ name: "p", target: "gone" }, "FAIL: Couldn't create new load-balancer"],
  ];
  for (const [fields, error] of cases) assertAtomicFailure(store, targets, fields, error);
  assert.deepEqual(names(store), ["#s", "s", "p"]);
  assert.equal(store.flows.get("s")!.matchesCount, 2);
  assert.equal(store.flows.get("#s")!.matchesCount, 4);
  assert.deepEqual(targets.snapshot(), { lb: 2 });
});

Deno.test("11 #16: running out of counter slots fails atomically", () => {
  const { store, targets } = setup({ capacity: 3 });
  ok(store.set({ name: "a", target: "lb" }));
  ok(store.set({ name: "b", target: "lb" }));
  assertAtomicFailure(
    store,
    targets,
    { name: "s", target: "new", protocols: "sctp", udpencap: "1" },
    "FAIL: too many flows",
  );
  ok(store.set({ name: "c", target: "lb" }));
  assertAtomicFailure(store, targets, { name: "d", target: "lb" }, "FAIL: too many flows");
  // Deleting frees slots for reuse (oldest retired first), zeroed.
  hit(store.flows, "a", 0, 9);
  ok(store.delete("a"));
  ok(store.set({ name: "d", target: "lb" }));
  assert.equal(store.flows.get("d")!.matchesCount, 0);
  assert.deepEqual(names(store), ["b", "c", "d"]);
});

Deno.test("snapshots: versions, frozen flows, parallel slots, listeners", () => {
  const { store } = setup();
  const seen: FlowSnapshot[] = [];
  const off = store.flows.onChange((s) => seen.push(s));
  assert.equal(store.flows.snapshot.version, 0);
  ok(store.set({ name: "a", target: "lb" }));
  ok(store.set({ name: "b", target: "lb", priority: "1" }));
  const snap = store.flows.snapshot;
  assert.equal(snap.version, 2);
  assert.deepEqual(seen.map((s) => s.version), [1, 2]);
  assert.equal(seen[1], snap);
  assert.ok(Object.isFrozen(snap) && Object.isFrozen(snap.flows));
  assert.equal(snap.slots.length, 2);
  assert.notEqual(snap.slots[0], snap.slots[1]);
  // A failed set publishes nothing; the old snapshot stays valid.
  assert.equal(store.set({ name: "c", target: "lb", dports: "0" }), "Invalid dports");
  assert.equal(seen.length, 2);
  off();
  ok(store.delete("a"));
  assert.equal(seen.length, 2);
  assert.deepEqual(snap.flows.map((f) => f.name), ["b", "a"]); // old snapshot unchanged
  // Snapshots are structured-cloneable (can be posted to workers).
  const clone = structuredClone(store.flows.snapshot);
  assert.deepEqual(clone.flows.map((f) => f.name), ["b"]);
});

Deno.test("a throwing listener does not undo the change", async () => {
  const { store } = setup();
  store.flows.onChange(() => {
    throw new Error("listener");
  });
  const errors: unknown[] = [];
  const handler = (e: ErrorEvent) => {
    errors.push(e.error);
    e.preventDefault();
  };
  globalThis.addEventListener("error", handler);
  try {
    ok(store.set({ name: "a", target: "lb" }));
    await new Promise((r) => setTimeout(r, 0));
  } finally {
    globalThis.removeEventListener("error", handler);
  }
  assert.deepEqual(names(store), ["a"]);
  assert.equal((errors[0] as Error).message, "listener");
});

Deno.test("MatchCounters: lanes on separate cache lines, u32 sums, attach from a worker view", () => {
  const c = new MatchCounters(3, 5);
  assert.equal(c.stride, 16);
  assert.equal(c.buffer.byteLength, 3 * 16 * 4);
  c.lane(0)[4] = 0xffffffff;
  c.lane(1)[4] = 2;
  c.lane(2)[4]++;
  assert.equal(c.count(4), 2); // (2^32 - 1 + 2 + 1) mod 2^32
  const attached = new MatchCounters(3, 5, c.buffer);
  attached.lane(1)[0] += 5;
  assert.equal(c.count(0), 5);
  c.clear(4);
  assert.equal(c.count(4), 0);
  assert.throws(() => new MatchCounters(0, 5));
  assert.throws(() => new MatchCounters(2, 100, new SharedArrayBuffer(16)));
});

Deno.test("9.4 trace flows: separate list, OK reply, raw priority, no target", () => {
  const { store, targets } = setup();
  ok(store.traceSet({ name: "tshm-stream-a-flow-a" }));
  ok(store.traceSet({ name: "t2", priority: "5", target: "lb", udpencap: "9", protocols: "tcp" }));
  assert.deepEqual(store.traces.names(), ["t2", "tshm-stream-a-flow-a"]);
  assert.deepEqual(names(store), []);
  assert.deepEqual(targets.calls, []);
  const t2 = store.traces.get("t2")!.flow;
  assert.equal(t2.target, undefined);
  assert.equal(t2.udpencap, 0);
  assert.equal(t2.priority, 5);
  assert.equal(store.traceSet({ name: "bad name" }), "Invalid name");
  assert.equal(store.traceSet({ name: "t3", sports: "0" }), "Invalid sports");
  // Replace keeps position among equals and resets the counter.
  hit(store.traces, "t2", 0, 4);
  ok(store.traceSet({ name: "t2", priority: "5", protocols: "udp" }));
  assert.equal(store.traces.get("t2")!.matchesCount, 0);
  assert.equal(store.traceDelete(undefined), "FAIL: no name");
  ok(store.traceDelete("nope"));
  ok(store.traceDelete("t2"));
  assert.deepEqual(store.traces.names(), ["tshm-stream-a-flow-a"]);
  // A flow and a trace flow may share a name.
  ok(store.set({ name: "tshm-stream-a-flow-a", target: "lb" }));
  ok(store.traceDelete("tshm-stream-a-flow-a"));
  assert.deepEqual(names(store), ["tshm-stream-a-flow-a"]);
});

Deno.test("FlowList.apply: put order, remove, and in-place replacement", () => {
  const list = new FlowList(1, 8);
  const mk = (name: string, priority: number) => ({
    name,
    priority,
    target: "t",
    protocols: undefined,
    dsts: undefined,
    srcs: undefined,
    dports: undefined,
    sports: undefined,
    match: undefined,
    udpencap: 0,
  });
  assert.ok(list.apply([mk("a", 1), mk("b", 1)]));
  assert.ok(list.apply([mk("c", 2), mk("a", 1)], ["b", "missing"]));
  assert.deepEqual(list.names(), ["c", "a"]);
  assert.equal(list.indexOf("a"), 1);
  assert.equal(list.get("missing"), undefined);
});
