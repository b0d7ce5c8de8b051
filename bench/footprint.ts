/**
 * Footprint of the daemons and the CLI on this machine, as root, in network namespaces it
 * creates and removes (issue 20's table):
 *
 * 1. **Daemons, idle**: each daemon configuration (Meridio's command line `flowlb
 *    --promiscuous_ping --queue=0:3 --qlength=1024`, the same with `--metrics --fastpath`,
 *    `lb --queue=0:3`, `lb --queue=0`, `lb --queue=0 --fastpath`) is started, and once it is
 *    ready and has settled (`--settle` ms) its CPU time (utime + stime from `/proc/PID/stat`,
 *    all threads) is read over `--idle-seconds` with no packets, as % of one core; then its
 *    VmRSS, VmHWM, RssAnon, RssFile and thread count (`/proc/PID/status`, summed over the process
 *    and any descendants).
 * 2. **Start → ready**: each configuration started `--starts` times, alternately, from the spawn
 *    (`ip netns exec` → `deno run cli.ts ...`, as a service manager would exec it) to: every
 *    queue bound (the queues' rows in the namespace's `/proc/net/netfilter/nfnetlink_queue`,
 *    polled every ms), every `queue_length=` line printed, and ready: queues bound, and for
 *    flowlb its control socket listening (`/proc/net/unix`), with `--metrics` the metrics port
 *    listening (`/proc/net/tcp`). Medians. Each start ends with SIGTERM and the exit.
 * 3. **CLI**: one command's wall time, spawn → exit, median of `--runs`, for `show`,
 *    `flow-list` and `flow-set`, run in the namespace of a running Meridio flowlb, with `deno run
 *    cli.ts` and with the bundle (`dist/nfqlb`, built with `scripts/bundle.ts` when missing or
 *    older than a source file), alternately; next to two floors: `ip netns exec NS env true`
 *    and `deno run` of an empty module (Deno's own start).
 * 4. **Steady state**: a Meridio flowlb with a flow of udp to the table gets, per round
 *    (`--rounds`), `--packets` UDP datagrams handled by its four queues (`bench/c/udp_flood.c`
 *    from four client addresses, one per queue by `--queue-num` rules, 64 bytes, in 1 s bursts
 *    until the queues' `id_sequence` minus `user_dropped` reach the count), then
 *    `--flow-changes` flow-set + flow-delete cycles over its control socket (a python3 client,
 *    one connection per request); VmRSS after each step. Growth after the first round is what
 *    the issue calls "no growth".
 *
 * Every daemon gets its own `--ft_shm` object (and `lb` a `--tshm` table) with a name unique to
 * this run, removed at the end, also on failure or SIGINT.
 *
 * Usage: deno run --allow-all bench/footprint.ts [--json] [--sections=idle,ready,cli,steady]
 *   [--runs=30] [--starts=10] [--idle-seconds=10] [--settle=2000] [--packets=1000000]
 *   [--flow-changes=10000] [--rounds=2] [--bundle=PATH]
 *
 * `--json` prints one JSON object (set-up, options and every sample) instead of the markdown
 * tables; progress goes to stderr either way.
 * @module
 */
import { exec, isRoot, TestNet } from "../testkit/netns.ts";
import { LineProcess } from "../testkit/line_process.ts";
import { runCli } from "../testkit/cli.ts";
import { clockTicks, cpuSecondsOf, memoryOf, type MemoryUsage } from "../testkit/proc_usage.ts";

// ---------------------------------------------------------------- options

const SECTIONS = ["idle", "ready", "cli", "steady"] as const;
type Section = typeof SECTIONS[number];
const USAGE = "usage: deno run --allow-all bench/footprint.ts [--json] " +
  "[--sections=idle,ready,cli,steady] [--runs=30] [--starts=10] [--idle-seconds=10] " +
  "[--settle=2000] [--packets=1000000] [--flow-changes=10000] [--rounds=2] [--bundle=PATH]";
