/**
 * daemon/table_watch.ts: a flow's table that a queue thread cannot map when it installs the flows
 * (gone, or a transient mmap failure) is retried by the periodic check until it maps (issue 18,
 * item 10), instead of the flow answering "no target" until it is set again.
 */
import assert from "node:assert/strict";
import { removeShm, runCli, tempShmName } from "../../testkit/cli.ts";
import { remappedLine, TableCache } from "../../daemon/table_watch.ts";
import type { FlowSnapshot } from "../../lib/flow/store.ts";

/** A snapshot of flows with these targets (the cache reads nothing else). */
function snapshotOf(...targets: string[]): FlowSnapshot {
  return {
    version: 1,
    flows: targets.map((target, i) => ({ name: `f${i}`, target })),
    slots: new Uint32Array(targets.length),
  } as unknown as FlowSnapshot;
}

Deno.test("TableCache: a flow table that cannot be mapped is retried by check() until it maps", async () => {
  const name = tempShmName("tc");
  const failures: string[] = [];
  const cache = new TableCache((table, why) => failures.push(`${table}: ${why}`));
  const logs: string[] = [];
  try {
    const s = snapshotOf(name);
    assert.deepEqual(cache.tablesFor(s), [undefined], "missing: the flow has no table for now");
    assert.equal(cache.check((l) => logs.push(l)), undefined, "still missing: nothing changed");
    assert.equal((await runCli("init", `--shm=${name}`, "--M=7", "--N=2")).code, 0);
    const changed = cache.check((l) => logs.push(l));
    assert.deepEqual(changed, [], "mapped now: the flows are to be installed again");
    assert.deepEqual(logs, [remappedLine(name)]);
    const [t] = cache.tablesFor(s);
    assert.ok(t !== undefined, "the next install gets the table");
    assert.equal(t.m, 7);
    assert.equal(cache.check((l) => logs.push(l)), undefined, "nothing more to do");
    // The failure was reported once (counted and logged by the queue thread).
    assert.equal(failures.length, 1);
    assert.match(failures[0], new RegExp(`^${name}: FAILED mapSharedData: ${name}$`));
  } finally {
    cache.close();
    removeShm(name);
  }
});
