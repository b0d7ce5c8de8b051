/**
 * What a daemon that receives no packet costs, as root (issue 20: a sleeping daemon should cost
 * nothing): each command line runs in a network namespace of its own, is given
 * {@link SETTLE_MS} to start, then the CPU time of each of its threads (`/proc/PID/task/TID/
 * schedstat`, nanoseconds) is taken over `--seconds`. Printed: the median over `--runs` of the
 * process's share of one core, and the threads of the median run by name.
 *
 * With `--base=DIR` (another checkout's root, e.g. `git archive` of an older commit) each command
 * line runs from both trees, alternating, in the same run (A: `--base`, B: this tree).
 *
 * Usage: deno run --allow-all bench/idle_cpu.ts [--runs=3] [--seconds=10] [--base=DIR] [--only=N,..]
 * @module
 */
import { main } from "../cli/main.ts";
import { isRoot, TestNet } from "../testkit/netns.ts";

const opt = new Map(Deno.args.map((a) => {
  const m = /^--([^=]+)=(.*)$/.exec(a);
  if (m === null) throw new Error(`bad argument ${a}`);
  return [m[1], m[2]] as [string, string];
}));
const RUNS = Number(opt.get("runs") ?? "3");
const SECONDS = Number(opt.get("seconds") ?? "10");
const BASE = opt.get("base");
/** Time from spawn to the first sample: start-up is not idling. */
const SETTLE_MS = 3000;
if (!isRoot()) {
  console.error("idle_cpu: needs root");
  Deno.exit(1);
}

const io = {
  out: () => {},
  err: (s: string) => Deno.stderr.writeSync(new TextEncoder().encode(s)),
};
const token = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
const tshm = `nfqlbidle-${token}`;
const DENO = Deno.execPath();
const HERE = new URL("../cli.ts", import.meta.url).pathname;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

/** The command lines measured (the `--ft_shm`, table and port made unique per run). */
const COMMANDS: { name: string; args: (n: number) => string[] }[] = [
  { name: "lb --queue=0", args: () => ["lb", `--tshm=${tshm}`, "--queue=0"] },
  {
    name: "flowlb --promiscuous_ping --queue=0:3 --qlength=1024",
    args: () => ["flowlb", "--promiscuous_ping", "--queue=0:3", "--qlength=1024"],
  },
  {
    name: "lb --queue=0 --fastpath",
    args: (n) => ["lb", `--tshm=${tshm}`, "--queue=0", "--fastpath", `--fastpath-table=idle${n}`],
  },
  {
    name: "flowlb --queue=0:3 --metrics --fastpath",
    args: (n) => [
      "flowlb",
      "--queue=0:3",
      `--metrics=127.0.0.1:${9300 + n % 500}`,
      "--fastpath",
      `--fastpath-table=idle${n}`,
    ],
  },
];

/** CPU time, ns, of each thread of `pid` by "tid comm". */
function threadTimes(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const ns = Number(
        Deno.readTextFileSync(`/proc/${pid}/task/${e.name}/schedstat`).split(" ")[0],
      );
      const comm = Deno.readTextFileSync(`/proc/${pid}/task/${e.name}/comm`).trim();
      out.set(`${e.name} ${comm}`, ns);
    } catch {
      // the thread ended
    }
  }
  return out;
}

interface Sample {
  share: number;
  threads: [string, number][];
}

async function measure(net: TestNet, cli: string, args: string[]): Promise<Sample> {
  const ns = await net.addNs(`i${crypto.getRandomValues(new Uint32Array(1))[0].toString(36)}`);
  const ft = `${tshm}-ft-${crypto.getRandomValues(new Uint32Array(1))[0].toString(36)}`;
  const child = net.spawn(ns, [DENO, "run", "-A", cli, ...args, `--ft_shm=${ft}`]);
  try {
    await sleep(SETTLE_MS);
    const a = threadTimes(child.pid);
    const t0 = performance.now();
    await sleep(SECONDS * 1000);
    const b = threadTimes(child.pid);
    const wall = (performance.now() - t0) * 1e6;
    const threads: [string, number][] = [...b].map(([k, v]) => [k, (v - (a.get(k) ?? 0)) / wall]);
    threads.sort((x, y) => y[1] - x[1]);
    return { share: threads.reduce((s, [, v]) => s + v, 0), threads };
  } finally {
    try {
      child.kill("SIGTERM");
    } catch {
      // gone
    }
    const out = await child.output();
    const err = new TextDecoder().decode(out.stderr).trim();
    if (out.code !== 0 && !/^\s*$/.test(err)) console.error(`${args[0]} stderr:\n${err}`);
    try {
      Deno.removeSync(`/dev/shm/${ft}`);
    } catch {
      // not there
    }
  }
}

const only = opt.get("only")?.split(",").map(Number);
const trees: [string, string][] = BASE === undefined
  ? [["this tree", HERE]]
  : [["A: base", `${BASE}/cli.ts`], ["B: this tree", HERE]];
await main("nfqlb", ["init", `--shm=${tshm}`, "--M=997", "--N=32"], io);
await main("nfqlb", ["activate", `--shm=${tshm}`, "101", "102"], io);
const net = await TestNet.create();
let n = Math.floor(Math.random() * 1000);
try {
  console.log(
    `\n### Idle CPU, share of one core: ${SECONDS} s idle after ${SETTLE_MS} ms, median of ${RUNS}\n`,
  );
  console.log(`| command line | ${trees.map((t) => t[0]).join(" | ")} |`);
  console.log(`| --- | ${trees.map(() => "---:").join(" | ")} |`);
  for (const [i, c] of COMMANDS.entries()) {
    if (only !== undefined && !only.includes(i)) continue;
    const results = trees.map(() => [] as Sample[]);
    for (let r = 0; r < RUNS; r++) {
      for (const [j, [, cli]] of trees.entries()) {
        results[j].push(await measure(net, cli, c.args(n++)));
      }
    }
    const cells = results.map((s) => `${(median(s.map((x) => x.share)) * 100).toFixed(2)}%`);
    console.log(`| \`${c.name}\` | ${cells.join(" | ")} |`);
    for (const [j, s] of results.entries()) {
      const mid = [...s].sort((x, y) => x.share - y.share)[Math.floor(s.length / 2)];
      const top = mid.threads.filter(([, v]) => v >= 0.0002)
        .map(([k, v]) => `${k.replace(/^\d+ /, "")} ${(v * 100).toFixed(2)}%`);
      console.error(`  ${trees[j][0]}: ${mid.threads.length} threads; ${top.join(", ")}`);
    }
  }
} finally {
  await net.cleanup();
  await main("nfqlb", ["delete", `--shm=${tshm}`], io);
}
