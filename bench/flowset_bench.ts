/**
 * Sequential `flow-set` on an idle `nfqlb flowlb` (issue 12, item 2), as root: a private
 * network namespace, `flowlb --queue=0:3` in it (no traffic), then `--count` flow-set requests
 * one after the other from one client process in the namespace (the CLI run in-process, so the
 * figure is the daemon's answer time, not process start-up). Each request changes the flow set,
 * so each reply waits until all four queue threads use it. Prints the total and per-request
 * median, `--runs` times.
 *
 * Usage: deno run --allow-all bench/flowset_bench.ts [--count=200] [--runs=3]
 * @module
 */
import { runCli } from "../testkit/cli.ts";
import { withTestNet } from "../testkit/netns.ts";
import { LineProcess } from "../testkit/line_process.ts";

const opt = new Map<string, string>();
for (const a of Deno.args) {
  const m = /^--([^=]+)=(.*)$/.exec(a);
  if (m !== null) opt.set(m[1], m[2]);
}
const count = Number(opt.get("count") ?? "200");
const runs = Number(opt.get("runs") ?? "3");

if (Deno.args.includes("--inner")) {
  // In the namespace: the client side.
  const times: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    const r = await runCli(
      "flow-set",
      `--name=f${i % 10}`,
      `--prio=${i}`,
      "--protocols=udp",
      `--target=${opt.get("table")}`,
    );
    times.push(performance.now() - t);
    if (r.code !== 0 || r.out !== "OK\n") throw new Error(`flow-set ${i}: ${r.out}${r.err}`);
  }
  const total = performance.now() - t0;
  times.sort((a, b) => a - b);
  console.log(JSON.stringify({ total, median: times[times.length >> 1] }));
  Deno.exit(0);
}

const DENO = Deno.execPath();
const CLI = new URL("../cli.ts", import.meta.url).pathname;
const SELF = new URL(import.meta.url).pathname;
const ENV = ["env", "NFQLB_FLOW_ADDRESS=unix:nfqlb-bench"];
const ft = `nfqlbbench-${Deno.pid}-ft`;
const table = `nfqlbbench-${Deno.pid}-t`;
try {
  const init = await runCli("init", `--shm=${table}`, "--M=997", "--N=4");
  if (init.code !== 0) throw new Error(init.err);
  await withTestNet(async (net) => {
    const ns = await net.addNs("fs");
    const d = new LineProcess(
      net,
      ns,
      [...ENV, DENO, "run", "--allow-all", CLI, "flowlb", "--queue=0:3", `--ft_shm=${ft}`],
      "flowlb",
    );
    await d.waitLines(/^queue_length=/, 4);
    const totals: number[] = [];
    for (let r = 0; r < runs; r++) {
      const out = await net.run(ns, [
        ...ENV,
        DENO,
        "run",
        "--allow-all",
        SELF,
        "--inner",
        `--count=${count}`,
        `--table=${table}`,
      ]);
      const res = JSON.parse(out.trim().split("\n").at(-1)!) as { total: number; median: number };
      totals.push(res.total);
      console.log(
        `run ${r + 1}: ${count} sequential flow-set in ${res.total.toFixed(0)} ms ` +
          `(median ${res.median.toFixed(2)} ms each)`,
      );
    }
    totals.sort((a, b) => a - b);
    console.log(`median total: ${totals[totals.length >> 1].toFixed(0)} ms for ${count} flow-set`);
    Deno.kill(d.pid, "SIGTERM");
    await d.finish();
  });
} finally {
  for (const name of [ft, table]) {
    try {
      Deno.removeSync(`/dev/shm/${name}`);
    } catch {
      // not created
    }
  }
}
