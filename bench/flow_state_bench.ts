/**
 * Restore of a `--flow-state` file at `flowlb` start (daemon/flow_state_file.ts): seconds to
 * read, check and bulk-load files of 2k / 5k / 10k flows, with a real target table mapped per
 * flow as the control worker does (one `nfqlb init` table shared by all flows), next to the
 * sequential `set` per flow the restore used before. Median of `--runs` (default 5).
 *
 *   deno run -A bench/flow_state_bench.ts [--runs=5]
 */
import { restoreFlowState, writeFlowStateFile } from "../daemon/flow_state_file.ts";
import { mappableTargets as targets } from "../daemon/open_table.ts";
import { encodeFlowState } from "../lib/flow/state_file.ts";
import { FlowStore } from "../lib/flow/store.ts";
import { removeShm, runCli, tempShmName } from "../testkit/cli.ts";

const runs = Number(Deno.args.find((a) => a.startsWith("--runs="))?.slice(7) ?? 5);
const SIZES = [2000, 5000, 10000];

const table = tempShmName("fsbench");
const init = await runCli("init", `--shm=${table}`, "--M=997", "--N=10");
if (init.code !== 0) throw new Error(`init: ${init.err}`);

const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const dir = await Deno.makeTempDir({ prefix: "nfqlb-fsbench-" });
try {
  console.log(`flows   restore (bulk, s)   sequential set (old restore, s)   median of ${runs}`);
  for (const n of SIZES) {
    const src = new FlowStore(targets);
    for (let i = 0; i < n; i++) {
      src.setMany([{
        name: `f${i}`,
        target: table,
        priority: String(i % 7),
        protocols: "tcp,udp",
        dsts: `10.${(i >> 8) & 255}.${i & 255}.0/24`,
        dports: String(1000 + i),
      }]);
    }
    const path = `${dir}/flows-${n}.json`;
    writeFlowStateFile(path, encodeFlowState(src.flows.snapshot.flows, []));
    const bulk: number[] = [];
    const seq: number[] = [];
    for (let r = 0; r < runs; r++) {
      const store = new FlowStore(targets);
      const t0 = performance.now();
      const restored = restoreFlowState(store, path, (l) => console.error(l));
      bulk.push((performance.now() - t0) / 1000);
      if (restored !== n) throw new Error(`restored ${restored} of ${n}`);
    }
    const fields = src.flows.snapshot.flows.map((f) => ({
      name: f.name,
      target: table,
      priority: String(f.priority),
    }));
    for (let r = 0; r < Math.min(runs, 3); r++) {
      const store = new FlowStore(targets);
      const t0 = performance.now();
      for (const f of fields) store.set(f);
      seq.push((performance.now() - t0) / 1000);
    }
    console.log(
      `${String(n).padStart(5)}   ${median(bulk).toFixed(3).padStart(17)}   ` +
        `${median(seq).toFixed(3).padStart(31)}`,
    );
  }
} finally {
  await Deno.remove(dir, { recursive: true });
  removeShm(table);
}