const VALUED = [
  "sections",
  "runs",
  "starts",
  "idle-seconds",
  "settle",
  "packets",
  "flow-changes",
  "rounds",
  "bundle",
];
const opt = new Map<string, string>();
if (Deno.args.includes("--help")) {
  console.log(USAGE);
  Deno.exit(0);
}
for (const a of Deno.args) {
  const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
  const ok = m !== null &&
    (m[1] === "json" ? m[2] === undefined : VALUED.includes(m[1]) && m[2] !== undefined);
  if (!ok) {
    console.error(`${USAGE}\nbad argument ${a}`);
    Deno.exit(2);
  }
  opt.set(m![1], m![2] ?? "");
}
function intOpt(name: string, dflt: number, min: number, max: number): number {
  const s = opt.get(name);
  if (s === undefined) return dflt;
  const v = Number(s);
  if (!Number.isInteger(v) || v < min || v > max) {
    console.error(`--${name}=${s}: expected an integer in ${min}..${max}`);
    Deno.exit(2);
  }
  return v;
}
const JSON_OUT = opt.has("json");
const RUNS = intOpt("runs", 30, 1, 10000);
const STARTS = intOpt("starts", 10, 1, 1000);
const IDLE_SECONDS = intOpt("idle-seconds", 10, 1, 3600);
const SETTLE_MS = intOpt("settle", 2000, 0, 600_000);
const PACKETS = intOpt("packets", 1_000_000, 0, 1e10);
const FLOW_CHANGES = intOpt("flow-changes", 10_000, 0, 1e7);
const ROUNDS = intOpt("rounds", 2, 1, 100);
const sections = new Set((opt.get("sections") ?? SECTIONS.join(",")).split(",") as Section[]);
if ([...sections].some((s) => !SECTIONS.includes(s))) {
  console.error(`--sections=${opt.get("sections")}: expected a comma list of ${SECTIONS}`);
  Deno.exit(2);
}
if (!isRoot()) {
  console.error("footprint: needs root (network namespaces, NFQUEUE)");
  Deno.exit(1);
}

// ---------------------------------------------------------------- constants

const DENO = Deno.execPath();
const ROOT = new URL("../", import.meta.url).pathname;
const CLI = `${ROOT}cli.ts`;
const BUNDLE = opt.get("bundle") ?? `${ROOT}dist/nfqlb`;
const METRICS_PORT = 9191;
const CONTROL = "nfqlb";
/** flowlb's control address and the commands' (an abstract unix socket of the namespace). */
const FLOW_ENV = ["env", `NFQLB_FLOW_ADDRESS=unix:${CONTROL}`];
const LB_ADDR = "10.207.0.1";
/** The client's addresses: the i-th sends to queue i (one `--queue-num` rule each). */
const CLIENTS = ["10.207.0.11", "10.207.0.12", "10.207.0.13", "10.207.0.14"];
const PORT = 9999;
const MARKS = ["201", "202", "203", "204"];
const token = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
const SHM_PREFIX = `nfqlbfoot-${Deno.pid}-${token}`;
const TSHM = `${SHM_PREFIX}-t`;

