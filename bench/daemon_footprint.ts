/**
 * Footprint of an idle daemon, as root: how long `nfqlb flowlb` (or `lb`) takes from exec until
 * every queue is bound (its last `queue_length=` line on stdout), then, once it has sat idle for
 * `--idle` seconds, its resident memory (`VmRSS`) and thread count (`Threads`, from
 * /proc/<pid>/status) and the CPU it used while idle (utime + stime over `--cpu` seconds).
 *
 * Each run starts the daemon in a namespace of its own (no packets reach it), with its own
 * `--ft_shm`, trace object and control socket, and stops it with SIGTERM (it must exit 0).
 * `--baseline-cli=OTHER_CHECKOUT/cli.ts` adds the same daemon of another checkout, started
 * alternately with this one, so a change is a same-run comparison. The table shows medians.
 *
 * Usage: deno run --allow-all bench/daemon_footprint.ts [--runs=5] [--idle=2] [--cpu=0]
 *   [--baseline-cli=PATH] [--args="flowlb --promiscuous_ping --queue=0:3 --qlength=1024"]
 *
 * `--args` is the daemon's command line after `nfqlb` (default: Meridio's flowlb); `lb` needs a
 * `--tshm` table, which the benchmark creates when the command is `lb` and none is given.
 * @module
 */
import { exec, isRoot, withTestNet } from "../testkit/netns.ts";

const OPTIONS = ["runs", "idle", "cpu", "baseline-cli", "args"];
const opt = new Map<string, string>();
for (const a of Deno.args) {
  const m = /^--([a-z-]+)=(.*)$/.exec(a);
  if (m === null || !OPTIONS.includes(m[1])) {
    console.error(
      "usage: deno run -A bench/daemon_footprint.ts [--runs=5] [--idle=2] [--cpu=0] " +
        '[--baseline-cli=PATH] [--args="flowlb ..."]',
    );
    Deno.exit(2);
  }
  opt.set(m[1], m[2]);
}
if (!isRoot()) {
  console.error("daemon_footprint: needs root (network namespaces, NFQUEUE)");
  Deno.exit(1);
}
const RUNS = Number(opt.get("runs") ?? 5);
const IDLE_S = Number(opt.get("idle") ?? 2);
const CPU_S = Number(opt.get("cpu") ?? 0);
const ARGS = (opt.get("args") ?? "flowlb --promiscuous_ping --queue=0:3 --qlength=1024")
  .split(/\s+/).filter((a) => a !== "");
const DENO = Deno.execPath();
const CLIS: [string, string][] = [["this", new URL("../cli.ts", import.meta.url).pathname]];
const base = opt.get("baseline-cli");
if (base !== undefined) CLIS.push(["base", base]);
const token = `${Deno.pid}-${crypto.getRandomValues(new Uint32Array(1))[0].toString(36)}`;
const TSHM = `nfqlbfp-${token}`;
const TICKS = 100; // USER_HZ

/** The number of `queue_length=` lines the daemon prints: one per queue of `--queue`. */
function queueCount(args: string[]): number {
  const q = args.find((a) => a.startsWith("--queue="))?.slice(8) ?? "2";
  const [a, b] = q.split(":").map(Number);
  return b === undefined ? 1 : b - a + 1;
}

/** The deno process below `pid` (the `ip netns exec` / `env` wrappers exec or fork it). */
function denoBelow(pid: number): number {
  const stack = [pid];
  while (stack.length > 0) {
    const p = stack.pop()!;
    try {
      if (Deno.readLinkSync(`/proc/${p}/exe`).endsWith("/deno")) return p;
      for (const t of Deno.readDirSync(`/proc/${p}/task`)) {
        const kids = Deno.readTextFileSync(`/proc/${p}/task/${t.name}/children`).trim();
        for (const k of kids.split(/\s+/)) if (k !== "") stack.push(Number(k));
      }
    } catch { /* gone */ }
  }
  return pid;
}

/** A field of /proc/<pid>/status, as a number (kB for VmRSS). */
function status(pid: number, field: string): number {
  const text = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(new RegExp(`^${field}:\\s+(\\d+)`, "m").exec(text)?.[1] ?? NaN);
}

