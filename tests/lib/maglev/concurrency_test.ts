/**
 * A reader hammering a shared table while targets are activated and
 * deactivated never sees "no target" as long as one target stays active
 * (1.2.0 fills the live table with −1 first: docs/COMPATIBILITY.md#differences D6). A control run with
 * 1.2.0's update order shows the reader does catch such windows.
 */
import assert from "node:assert/strict";
import { createShm } from "../../../ffi/shm.ts";
import { type MaglevTable, tableSize } from "../../../lib/maglev/table.ts";
import {
  activate,
  activateIndex,
  deactivate,
  deactivateIndex,
  initTable,
  populate,
  sleepSync,
} from "../../../lib/maglev/maglev.ts";
import { removeShm, tempShmName } from "../../../testkit/cli.ts";

interface Reader {
  ctl: Int32Array;
  stop(): Promise<void>;
}

/**
 * Start the reader. `withinMs`: a scan that saw "no target" only counts when it took at most that
 * long (the writer's grace period); a longer one was descheduled midway and proves nothing.
 */
async function startReader(name: string, withinMs?: number): Promise<Reader> {
  const shared = new SharedArrayBuffer(20);
  const ctl = new Int32Array(shared);
  const worker = new Worker(
    new URL("../../../testkit/fixtures/table_reader_worker.ts", import.meta.url),
    {
      type: "module",
    },
  );
  const done = new Promise((resolve) => worker.onmessage = resolve);
  worker.postMessage({ name, shared, withinMs });
  while (Atomics.load(ctl, 3) === 0) await new Promise((r) => setTimeout(r, 1));
  return {
    ctl,
    async stop() {
      Atomics.store(ctl, 0, 1);
      await done;
      worker.terminate();
    },
  };
}

/** Wait until the reader has completed at least `n` more scans. */
async function scans(r: Reader, n: number): Promise<void> {
  const target = Atomics.load(r.ctl, 1) + n;
  while (Atomics.load(r.ctl, 1) < target) await new Promise((res) => setTimeout(res, 0));
}

function withSharedTable(
  m: number,
  n: number,
  fn: (t: MaglevTable, name: string) => Promise<void>,
) {
  return async () => {
    const name = tempShmName("conc");
    const mapping = createShm(name, tableSize(m, n));
    try {
      await fn(initTable(mapping.buffer, m, n, 0), name);
    } finally {
      mapping.close();
      removeShm(name);
    }
  };
}

Deno.test(
  "activate/deactivate never expose 'no target' to a concurrent reader",
  withSharedTable(9973, 32, async (t, name) => {
    activate(t, [100, 101, 102, 103]);
    const reader = await startReader(name, 2);
    try {
      // The grace period the CLI uses is 20 ms; 2 ms keeps this test fast and is still
      // far longer than a reader needs between loading lookup[j] and active[a].
      const grace = () => sleepSync(2);
      for (let i = 0; i < 200; i++) {
        deactivate(t, [101, 102], grace);
        activate(t, [104, 101], grace);
        activateIndex(t, 7, 200 + (i % 5), grace);
        deactivate(t, [104], grace);
        if (i % 2 === 0) deactivateIndex(t, 7, grace);
        activate(t, [102], grace);
        if (i % 20 === 0) await scans(reader, 1);
      }
      await scans(reader, 2);
    } finally {
      await reader.stop();
    }
    assert.ok(Atomics.load(reader.ctl, 1) > 10, "the reader scanned the table");
    assert.equal(Atomics.load(reader.ctl, 2), 0, "scans that saw a 'no target' entry");
    const scanned = Atomics.load(reader.ctl, 1);
    assert.ok(Atomics.load(reader.ctl, 4) < scanned / 2, "most scans conclusive");
  }),
);

Deno.test(
  "control: 1.2.0's update order (fill −1, then rebuild in place) is caught by the reader",
  withSharedTable(65521, 8, async (t, name) => {
    activate(t, [100, 101]);
    const reader = await startReader(name);
    try {
      const deadline = Date.now() + 10_000;
      while (Atomics.load(reader.ctl, 2) === 0 && Date.now() < deadline) {
        t.active[1] = t.active[1] < 0 ? 101 : -1;
        t.lookup.fill(-1);
        populate(t.permutation, t.active, t.m, t.lookup);
        await new Promise((r) => setTimeout(r, 0));
      }
    } finally {
      await reader.stop();
    }
    assert.ok(Atomics.load(reader.ctl, 2) > 0, "the reader detected the -1 window");
  }),
);
