/**
 * The flow control server under hostile load (root, private network namespace):
 * `deno run -A bench/control_bench.ts [runs] [--slow-readers]`. Prints, per run and as medians: root `flow-list`
 * latency while uid 65534 holds 500 idle connections, 150 concurrent `flow-set` (OK count, total
 * time), the log lines a flood of 20k garbage requests produces, and flowlb's RSS before/after;
 * then, with 1500 flows (a 380 kB list) and 31 connections of uid 65534 that ask for the list
 * and read 16 bytes a second (one reads nothing), the latency of root's `flow-set` (goal: under
 * 100 ms) and `flow-list`, medians of 8 and 2 per run, next to the same without those readers
 * (a `flow-set` of 1500 flows costs tens of ms by itself: every queue thread compiles the new
 * set before the reply). `--slow-readers` runs only that part.
 */
import { withTestNet } from "../testkit/netns.ts";
import { LineProcess } from "../testkit/line_process.ts";
import {
  CONTROL_CLIENTS,
  controlClient,
  flowlbIn,
  longFlowState,
  nfqlbIn,
  NOBODY,
  untilAccepted,
} from "../testkit/control_load.ts";

/** What the control clients report (the fields the benchmark reads). */
type Reply = { ms: number; ok: number; reply: string };
const runs = Number(Deno.args.find((a) => /^\d+$/.test(a)) ?? 3);
const slowOnly = Deno.args.includes("--slow-readers");

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rssKb = (pid: number) =>
  Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))?.[1] ?? NaN);

const results: Record<string, number[]> = {};
const note = (k: string, v: number) => (results[k] ??= []).push(v);

for (let run = 0; run < (slowOnly ? 0 : runs); run++) {
  const shm = `ctlbench-${Deno.pid}-${run}`;
  await withTestNet(async (net) => {
    const ns = await net.addNs(`ctlb${run}`);
    const client = (args: string[], prefix: string[] = []) =>
      controlClient<Reply>(net, ns, args, prefix);
    await nfqlbIn(net, ns, "init", `--shm=${shm}`, "--M=997", "--N=8");
    const lb = flowlbIn(net, ns, []);
    try {
      await lb.waitLine(/^queue_length=/);
      const hold = new LineProcess(
        net,
        ns,
        [...NOBODY, ...CONTROL_CLIENTS, "hold", "500"],
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
      await nfqlbIn(net, ns, "delete", `--shm=${shm}`);
    }
  });
}
// Slow readers: 1500 flows, 31 connections of uid 65534 reading their lists 16 bytes a second.
for (let run = 0; run < runs; run++) {
  const shm = `ctlbenchs-${Deno.pid}-${run}`;
  const dir = Deno.makeTempDirSync({ prefix: "nfqlb-ctlbench-" });
  await withTestNet(async (net) => {
    const ns = await net.addNs(`ctls${run}`);
    const client = (args: string[]) => controlClient<Reply>(net, ns, args);
    await nfqlbIn(net, ns, "init", `--shm=${shm}`, "--M=997", "--N=8");
    const state = `${dir}/flows.json`;
    Deno.writeTextFileSync(state, longFlowState(1500, shm), { mode: 0o600 });
    const lb = flowlbIn(net, ns, [`--flow-state=${state}`]);
    let slow: LineProcess | null = null;
    /** Medians of 8 root flow-sets and 2 root flow-lists, noted under `label`. */
    const measure = async (label: string) => {
      const sets: number[] = [];
      for (let i = 0; i < 8; i++) {
        const r = await client(["set", `root${i}`, shm]);
        if (r.reply !== "OK") throw new Error(`flow-set: ${r.reply}`);
        sets.push(r.ms);
      }
      const lists: number[] = [];
      for (let i = 0; i < 2; i++) lists.push((await client(["list"])).ms);
      note(`root flow-set ms (1500 flows, ${label})`, median(sets));
      note(`root flow-list ms (1500 flows, ${label})`, median(lists));
    };
    try {
      await lb.waitLine(/^queue_length=/);
      await measure("idle");
      slow = new LineProcess(
        net,
        ns,
        [...NOBODY, ...CONTROL_CLIENTS, "slowlist", "31", "16", "1"],
        "slowlist",
      );
      await slow.waitLine(/"asked"/);
      await untilAccepted(net, ns, "@nfqlb");
      await measure("31 slow readers");
    } finally {
      await slow?.finish();
      Deno.kill(lb.pid, "SIGTERM");
      await lb.finish();
      await nfqlbIn(net, ns, "delete", `--shm=${shm}`);
      Deno.removeSync(dir, { recursive: true });
    }
  });
}

for (const [k, v] of Object.entries(results)) {
  console.log(
    `${k}: median ${median(v).toFixed(1)} (runs: ${v.map((x) => x.toFixed(1)).join(", ")})`,
  );
}