const T0 = performance.now();
const log = (t: string) => console.error(`[${((performance.now() - T0) / 1000).toFixed(1)}s] ${t}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

// ---------------------------------------------------------------- daemon configurations

/** One daemon command line measured. */
interface DaemonConfig {
  /** Short key (JSON). */
  key: string;
  /** The command line as shown (without the run's unique `--ft_shm`/`--tshm`). */
  label: string;
  kind: "lb" | "flowlb";
  args: string[];
  /** Queues it binds. */
  queues: number;
  /** `--metrics` port to wait for, if any. */
  metrics?: number;
}

const MERIDIO = ["--promiscuous_ping", "--queue=0:3", "--qlength=1024"];
const CONFIGS: DaemonConfig[] = [
  { key: "meridio", label: "", kind: "flowlb", args: MERIDIO, queues: 4 },
  {
    key: "meridio-metrics-fastpath",
    label: "",
    kind: "flowlb",
    args: [...MERIDIO, `--metrics=127.0.0.1:${METRICS_PORT}`, "--fastpath"],
    queues: 4,
    metrics: METRICS_PORT,
  },
  { key: "lb-4q", label: "", kind: "lb", args: ["--queue=0:3"], queues: 4 },
  { key: "lb", label: "", kind: "lb", args: ["--queue=0"], queues: 1 },
  { key: "lb-fastpath", label: "", kind: "lb", args: ["--queue=0", "--fastpath"], queues: 1 },
];
for (const c of CONFIGS) c.label = `${c.kind} ${c.args.join(" ")}`;
const meridio = CONFIGS[0];

// ---------------------------------------------------------------- clean-up

const net = await TestNet.create();
/** Shm objects this run may create (removed at the end if present). */
const shmObjects = new Set<string>([TSHM]);
/** The namespace's network-namespace inode: fast-path status objects carry it in their names. */
let netnsInode = "";
const running = new Set<LineProcess>();
let cleaned: Promise<void> | null = null;

function removeShmFile(name: string): void {
  try {
    Deno.removeSync(`/dev/shm/${name}`);
  } catch {
    // not there
  }
}

function cleanup(): Promise<void> {
  cleaned ??= (async () => {
    await Promise.all([...running].map((p) => stopDaemon(p).catch(() => undefined)));
    // A daemon killed before its exit leaves its fast-path status object (named by our netns).
    if (netnsInode !== "") {
      for (const e of Deno.readDirSync("/dev/shm")) {
        if (e.name.startsWith(`nfqlb-fastpath.${netnsInode}.`)) removeShmFile(e.name);
      }
    }
    await net.cleanup();
    for (const name of shmObjects) removeShmFile(name);
  })();
  return cleaned;
}
const onSignal = () => {
  log("footprint: interrupted; cleaning up");
  cleanup().finally(() => Deno.exit(130));
};
for (const s of ["SIGINT", "SIGTERM", "SIGHUP"] as const) Deno.addSignalListener(s, onSignal);

// ---------------------------------------------------------------- namespace probes

/** A process that lives in the LB namespace: its `/proc/PID/net/*` are the namespace's. */
let holderPid = 0;

function readProc(file: string): string {
  try {
    return Deno.readTextFileSync(`/proc/${holderPid}/net/${file}`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return "";
    throw e;
  }
}

/** Queues of `first..first+count-1` bound in the namespace (rows of nfnetlink_queue). */
function queuesBound(count: number): number {
  let n = 0;
  for (const l of readProc("netfilter/nfnetlink_queue").split("\n")) {
    const q = Number(l.trim().split(/\s+/)[0]);
    if (l.trim() !== "" && q >= 0 && q < count) n++;
  }
  return n;
}

/** Whether the abstract unix socket `@name` listens in the namespace. */
function unixListening(name: string): boolean {
  return readProc("unix").split("\n").some((l) => {
    const f = l.trim().split(/\s+/);
    return f[7] === `@${name}` && f[3] === "00010000";
  });
}

/** Whether something listens on 127.0.0.1:`port` (tcp) in the namespace. */
function tcpListening(port: number): boolean {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  return readProc("tcp").split("\n").some((l) => {
    const f = l.trim().split(/\s+/);
    return f[1] === local && f[3] === "0A";
  });
}

/** Per-queue counters of queues 0..count-1: handled = id_sequence - user_dropped. */
function queueHandled(count: number): { handled: number; perQueue: number[]; dropped: number } {
  const perQueue = Array.from({ length: count }, () => 0);
  let dropped = 0;
  for (const l of readProc("netfilter/nfnetlink_queue").split("\n")) {
    const f = l.trim().split(/\s+/).map(Number);
    if (f.length < 8 || f[0] >= count) continue;
    perQueue[f[0]] = f[7] - f[6];
    dropped += f[5];
  }
  return { handled: perQueue.reduce((a, b) => a + b, 0), perQueue, dropped };
}

// ---------------------------------------------------------------- daemons

/** Times from the spawn, ms. */
interface StartTimes {
  /** Every queue bound. */
  bound: number;
  /** Every `queue_length=` line printed. */
  printed: number;
  /** Bound, and the control socket (flowlb) and metrics port (`--metrics`) listening. */
  ready: number;
}

/** A running daemon and how long it took to get ready. */
interface Started {
  proc: LineProcess;
  pid: number;
  times: StartTimes;
}

let lbNs = "";
let clNs = "";
let ftCounter = 0;

/** Start `config` in the LB namespace and wait until it is ready (30 s at most). */
async function startDaemon(config: DaemonConfig): Promise<Started> {
  const ft = `${SHM_PREFIX}-ft${ftCounter++}`;
  shmObjects.add(ft);
  const cmd = [
    ...FLOW_ENV,
    DENO,
    "run",
    "--allow-all",
    CLI,
    config.kind,
    ...config.args,
    `--ft_shm=${ft}`,
    ...(config.kind === "lb" ? [`--tshm=${TSHM}`] : []),
  ];
  const t0 = performance.now();
  const proc = new LineProcess(net, lbNs, cmd, config.label);
  running.add(proc);
  let exited = false;
  proc.child.status.then(() => exited = true);
  const times: Partial<StartTimes> = {};
  const deadline = t0 + 30_000;
  while (times.ready === undefined || times.printed === undefined) {
    const now = performance.now() - t0;
    if (times.bound === undefined && queuesBound(config.queues) === config.queues) {
      times.bound = now;
    }
    if (
      times.printed === undefined &&
      proc.lines.filter((l) => l.startsWith("queue_length=")).length >= config.queues
    ) {
      times.printed = now;
    }
    if (
      times.ready === undefined && times.bound !== undefined &&
      (config.kind !== "flowlb" || unixListening(CONTROL)) &&
      (config.metrics === undefined || tcpListening(config.metrics))
    ) {
      times.ready = now;
    }
    if (exited || performance.now() > deadline) {
      const end = await stopDaemon(proc);
      throw new Error(
        `${config.label}: not ready (${JSON.stringify(times)}, exit ${end.code}):\n` +
          `${proc.lines.join("\n")}\n${end.stderr}`,
      );
    }
    if (times.ready === undefined || times.printed === undefined) await sleep(1);
  }
  return { proc, pid: proc.pid, times: times as StartTimes };
}

/** SIGTERM (SIGKILL after 5 s); wait for the exit and for its queues and sockets to go. */
async function stopDaemon(
  proc: LineProcess,
): Promise<{ code: number; stderr: string }> {
  try {
    Deno.kill(proc.pid, "SIGTERM");
  } catch {
    // already gone
  }
  const timer = setTimeout(() => {
    try {
      Deno.kill(proc.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }, 5000);
  const end = await proc.finish();
  clearTimeout(timer);
  running.delete(proc);
  for (let i = 0; i < 5000 && (queuesBound(4) > 0 || unixListening(CONTROL)); i++) await sleep(1);
  return { code: end.code, stderr: end.stderr };
}

/** Run `nfqlb <args>` in-process (table commands); throw on failure. */
async function nfqlb(...args: string[]): Promise<void> {
  const r = await runCli(...args);
  if (r.code !== 0) throw new Error(`nfqlb ${args.join(" ")}: exit ${r.code}: ${r.err}`);
}

/** Run a command in the LB namespace; its wall time from spawn to exit, ms. Throws on failure. */
async function timedRun(cmd: string[]): Promise<number> {
  const t0 = performance.now();
  const r = await exec(["ip", "netns", "exec", lbNs, ...cmd]);
  const ms = performance.now() - t0;
  if (r.code !== 0) throw new Error(`${cmd.join(" ")}: exit ${r.code}: ${r.stderr}`);
  return ms;
}

// ---------------------------------------------------------------- sections

/** Idle cost of one configuration. */
interface IdleResult {
  key: string;
  label: string;
  times: StartTimes;
  cpuPercent: number;
  memory: MemoryUsage;
  memoryAtReady: MemoryUsage;
}

async function idleSection(): Promise<IdleResult[]> {
  const out: IdleResult[] = [];
  for (const c of CONFIGS) {
    const d = await startDaemon(c);
    try {
      const memoryAtReady = memoryOf(d.pid);
      await sleep(SETTLE_MS);
      const cpu0 = cpuSecondsOf(d.pid);
      const w0 = performance.now();
      await sleep(IDLE_SECONDS * 1000);
      const cpu1 = cpuSecondsOf(d.pid);
      const wall = (performance.now() - w0) / 1000;
      const memory = memoryOf(d.pid);
      const r = {
        key: c.key,
        label: c.label,
        times: d.times,
        cpuPercent: (cpu1 - cpu0) / wall * 100,
        memory,
        memoryAtReady,
      };
      out.push(r);
      log(
        `idle ${c.label}: RSS ${mb(memory.rssKb)} MB (HWM ${mb(memory.hwmKb)}), ` +
          `${memory.threads} threads, CPU ${r.cpuPercent.toFixed(2)}% of a core`,
      );
    } finally {
      await stopDaemon(d.proc);
    }
  }
  return out;
}

/** Start → ready of one configuration, all starts. */
interface ReadyResult {
  key: string;
  label: string;
  samples: StartTimes[];
}

async function readySection(): Promise<ReadyResult[]> {
  const out = CONFIGS.map((c) => ({ key: c.key, label: c.label, samples: [] as StartTimes[] }));
  for (let r = 0; r < STARTS; r++) {
    for (let i = 0; i < CONFIGS.length; i++) {
      const d = await startDaemon(CONFIGS[i]);
      await stopDaemon(d.proc);
      out[i].samples.push(d.times);
    }
    log(
      `ready, start ${r + 1}/${STARTS}: ` +
        out.map((o) => `${o.key} ${o.samples.at(-1)!.ready.toFixed(0)} ms`).join(", "),
    );
  }
  return out;
}

/** One CLI command's wall times. */
interface CliResult {
  key: string;
  label: string;
  samples: number[];
}

/** The bundle: built when missing or older than any source file. */
async function ensureBundle(): Promise<string> {
  let newest = 0;
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(dir)) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory) walk(p);
      else if (e.name.endsWith(".ts")) newest = Math.max(newest, Deno.statSync(p).mtime!.getTime());
    }
  };
  for (const d of ["cli", "daemon", "lib", "ffi"]) walk(`${ROOT}${d}`);
  newest = Math.max(newest, Deno.statSync(CLI).mtime!.getTime());
  let built = 0;
  try {
    built = Deno.statSync(BUNDLE).mtime!.getTime();
  } catch {
    // missing
  }
  if (opt.has("bundle")) {
    if (built === 0) throw new Error(`--bundle=${BUNDLE}: not found`);
    return BUNDLE;
  }
  if (built < newest) {
    log(`building the bundle ${BUNDLE} (${built === 0 ? "missing" : "older than the sources"})`);
    const r = await new Deno.Command(DENO, {
      args: ["run", "--allow-all", `${ROOT}scripts/bundle.ts`, BUNDLE],
      cwd: ROOT,
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (!r.success) throw new Error("scripts/bundle.ts failed");
  }
  return BUNDLE;
}

async function cliSection(): Promise<CliResult[]> {
  const bundle = await ensureBundle();
  const empty = await Deno.makeTempFile({ prefix: "nfqlb-footprint-", suffix: ".ts" });
  try {
    await Deno.writeTextFile(empty, "export {};\n");
    const d = await startDaemon(meridio);
    try {
      const flowSet = [`--name=clibench`, `--target=${TSHM}`, "--protocols=udp"];
      const commands: [string, string[]][] = [
        ["show", ["show", `--shm=${TSHM}`]],
        ["flow-list", ["flow-list"]],
        ["flow-set", ["flow-set", ...flowSet]],
      ];
      const cases: { key: string; label: string; cmd: string[] }[] = [
        { key: "floor-netns", label: "floor: `ip netns exec NS env true`", cmd: ["env", "true"] },
        {
          key: "floor-deno",
          label: "floor: `deno run` of an empty module",
          cmd: [DENO, "run", "--allow-all", empty],
        },
      ];
      for (const [name, args] of commands) {
        for (const [how, entry] of [["cli.ts", CLI], ["bundle", bundle]]) {
          cases.push({
            key: `${name}:${how}`,
            label: `\`${name}\`, ${how === "bundle" ? "bundle (dist/nfqlb)" : "`deno run cli.ts`"}`,
            cmd: [...FLOW_ENV, DENO, "run", "--allow-all", entry, ...args],
          });
        }
      }
      // One untimed round first: Deno's module cache and the page cache are warm for all.
      for (const c of cases) await timedRun(c.cmd);
      const out = cases.map((c) => ({ key: c.key, label: c.label, samples: [] as number[] }));
      for (let r = 0; r < RUNS; r++) {
        for (let i = 0; i < cases.length; i++) out[i].samples.push(await timedRun(cases[i].cmd));
      }
      for (const o of out) log(`cli ${o.key}: median ${median(o.samples).toFixed(1)} ms`);
      return out;
    } finally {
      await stopDaemon(d.proc);
    }
  } finally {
    await Deno.remove(empty).catch(() => undefined);
  }
}

/** RSS of the steady-state daemon after one step. */
interface SteadySample {
  step: string;
  /** Packets handled and flow changes made so far. */
  packets: number;
  flowChanges: number;
  memory: MemoryUsage;
}

/** The UDP flood sender (bench/c/udp_flood.c), built into a temporary directory. */
async function buildFlood(dir: string): Promise<string> {
  const bin = `${dir}/udp_flood`;
  const r = await exec(["cc", "-O2", "-o", bin, `${ROOT}bench/c/udp_flood.c`]);
  if (r.code !== 0) throw new Error(`cc bench/c/udp_flood.c: ${r.stderr.trim()}`);
  return bin;
}

/** flow-set + flow-delete cycles over the control socket, one connection per request. */
const FLOW_CYCLES = `
import socket, sys, time
n, target = int(sys.argv[1]), sys.argv[2]
def request(text):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect("\\0${CONTROL}")
    s.sendall(text.encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    return data.split(b"\\0")[0].decode(errors="replace")
bad = 0
t = time.monotonic()
for i in range(n):
    name = "churn%d" % (i % 16)
    dport = 1000 + i % 50000
    if request("action:set\\nname:%s\\ntarget:%s\\nprotocols:udp\\ndports:%d\\neoc:\\n" % (name, target, dport)) != "OK":
        bad += 1
    if request("action:delete\\nname:%s\\neoc:\\n" % name) != "OK":
        bad += 1
print("%d %d %.3f" % (n, bad, time.monotonic() - t))
`;

interface SteadyResult {
  label: string;
  packetsPerRound: number;
  flowChangesPerRound: number;
  perQueue: number[];
  sendSeconds: number[];
  changeSeconds: number[];
  samples: SteadySample[];
}

async function steadySection(): Promise<SteadyResult> {
  const dir = await Deno.makeTempDir({ prefix: "nfqlb-footprint-" });
  try {
    const flood = PACKETS > 0 ? await buildFlood(dir) : "";
    const d = await startDaemon(meridio);
    const rules: string[][] = CLIENTS.map((src, q) => [
      "PREROUTING",
      "-s",
      src,
      "-p",
      "udp",
      "--dport",
      String(PORT),
      "-j",
      "NFQUEUE",
      "--queue-num",
      String(q),
    ]);
    try {
      for (const r of rules) await net.run(lbNs, ["iptables", "-t", "mangle", "-A", ...r]);
      await timedRun([
        ...FLOW_ENV,
        DENO,
        "run",
        "--allow-all",
        CLI,
        "flow-set",
        "--name=bench",
        `--target=${TSHM}`,
        "--protocols=udp",
      ]);
      await sleep(SETTLE_MS);
      const samples: SteadySample[] = [];
      let packets = 0;
      let flowChanges = 0;
      const sample = (step: string) => {
        const memory = memoryOf(d.pid);
        samples.push({ step, packets, flowChanges, memory });
        log(
          `steady ${step}: RSS ${mb(memory.rssKb)} MB (HWM ${mb(memory.hwmKb)}), ` +
            `${memory.threads} threads`,
        );
      };
      sample("ready");
      const start = queueHandled(4).handled;
      const sendSeconds: number[] = [];
      const changeSeconds: number[] = [];
      for (let round = 1; round <= ROUNDS; round++) {
        if (PACKETS > 0) {
          const goal = start + round * PACKETS;
          const t = performance.now();
          while (queueHandled(4).handled < goal) {
            await Promise.all(
              CLIENTS.map((src) =>
                net.run(clNs, [flood, src, LB_ADDR, String(PORT), "2", "64", "1"])
              ),
            );
          }
          sendSeconds.push((performance.now() - t) / 1000);
          packets = queueHandled(4).handled - start;
          sample(`round ${round}: after ${packets.toLocaleString("en-US")} packets`);
        }
        if (FLOW_CHANGES > 0) {
          const cycles = Math.ceil(FLOW_CHANGES / 2);
          const t = performance.now();
          const outText = await net.run(lbNs, ["python3", "-c", FLOW_CYCLES, String(cycles), TSHM]);
          changeSeconds.push((performance.now() - t) / 1000);
          const [, bad] = outText.trim().split(" ").map(Number);
          if (bad !== 0) throw new Error(`flow changes: ${bad} requests not answered OK`);
          flowChanges += 2 * cycles;
          sample(`round ${round}: after ${flowChanges.toLocaleString("en-US")} flow changes`);
        }
      }
      return {
        label: meridio.label,
        packetsPerRound: PACKETS,
        flowChangesPerRound: FLOW_CHANGES > 0 ? 2 * Math.ceil(FLOW_CHANGES / 2) : 0,
        perQueue: queueHandled(4).perQueue,
        sendSeconds,
        changeSeconds,
        samples,
      };
    } finally {
      await stopDaemon(d.proc);
      for (const r of rules) await net.exec(lbNs, ["iptables", "-t", "mangle", "-D", ...r]);
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => undefined);
  }
}

// ---------------------------------------------------------------- output

const mb = (kb: number) => (kb / 1024).toFixed(1);
const ms = (x: number) => Number.isNaN(x) ? "–" : `${x.toFixed(1)} ms`;

function printMarkdown(r: Results): void {
  const p = (s = "") => console.log(s);
  p(
    `### Footprint (${r.setup.cpus} CPUs, ${r.setup.kernel}, deno ${r.setup.deno}, ` +
      `${r.setup.commit}; load average before / after: ${r.setup.loadavg.join(" / ")})\n`,
  );
  if (r.idle !== undefined) {
    p(
      `Idle daemons: ready, ${SETTLE_MS} ms to settle, then ${IDLE_SECONDS} s without packets ` +
        `(CPU: utime+stime, resolution ${(100 / clockTicks() / IDLE_SECONDS).toFixed(2)}%).\n`,
    );
    p("| daemon | RSS at ready | RSS idle | VmHWM | RssAnon / RssFile | threads | idle CPU, % of a core |");
    p("|---|--:|--:|--:|--:|--:|--:|");
    for (const i of r.idle) {
      const m = i.memory;
      p(
        `| \`${i.label}\` | ${mb(i.memoryAtReady.rssKb)} MB | ${mb(m.rssKb)} MB | ` +
          `${mb(m.hwmKb)} MB | ${mb(m.anonKb)} / ${mb(m.fileKb)} MB | ${m.threads} | ` +
          `${i.cpuPercent.toFixed(2)}% |`,
      );
    }
    p();
  }
  if (r.ready !== undefined) {
    p(
      `Start → ready, medians of ${STARTS} starts (spawn of \`ip netns exec\` → deno → the ` +
        "condition; ready: queues bound, and the control socket / metrics port listening).\n",
    );
    p("| daemon | queues bound | `queue_length=` printed | ready | ready, min–max |");
    p("|---|--:|--:|--:|--:|");
    for (const x of r.ready) {
      const rd = x.samples.map((s) => s.ready);
      p(
        `| \`${x.label}\` | ${ms(median(x.samples.map((s) => s.bound)))} | ` +
          `${ms(median(x.samples.map((s) => s.printed)))} | ${ms(median(rd))} | ` +
          `${Math.min(...rd).toFixed(0)}–${Math.max(...rd).toFixed(0)} ms |`,
      );
    }
    p();
  }
  if (r.cli !== undefined) {
    p(
      `One CLI command, spawn → exit in the namespace of a running Meridio flowlb, ` +
        `median of ${RUNS} (alternating).\n`,
    );
    p("| command | median | min–max |");
    p("|---|--:|--:|");
    for (const c of r.cli) {
      p(
        `| ${c.label} | ${ms(median(c.samples))} | ` +
          `${Math.min(...c.samples).toFixed(1)}–${Math.max(...c.samples).toFixed(1)} ms |`,
      );
    }
    p();
  }
  if (r.steady !== undefined) {
    const s = r.steady;
    p(
      `Steady state of \`${s.label}\`: per round ${s.packetsPerRound.toLocaleString("en-US")} ` +
        `packets handled (64-byte UDP; per queue in all: ${s.perQueue.join(" / ")}; sending took ` +
        `${s.sendSeconds.map((x) => x.toFixed(1)).join(", ")} s) then ` +
        `${s.flowChangesPerRound.toLocaleString("en-US")} flow changes (` +
        `${(s.flowChangesPerRound / 2).toLocaleString("en-US")} flow-set + as many flow-delete; ` +
        `${s.changeSeconds.map((x) => x.toFixed(1)).join(", ")} s).\n`,
    );
    p("| step | VmRSS | VmHWM | threads |");
    p("|---|--:|--:|--:|");
    for (const x of s.samples) {
      p(
        `| ${x.step} | ${mb(x.memory.rssKb)} MB | ${mb(x.memory.hwmKb)} MB | ` +
          `${x.memory.threads} |`,
      );
    }
    const firstRoundEnd = s.samples.findLast((x) => x.step.startsWith("round 1:"));
    const last = s.samples.at(-1)!;
    if (firstRoundEnd !== undefined && last !== firstRoundEnd) {
      p(`\nGrowth after round 1: ${
        ((last.memory.rssKb - firstRoundEnd.memory.rssKb) / 1024).toFixed(1)
      } MB VmRSS.`);
    }
    p();
  }
}

interface Results {
  setup: {
    cpus: number;
    kernel: string;
    deno: string;
    commit: string;
    options: unknown;
    /** `/proc/loadavg` before and after: other work on the machine. */
    loadavg: string[];
  };
  idle?: IdleResult[];
  ready?: ReadyResult[];
  cli?: CliResult[];
  steady?: SteadyResult;
}

/** The 1, 5 and 15 minute load averages (`/proc/loadavg`). */
function loadavg(): string {
  return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
}

/** The results with the medians the tables show next to the samples (JSON). */
function withMedians(r: Results): unknown {
  const times = (xs: StartTimes[]) => ({
    bound: median(xs.map((s) => s.bound)),
    printed: median(xs.map((s) => s.printed)),
    ready: median(xs.map((s) => s.ready)),
  });
  return {
    ...r,
    ready: r.ready?.map((x) => ({ ...x, medianMs: times(x.samples) })),
    cli: r.cli?.map((x) => ({ ...x, medianMs: median(x.samples) })),
  };
}

// ---------------------------------------------------------------- main

try {
  lbNs = await net.addNs("lb");
  clNs = await net.addNs("cl");
  await net.veth(clNs, "veth0", lbNs, "veth0");
  await net.run(lbNs, ["ip", "addr", "add", `${LB_ADDR}/24`, "dev", "veth0"]);
  for (const a of CLIENTS) await net.run(clNs, ["ip", "addr", "add", `${a}/24`, "dev", "veth0"]);
  await net.run(lbNs, [
    "iptables",
    "-A",
    "INPUT",
    "-p",
    "udp",
    "--dport",
    String(PORT),
    "-j",
    "DROP",
  ]);
  const holder = net.spawn(lbNs, ["sleep", "infinity"]);
  holderPid = holder.pid;
  for (let i = 0; i < 1000; i++) {
    const link = Deno.readLinkSync(`/proc/${holderPid}/ns/net`);
    if (link !== Deno.readLinkSync("/proc/self/ns/net")) {
      netnsInode = /\[(\d+)\]/.exec(link)?.[1] ?? "";
      break;
    }
    await sleep(1);
  }
  if (netnsInode === "") throw new Error("the namespace's holder process did not enter it");

  await nfqlb("init", `--shm=${TSHM}`, "--M=997", "--N=4");
  await nfqlb("activate", `--shm=${TSHM}`, ...MARKS);

  const results: Results = {
    setup: {
      cpus: navigator.hardwareConcurrency,
      kernel: Deno.osRelease(),
      deno: Deno.version.deno,
      commit: (await exec(["git", "-C", ROOT, "log", "-1", "--format=%h %s"])).stdout.trim()
        .slice(0, 60),
      options: Object.fromEntries(opt),
      loadavg: [loadavg()],
    },
  };
  if (sections.has("idle")) results.idle = await idleSection();
  if (sections.has("ready")) results.ready = await readySection();
  if (sections.has("cli")) results.cli = await cliSection();
  if (sections.has("steady")) results.steady = await steadySection();
  results.setup.loadavg.push(loadavg());
  if (JSON_OUT) console.log(JSON.stringify(withMedians(results), null, 2));
  else printMarkdown(results);
} finally {
  await cleanup();
  for (const s of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    Deno.removeSignalListener(s, onSignal);
  }
}
