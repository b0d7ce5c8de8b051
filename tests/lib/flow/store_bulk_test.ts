/**
 * The bulk load of the flow store (`setMany`, `traceSetMany`, used by the `--flow-state`
 * restore) gives exactly the state that sequential `set` / `traceSet` calls give: the same
 * listing, order, flow definitions, replies and target references (docs/COMPATIBILITY.md#flows).
 */
import assert from "node:assert/strict";
import type { FlowFields } from "../../../lib/flow/parse.ts";
import { flowToFields } from "../../../lib/flow/state_file.ts";
import { FlowStore, type TargetRegistry } from "../../../lib/flow/store.ts";
import { prng } from "../../../testkit/prng.ts";

/** Counts references per target; `bad` cannot be mapped. */
function targets(): TargetRegistry & { refs: Map<string, number> } {
  const refs = new Map<string, number>();
  return {
    refs,
    acquire(name) {
      if (name === "bad") return false;
      refs.set(name, (refs.get(name) ?? 0) + 1);
      return true;
    },
    release(name) {
      const n = refs.get(name)!;
      assert.ok(n > 0);
      if (n === 1) refs.delete(name);
      else refs.set(name, n - 1);
    },
  };
}

/** A random mix: duplicates, priority changes, helper flows, invalid entries. */
function randomEntries(seed: number, n: number): FlowFields[] {
  const r = prng(seed);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)];
  const out: FlowFields[] = [];
  for (let i = 0; i < n; i++) {
    const f: Record<string, string> = { name: `f${Math.floor(r() * n * 0.6)}` };
    if (r() < 0.05) f.name = pick(["", "bad name", "#x"]);
    if (r() < 0.95) f.target = pick(["t1", "t2", "t3", "bad"]);
    f.priority = String(Math.floor(r() * 4));
    const kind = r();
    if (kind < 0.1) {
      f.protocols = "sctp";
      f.udpencap = pick(["9899", "9900"]);
    } else if (kind < 0.15) {
      f.protocols = "tcp";
      f.udpencap = "9899"; // only sctp for udpencap
    } else if (kind < 0.2) {
      f.dports = "0"; // invalid
    } else {
      f.protocols = pick(["tcp", "udp", "tcp,udp"]);
      f.dports = String(1 + Math.floor(r() * 65535));
    }
    out.push(f);
  }
  return out;
}

function state(s: FlowStore) {
  return {
    flows: s.flows.snapshot.flows.map(flowToFields),
    traces: s.traces.snapshot.flows.map(flowToFields),
  };
}

Deno.test("setMany gives the state and replies of sequential sets", () => {
  const seen = new Set<string>();
  for (let seed = 1; seed <= 40; seed++) {
    const entries = randomEntries(seed, 200);
    const ta = targets();
    const a = new FlowStore(ta, { capacity: 90 });
    const replies = entries.map((f) => a.set(f));
    const tb = targets();
    const b = new FlowStore(tb, { capacity: 90 });
    assert.deepEqual(b.setMany(entries), replies, `replies, seed ${seed}`);
    assert.deepEqual(state(b), state(a), `state, seed ${seed}`);
    assert.deepEqual([...tb.refs].sort(), [...ta.refs].sort(), `targets, seed ${seed}`);
    for (const r of replies) seen.add(r);
  }
  // The mix covers every kind of reply, the full store included.
  for (const r of ["OK", "FAIL: too many flows", "FAIL: Couldn't create load-balancer"]) {
    assert.ok(seen.has(r), r);
  }
  assert.ok(seen.size >= 6, [...seen].join(" | "));
});

Deno.test("setMany after existing flows replaces them like set", () => {
  const entries = randomEntries(7, 300);
  const a = new FlowStore(targets());
  const b = new FlowStore(targets());
  for (const f of entries.slice(0, 100)) {
    a.set(f);
    b.set(f);
  }
  const replies = entries.slice(100).map((f) => a.set(f));
  assert.deepEqual(b.setMany(entries.slice(100)), replies);
  assert.deepEqual(state(b), state(a));
});

Deno.test("setMany publishes once for new names", () => {
  const s = new FlowStore(targets());
  let published = 0;
  s.flows.onChange(() => published++);
  const list = Array.from({ length: 1000 }, (_, i) => ({
    name: `n${i}`,
    target: "t1",
    priority: String(i % 5),
  }));
  assert.ok(s.setMany(list).every((r) => r === "OK"));
  assert.equal(published, 1);
  assert.equal(s.flows.names().length, 1000);
});

Deno.test("traceSetMany gives the state and replies of sequential traceSets", () => {
  for (let seed = 1; seed <= 20; seed++) {
    const entries = randomEntries(seed, 120);
    const a = new FlowStore(targets(), { traceCapacity: 70 });
    const replies = entries.map((f) => a.traceSet(f));
    const b = new FlowStore(targets(), { traceCapacity: 70 });
    assert.deepEqual(b.traceSetMany(entries), replies, `replies, seed ${seed}`);
    assert.deepEqual(state(b), state(a), `state, seed ${seed}`);
  }
});