/** utime + stime of `pid` in ticks. */
function cpuTicks(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]);
}

interface Sample {
  readyMs: number;
  rssMb: number;
  threads: number;
  cpuPct: number;
}

async function runOnce(cli: string, ns: string, run: number): Promise<Sample> {
  const args = [...ARGS];
  if (args[0] === "lb" && !args.some((a) => a.startsWith("--tshm="))) args.push(`--tshm=${TSHM}`);
  const name = `${token}-${run}`;
  const cmd = [
    "ip",
    "netns",
    "exec",
    ns,
    "env",
    `NFQLB_FLOW_ADDRESS=unix:nfqlbfp-${name}`,
    `NFQLB_TRACE_SHM=nfqlb-trace.fp-${name}`,
    DENO,
    "run",
    "-A",
    cli,
    ...args,
    `--ft_shm=nfqlbfp-ft-${name}`,
  ];
  const want = queueCount(args);
  const t0 = performance.now();
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let readyMs = NaN;
  let seen = 0;
  let buf = "";
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  while (seen < want) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    const lines = buf.split("\n");
    buf = lines.pop()!;
    for (const l of lines) if (l.startsWith("queue_length=")) seen++;
  }
  if (seen === want) readyMs = performance.now() - t0;
  else {
    await child.status;
    throw new Error(`${cli}: not ready: ${await stderr}`);
  }
  const drain = (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })();
  const pid = denoBelow(child.pid);
  try {
    await new Promise((r) => setTimeout(r, IDLE_S * 1000));
    const rssMb = status(pid, "VmRSS") / 1024;
    const threads = status(pid, "Threads");
    let cpuPct = NaN;
    if (CPU_S > 0) {
      const c0 = cpuTicks(pid);
      await new Promise((r) => setTimeout(r, CPU_S * 1000));
      cpuPct = (cpuTicks(pid) - c0) / TICKS / CPU_S * 100;
    }
    return { readyMs, rssMb, threads, cpuPct };
  } finally {
    Deno.kill(pid, "SIGTERM");
    const s = await child.status;
    await drain;
    const err = await stderr;
    if (s.code !== 0) console.error(`${cli}: exit ${s.code}\n${err}`);
    for (const n of [`nfqlbfp-ft-${name}`, `nfqlb-trace.fp-${name}`]) {
      try {
        Deno.removeSync(`/dev/shm/${n}`);
      } catch { /* not created */ }
    }
  }
}

const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const samples = new Map<string, Sample[]>(CLIS.map(([l]) => [l, []]));
const cli0 = CLIS[0][1];
if (ARGS[0] === "lb") {
  await exec([DENO, "run", "-A", cli0, "init", `--shm=${TSHM}`, "--M=997", "--N=8"]);
}
try {
  await withTestNet(async (net) => {
    const ns = await net.addNs("footprint");
    for (let r = 0; r < RUNS; r++) {
      for (const [label, cli] of r % 2 === 0 ? CLIS : [...CLIS].reverse()) {
        const s = await runOnce(cli, ns, r);
        samples.get(label)!.push(s);
        console.error(`run ${r} ${label}: ${JSON.stringify(s)}`);
      }
    }
  });
} finally {
  if (ARGS[0] === "lb") await exec([DENO, "run", "-A", cli0, "delete", `--shm=${TSHM}`]);
}
console.log(`nfqlb ${ARGS.join(" ")}: medians of ${RUNS} runs, idle ${IDLE_S} s`);
console.log("| | ready (ms) | VmRSS (MB) | threads | idle CPU (% of a core) |");
console.log("|---|---:|---:|---:|---:|");
for (const [label, s] of samples) {
  const m = (k: keyof Sample) => median(s.map((x) => x[k]));
  console.log(
    `| ${label} | ${m("readyMs").toFixed(0)} | ${m("rssMb").toFixed(1)} | ${m("threads")} | ` +
      `${CPU_S > 0 ? m("cpuPct").toFixed(2) : "–"} |`,
  );
}
