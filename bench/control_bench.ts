/**
 * The flow control server under hostile load (root, private network namespace):
 * `deno run -A bench/control_bench.ts [runs]`. Prints, per run and as medians: root `flow-list`
 * latency while uid 65534 holds 500 idle connections, 150 concurrent `flow-set` (OK count, total
 * time), the log lines a flood of 20k garbage requests produces, and flowlb's RSS before/after.
 */
import { withTestNet } from "../testkit/netns.ts";
import { LineProcess } from "../testkit/line_process.ts";

const NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
const CLI = new URL("../cli.ts", import.meta.url).pathname;
const CLIENTS = new URL("../testkit/fixtures/control_clients.py", import.meta.url).pathname;
const runs = Number(Deno.args[0] ?? 3);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rssKb = (pid: number) =>
  Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))?.[1] ?? NaN);

const results: Record<string, number[]> = {};
const note = (k: string, v: number) => (results[k] ??= []).push(v);

for (let run = 0; run < runs; run++) {
  const shm = `ctlbench-${Deno.pid}-${run}`;
  await withTestNet(async (net) => {
    const ns = await net.addNs(`ctlb${run}`);
    const client = async (args: string[], prefix: string[] = []) => {
      const r = await net.exec(ns, [...prefix, "/usr/bin/python3", CLIENTS, ...args]);
      if (r.code !== 0) throw new Error(r.stderr);
      return JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    };
    await net.exec(ns, [
      Deno.execPath(),
      "run",
      "-A",
      CLI,
      "init",
      `--shm=${shm}`,
      "--M=997",
      "--N=8",
    ]);
    const lb = new LineProcess(net, ns, [
      "env",
      "NFQLB_FLOW_ADDRESS=unix:nfqlb",
      Deno.execPath(),
      "run",
      "-A",
      CLI,
      "flowlb",
      "--queue=0",
    ], "flowlb");
    try {
      await lb.waitLine(/^queue_length=/);
      const hold = new LineProcess(
        net,
        ns,
        [...NOBODY, "/usr/bin/python3", CLIENTS, "hold", "500"],
        "hold",
      );
      await hold.waitLine(/"held"/);
      const lat: number[] = [];
      for (let i = 0; i < 5; i++) lat.push((await client(["list"])).ms);
      note("flow-list ms (500 idle hostile)", median(lat));
      const sets = await client(["sets", "150", shm]);
      note("150 concurrent flow-set: OK", sets.ok);
      note("150 concurrent flow-set: total ms", sets.ms);
      await hold.finish();
      note("RSS before flood (MB)", rssKb(lb.pid) / 1024);
      const flood = await client(["flood", "20000"], NOBODY);
      note("20k garbage requests: ms", flood.ms);
      note("RSS after flood (MB)", rssKb(lb.pid) / 1024);
      note("flow-list ms after flood", (await client(["list"])).ms);
    } finally {
      Deno.kill(lb.pid, "SIGTERM");
      const end = await lb.finish();
      note("stderr lines (whole run)", end.stderr.split("\n").filter((l) => l !== "").length);
      await net.exec(ns, [Deno.execPath(), "run", "-A", CLI, "delete", `--shm=${shm}`]);
    }
  });
}
for (const [k, v] of Object.entries(results)) {
  console.log(
    `${k}: median ${median(v).toFixed(1)} (runs: ${v.map((x) => x.toFixed(1)).join(", ")})`,
  );
}
