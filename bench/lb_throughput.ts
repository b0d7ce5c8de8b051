/**
 * Throughput of `nfqlb lb` on the real data path, as root:
 *
 * ```
 *   cl (sender, 10.205.0.10+) --veth-- lb (queue reader) --veth-- tg (VIP 10.205.255.1 on lo)
 * ```
 *
 * The receiver is a target namespace behind the LB, not the LB namespace
 * itself: that is the path `nfqlb lb` exists for (NFQUEUE verdict with a
 * fwmark, then policy routing `ip rule fwmark M table M` forwards to the
 * target), so the measurement includes forwarding and the re-injection of
 * every packet after its verdict. The Maglev table has `--targets` active
 * targets (marks 201, 202, ..., default 4), so flows get different marks;
 * every mark's routing table leads to the same target namespace.
 *
 * Senders (`--sender`):
 * - **iperf3** (default): 64-byte UDP datagrams to the VIP, 8 parallel
 *   streams, `-b 0` (unbounded unless `--bitrate` is given); iperf3 servers
 *   on the VIP in the target. iperf3 makes one `send` per datagram, so on a
 *   small machine it limits the offered load before the LB does.
 * - **flood**: `bench/c/udp_flood.c` (built with `cc`): the same streams as
 *   connected UDP sockets sending with `sendmmsg`, 64 datagrams per call. It
 *   offers more than a queue reader can take, which shows the reader's
 *   ceiling. The target drops the datagrams in its raw table (no receiving
 *   application), delivered packets are counted on its veth.
 *
 * Paths (`--paths`, all by default), measured alternately, `--runs` times each:
 * - **nfqlb**: `iptables -t mangle -A PREROUTING -d VIP -p udp -j NFQUEUE`
 *   (`--queue-num 0`, or `--queue-balance 0:N-1` with `--queues=N`), served
 *   by `nfqlb lb --queue=0` / `--queue=0:N-1`;
 * - **c**: the same rule for queues N..2N-1, served by `bench/c/nfq_baseline.c`
 *   (one process per queue): a C reader with the data-path architecture of
 *   nfqlb 1.2.0 (libnetfilter_queue's callback API, one `recv` and one verdict
 *   `sendto` per packet, docs/COMPATIBILITY.md#nfqueue step 6) and a cheaper per-packet decision
 *   (djb2 of 40 bytes, table lookup). Built with `cc` if the
 *   libnetfilter_queue headers are installed (Debian: libnetfilter-queue-dev),
 *   else skipped with a note. It stands in for the 1.2.0 binary, which is not
 *   available here;
 * - **kernel**: no queue rule (the main table routes the VIP to the same
 *   target), i.e. plain forwarding.
 *
 * Per run: offered packets/s (packets received on the LB's client-side
 * veth), delivered packets/s (packets received on the target's veth),
 * iperf3's own count of datagrams that reached the server, and for a queue
 * reader its CPU time (utime+stime of the reader processes from
 * /proc/<pid>/stat) divided by the packets it handled (queue `id_sequence`
 * minus `user_dropped` from /proc/net/netfilter/nfnetlink_queue), plus the
 * packets the kernel dropped because the queue was full. The table shows
 * medians, then the ratios nfqlb / c.
 *
 * `--queue-balance` hashes only the addresses (and protocol), not the ports,
 * so one client address would put all streams in one queue. With
 * `--queues=N` the client therefore uses N source addresses, found by
 * probing so that each queue gets one, and runs N senders (one per address,
 * streams split between them). The kernel picks the queue as `first +
 * hash % N`, so the same addresses spread over the baseline's queues too.
 *
 * Usage: deno run --allow-all bench/lb_throughput.ts [--queues=1] [--runs=5]
 *   [--duration=5] [--streams=8] [--length=64] [--bitrate=0] [--qlength=1024]
 *   [--sender=iperf3|flood] [--paths=nfqlb,c,kernel] [--targets=4]
 *   [--baseline-cli=OTHER_CHECKOUT/cli.ts]
 *
 * `--baseline-cli` adds the path **base**: `nfqlb lb` of another checkout
 * (e.g. the previous commit in a `git worktree`), on queues 2N..3N-1, measured
 * alternately with the others in the same run, so a change's effect on the
 * data path is a same-run ratio (nfqlb / base) rather than a comparison of
 * two runs on a noisy machine.
 *
 * `--bitrate` is iperf3's `-b`, per stream (0 = unbounded); `--qlength` is
 * passed to both readers.
 * @module
 */
import { main } from "../cli/main.ts";
import { exec, isRoot, run, TestNet } from "../testkit/netns.ts";

const USAGE = "usage: deno run --allow-all bench/lb_throughput.ts [--queues=N] [--runs=R] " +
  "[--duration=S] [--streams=P] [--length=BYTES] [--bitrate=RATE] [--qlength=N] " +
  "[--sender=iperf3|flood] [--paths=nfqlb,c,kernel,base] [--targets=T] [--baseline-cli=PATH]";
const OPTIONS = [
  "queues",
  "runs",
  "duration",
  "streams",
  "length",
  "bitrate",
  "qlength",
  "sender",
  "paths",
  "targets",
  "baseline-cli",
];
const opt = new Map<string, string>();
for (const a of Deno.args) {
  const m = /^--([^=]+)=(.*)$/.exec(a);
  if (m === null || !OPTIONS.includes(m[1])) {
    console.error(`${USAGE}\nbad argument ${a}`);
    Deno.exit(2);
  }
  opt.set(m[1], m[2]);
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
const QUEUES = intOpt("queues", 1, 1, 16);
const RUNS = intOpt("runs", 5, 1, 100);
const DURATION = intOpt("duration", 5, 1, 600);
const STREAMS = intOpt("streams", 8, 1, 128);
const LENGTH = intOpt("length", 64, 16, 1400);
const BITRATE = opt.get("bitrate") ?? "0";
const QLENGTH = intOpt("qlength", 1024, 1, 2 ** 31 - 1);
const TARGETS = intOpt("targets", 4, 1, 32);
const SENDER = opt.get("sender") ?? "iperf3";
if (SENDER !== "iperf3" && SENDER !== "flood") {
  console.error(`--sender=${SENDER}: expected iperf3 or flood`);
  Deno.exit(2);
}
type Path = "nfqlb" | "c" | "kernel" | "base";
const BASELINE_CLI = opt.get("baseline-cli");
const ALL_PATHS: readonly Path[] = BASELINE_CLI === undefined
  ? ["nfqlb", "c", "kernel"]
  : ["nfqlb", "base", "c", "kernel"];
const pathsExplicit = opt.has("paths");
const paths = (opt.get("paths") ?? ALL_PATHS.join(",")).split(",") as Path[];
if (BASELINE_CLI !== undefined && !Deno.statSync(BASELINE_CLI).isFile) {
  console.error(`--baseline-cli=${BASELINE_CLI}: not a file`);
  Deno.exit(2);
}
if (paths.length === 0 || paths.some((p) => !ALL_PATHS.includes(p))) {
  console.error(`--paths=${opt.get("paths")}: expected a comma list of ${ALL_PATHS.join(", ")}`);
  Deno.exit(2);
}
if (STREAMS < QUEUES) {
  console.error("--streams must be at least --queues (one sender per queue)");
  Deno.exit(2);
}

if (!isRoot()) {
  console.error("lb_throughput: needs root (network namespaces, NFQUEUE)");
  Deno.exit(1);
}

const DENO = Deno.execPath();
const CLI = new URL("../cli.ts", import.meta.url).pathname;
const C_DIR = new URL("./c/", import.meta.url).pathname;
const VIP = "10.205.255.1";
const LB_CL = "10.205.0.1";
const LB_TG = "10.205.1.1";
const TG = "10.205.1.2";
const FIRST_MARK = 201;
const MARKS = Array.from({ length: TARGETS }, (_, i) => String(FIRST_MARK + i));
const BASE_PORT = 5201;

const token = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
const TSHM = `nfqlbbench-${Deno.pid}-${token}-t`;
const FTSHM = `nfqlbbench-${Deno.pid}-${token}-ft`;
const FTSHM_BASE = `${FTSHM}-base`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const T0 = performance.now();
const log = (t: string) => console.error(`[${((performance.now() - T0) / 1000).toFixed(1)}s] ${t}`);

/** Run `nfqlb <args>` in-process; exit on failure. */
async function nfqlb(...args: string[]): Promise<void> {
  let err = "";
  const code = await main("nfqlb", args, { out: () => undefined, err: (t) => err += t });
  if (code !== 0) throw new Error(`nfqlb ${args.join(" ")}: exit ${code}: ${err}`);
}

// ---------------------------------------------------------------- C helpers

const buildDir = await Deno.makeTempDir({ prefix: "nfqlb-bench-" });

/** Compile `bench/c/<name>.c` into the build directory; the binary's path, or an error text. */
async function buildC(name: string, libs: string[]): Promise<string | { error: string }> {
  const out = `${buildDir}/${name}`;
  const r = await exec(["cc", "-O2", "-o", out, `${C_DIR}${name}.c`, ...libs]).catch((e) => ({
    code: -1,
    stdout: "",
    stderr: String(e),
  }));
  return r.code === 0 ? out : { error: r.stderr.trim().split("\n")[0] ?? "cc failed" };
}

let floodBin = "";
if (SENDER === "flood") {
  const b = await buildC("udp_flood", []);
  if (typeof b !== "string") {
    console.error(`--sender=flood needs cc to build bench/c/udp_flood.c: ${b.error}`);
    await Deno.remove(buildDir, { recursive: true });
    Deno.exit(1);
  }
  floodBin = b;
}
let baselineBin = "";
if (paths.includes("c")) {
  const b = await buildC("nfq_baseline", ["-lnetfilter_queue"]);
  if (typeof b === "string") {
    baselineBin = b;
  } else if (pathsExplicit) {
    console.error(
      `--paths=c needs cc and libnetfilter-queue-dev to build bench/c/nfq_baseline.c: ${b.error}`,
    );
    await Deno.remove(buildDir, { recursive: true });
    Deno.exit(1);
  } else {
    log(`C baseline skipped (needs cc and libnetfilter-queue-dev): ${b.error}`);
    paths.splice(paths.indexOf("c"), 1);
  }
}

// ---------------------------------------------------------------- clean-up

const net = await TestNet.create();
/** Long-running readers (nfqlb lb, C baselines), stopped with SIGTERM at the end. */
const readers: Deno.ChildProcess[] = [];
let cleaned: Promise<void> | null = null;

async function stopReader(p: Deno.ChildProcess): Promise<void> {
  try {
    Deno.kill(p.pid, "SIGCONT");
    Deno.kill(p.pid, "SIGTERM");
  } catch {
    // already gone
  }
  const t = setTimeout(() => {
    try {
      p.kill("SIGKILL");
    } catch {
      // already gone
    }
  }, 3000);
  await p.status.catch(() => undefined);
  clearTimeout(t);
}

function cleanup(): Promise<void> {
  cleaned ??= (async () => {
    await Promise.all(readers.map(stopReader));
    await net.cleanup();
    for (const name of [TSHM, FTSHM, FTSHM_BASE]) {
      await nfqlb("delete", `--shm=${name}`).catch((e) => log(String(e)));
    }
    await Deno.remove(buildDir, { recursive: true }).catch(() => undefined);
  })();
  return cleaned;
}

const onSignal = () => {
  log("lb_throughput: interrupted; cleaning up");
  cleanup().finally(() => Deno.exit(130));
};
for (const s of ["SIGINT", "SIGTERM", "SIGHUP"] as const) Deno.addSignalListener(s, onSignal);

// ---------------------------------------------------------------- measurement helpers

/** A counter of `/sys/class/net/<dev>/statistics/` inside `ns`. */
async function devStat(ns: string, dev: string, stat = "rx_packets"): Promise<number> {
  return Number(await net.run(ns, ["cat", `/sys/class/net/${dev}/statistics/${stat}`]));
}

interface QueueStats {
  seq: number;
  dropped: number;
  userDropped: number;
  perQueue: Map<number, number>;
}

/** Sum of the counters of queues `first..last` in /proc/net/netfilter/nfnetlink_queue of `ns`. */
async function queueStats(ns: string, first: number, last: number): Promise<QueueStats> {
  const out = await net.run(ns, ["cat", "/proc/net/netfilter/nfnetlink_queue"]);
  const s = { seq: 0, dropped: 0, userDropped: 0, perQueue: new Map<number, number>() };
  for (const l of out.split("\n")) {
    const f = l.trim().split(/\s+/).map(Number);
    if (f.length < 8 || f[0] < first || f[0] > last) continue;
    s.dropped += f[5];
    s.userDropped += f[6];
    s.seq += f[7];
    s.perQueue.set(f[0], f[7]);
  }
  return s;
}

const CLK_TCK = Number((await run(["getconf", "CLK_TCK"])).trim()) || 100;

/** utime and stime of processes `pids` (all threads), in seconds. */
function cpuSeconds(pids: number[]): { user: number; sys: number } {
  let user = 0;
  let sys = 0;
  for (const pid of pids) {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14 and 15 of proc_pid_stat(5), counted from the state field (3).
    user += Number(f[11]) / CLK_TCK;
    sys += Number(f[12]) / CLK_TCK;
  }
  return { user, sys };
}

/** Busy CPU time of the whole machine (all CPUs, everything but idle and iowait), in seconds. */
function machineBusySeconds(): number {
  const line = Deno.readTextFileSync("/proc/stat").split("\n")[0];
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is included in user).
  return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / CLK_TCK;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/**
 * Run `cmd` in `ns` as a tracked child (killed by the clean-up if it is still
 * running then); returns its exit status and stdout.
 */
async function spawnOutput(ns: string, cmd: string[]): Promise<{ code: number; stdout: string }> {
  const child = net.spawn(ns, cmd);
  await child.stdin.close();
  const [st, stdout, stderr] = await Promise.all([
    child.status,
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
  if (st.code !== 0 && stdout.trim() === "") {
    throw new Error(`${cmd.join(" ")}: exit ${st.code}: ${stderr}`);
  }
  return { code: st.code, stdout };
}

/**
 * Start a queue reader in `ns` and wait (up to 30 s) until it has printed
 * `lines` start-up lines (`queue_length=...`); its stdout keeps being drained.
 */
async function startReader(ns: string, cmd: string[], lines: number): Promise<Deno.ChildProcess> {
  const child = net.spawn(ns, cmd);
  readers.push(child);
  const err = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<null>((r) => timer = setTimeout(() => r(null), 30000));
  try {
    while ((text.match(/^queue_length=/gm) ?? []).length < lines) {
      const r = await Promise.race([reader.read(), timeout]);
      if (r === null || r.done) {
        throw new Error(`${cmd.join(" ")} did not start:\n${text}\n${r === null ? "" : await err}`);
      }
      text += r.value;
    }
  } finally {
    clearTimeout(timer);
  }
  log(`${cmd.slice(0, 4).map((a) => a.split("/").pop()).join(" ")}...: ${text.trim()}`);
  // Keep draining stdout so the reader never blocks on a full pipe.
  (async () => {
    for (;;) if ((await reader.read()).done) break;
  })().catch(() => undefined);
  return child;
}

// ---------------------------------------------------------------- set-up

interface RunResult {
  offered: number;
  delivered: number;
  iperfReceived: number;
  handled: number;
  queueDrops: number;
  userDrops: number;
  cpuUsPerPacket: number;
  userUsPerPacket: number;
  readerCpuShare: number;
  machineUsPerPacket: number;
}

/** How packets of one path reach (or bypass) a queue reader. */
interface PathSetup {
  label: string;
  /** Queue range of the NFQUEUE rule; none for the kernel path. */
  queues?: { first: number; last: number };
  /** Reader processes whose CPU time is measured. */
  pids: number[];
}

try {
  const cl = await net.addNs("cl");
  const lb = await net.addNs("lb");
  const tg = await net.addNs("tg");
  for (const ns of [cl, lb, tg]) {
    await net.run(ns, [
      "sysctl",
      "-q",
      "-w",
      "net.ipv4.conf.all.rp_filter=0",
      "-w",
      "net.ipv4.conf.default.rp_filter=0",
    ]);
  }
  await net.run(lb, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
  const ip = (ns: string, ...args: string[]) => net.run(ns, ["ip", ...args]);
  await net.veth(cl, "veth0", lb, "vcl");
  await net.veth(lb, "vtg", tg, "veth0");
  await ip(lb, "addr", "add", `${LB_CL}/24`, "dev", "vcl");
  await ip(lb, "addr", "add", `${LB_TG}/24`, "dev", "vtg");
  await ip(tg, "addr", "add", `${TG}/24`, "dev", "veth0");
  await ip(tg, "addr", "add", `${VIP}/32`, "dev", "lo");
  await ip(tg, "route", "add", "default", "via", LB_TG);
  for (const mark of MARKS) {
    await ip(lb, "rule", "add", "fwmark", mark, "table", mark);
    await ip(lb, "route", "add", "default", "via", TG, "table", mark);
  }
  // Unmarked traffic to the VIP (iperf3's TCP control connection; the kernel runs) goes the
  // same way through the main table.
  await ip(lb, "route", "add", `${VIP}/32`, "via", TG);
  const firstClient = "10.205.0.10";
  await ip(cl, "addr", "add", `${firstClient}/24`, "dev", "veth0");
  await ip(cl, "route", "add", "default", "via", LB_CL);
  await net.run(cl, ["ping", "-c1", "-W3", LB_CL]);
  await net.run(lb, ["ping", "-c1", "-W3", TG]);
  await net.run(tg, ["ping", "-c1", "-W3", LB_TG]);

  await nfqlb("init", `--shm=${TSHM}`, "--M=997", "--N=32");
  await nfqlb("activate", `--shm=${TSHM}`, ...MARKS);

  const setups = new Map<Path, PathSetup>();
  const queueArg = QUEUES === 1 ? "0" : `0:${QUEUES - 1}`;
  const lbChild = await startReader(lb, [
    DENO,
    "run",
    "--allow-all",
    CLI,
    "lb",
    `--tshm=${TSHM}`,
    `--ft_shm=${FTSHM}`,
    `--queue=${queueArg}`,
    `--qlength=${QLENGTH}`,
  ], QUEUES);
  setups.set("nfqlb", {
    label: `nfqlb lb --queue=${queueArg}`,
    queues: { first: 0, last: QUEUES - 1 },
    pids: [lbChild.pid],
  });
  if (paths.includes("base") && BASELINE_CLI !== undefined) {
    const first = 2 * QUEUES;
    const last = 3 * QUEUES - 1;
    const baseArg = QUEUES === 1 ? String(first) : `${first}:${last}`;
    const baseChild = await startReader(lb, [
      DENO,
      "run",
      "--allow-all",
      BASELINE_CLI,
      "lb",
      `--tshm=${TSHM}`,
      `--ft_shm=${FTSHM_BASE}`,
      `--queue=${baseArg}`,
      `--qlength=${QLENGTH}`,
    ], QUEUES);
    setups.set("base", {
      label: `baseline nfqlb lb --queue=${baseArg} (${BASELINE_CLI})`,
      queues: { first, last },
      pids: [baseChild.pid],
    });
  }
  if (paths.includes("c")) {
    const pids: number[] = [];
    for (let q = QUEUES; q < 2 * QUEUES; q++) {
      const c = await startReader(lb, [
        baselineBin,
        String(q),
        String(FIRST_MARK),
        String(TARGETS),
        String(QLENGTH),
      ], 1);
      pids.push(c.pid);
    }
    setups.set("c", {
      label: `C baseline (1.2.0 architecture) ×${QUEUES}`,
      queues: { first: QUEUES, last: 2 * QUEUES - 1 },
      pids,
    });
  }
  setups.set("kernel", { label: "kernel (no queue rule)", pids: [] });

  const ruleFor = (q: { first: number; last: number }) => [
    "PREROUTING",
    "-d",
    VIP,
    "-p",
    "udp",
    "-j",
    "NFQUEUE",
    ...(q.first === q.last
      ? ["--queue-num", String(q.first)]
      : ["--queue-balance", `${q.first}:${q.last}`]),
  ];
  const ruleOn = (q: { first: number; last: number }) =>
    net.run(lb, ["iptables", "-t", "mangle", "-A", ...ruleFor(q)]);
  const ruleOff = (q: { first: number; last: number }) =>
    net.run(lb, ["iptables", "-t", "mangle", "-D", ...ruleFor(q)]);

  // Client addresses: one per queue (probed: which queue does a datagram from it go to?).
  const clients: string[] = [firstClient];
  if (QUEUES > 1) {
    const lbQueues = { first: 0, last: QUEUES - 1 };
    await ruleOn(lbQueues);
    const byQueue = new Map<number, string>();
    const probe = (src: string) =>
      net.run(cl, [
        DENO,
        "eval",
        `import dgram from "node:dgram";
         const s = dgram.createSocket("udp4");
         s.bind({ address: "${src}" }, () => s.send("probe", 9, "${VIP}", () => s.close()));`,
      ]);
    for (let k = 0; k < 64 && byQueue.size < QUEUES; k++) {
      const src = `10.205.0.${10 + k}`;
      if (k > 0) await ip(cl, "addr", "add", `${src}/24`, "dev", "veth0");
      const before = (await queueStats(lb, 0, QUEUES - 1)).perQueue;
      await probe(src);
      let hit: number | undefined;
      for (let i = 0; i < 100 && hit === undefined; i++) {
        const after = (await queueStats(lb, 0, QUEUES - 1)).perQueue;
        hit = [...after].find(([q, seq]) => seq > (before.get(q) ?? 0))?.[0];
        if (hit === undefined) await sleep(10);
      }
      if (hit !== undefined && !byQueue.has(hit)) byQueue.set(hit, src);
    }
    await ruleOff(lbQueues);
    if (byQueue.size < QUEUES) {
      throw new Error(`probing found source addresses for queues ${[...byQueue.keys()]} only`);
    }
    clients.length = 0;
    for (let q = 0; q < QUEUES; q++) clients.push(byQueue.get(q)!);
    log(`client addresses per queue: ${clients.join(", ")}`);
  }

  if (SENDER === "iperf3") {
    // iperf3 servers, one per client, on the VIP.
    for (let i = 0; i < clients.length; i++) {
      const srv = net.spawn(tg, ["iperf3", "-s", "-B", VIP, "-p", String(BASE_PORT + i)]);
      srv.stdout.pipeTo(new WritableStream()).catch(() => undefined);
      srv.stderr.pipeTo(new WritableStream()).catch(() => undefined);
    }
    for (let i = 0; i < clients.length; i++) {
      const port = BASE_PORT + i;
      for (let k = 0;; k++) {
        const ss = await net.run(tg, ["ss", "-Hltn", `sport = :${port}`]);
        if (ss.trim() !== "") break;
        if (k > 100) throw new Error(`iperf3 server on port ${port} did not start`);
        await sleep(50);
      }
    }
  } else {
    // No receiving application: the target drops the flood right after its veth counted it.
    await net.run(tg, ["iptables", "-t", "raw", "-A", "PREROUTING", "-p", "udp", "-j", "DROP"]);
  }

  const streamsOf = (i: number) =>
    Math.floor(STREAMS / clients.length) + (i < STREAMS % clients.length ? 1 : 0);

  /** Run the senders for DURATION seconds; iperf3's received datagrams/s (NaN for flood). */
  const send = async (): Promise<number> => {
    const outs = await Promise.all(clients.map((src, i) =>
      spawnOutput(
        cl,
        SENDER === "flood"
          ? [
            floodBin,
            src,
            VIP,
            String(BASE_PORT + i),
            String(streamsOf(i)),
            String(LENGTH),
            String(
              DURATION,
            ),
          ]
          : [
            "iperf3",
            "-c",
            VIP,
            "-p",
            String(BASE_PORT + i),
            "-B",
            src,
            "-u",
            "-l",
            String(LENGTH),
            "-b",
            BITRATE,
            "-P",
            String(streamsOf(i)),
            "-t",
            String(DURATION),
            "-J",
          ],
      )
    ));
    if (SENDER === "flood") return NaN;
    let received = 0;
    for (const o of outs) {
      const j = JSON.parse(o.stdout);
      if (j.error !== undefined) throw new Error(`iperf3: ${j.error}`);
      const s = j.end.sum;
      received += (s.packets - s.lost_packets) / s.seconds;
    }
    return received;
  };

  const measure = async (setup: PathSetup): Promise<RunResult> => {
    const q = setup.queues;
    if (q !== undefined) await ruleOn(q);
    try {
      const stats = () => q === undefined ? null : queueStats(lb, q.first, q.last);
      const off0 = await devStat(lb, "vcl");
      const del0 = await devStat(tg, "veth0");
      const q0 = await stats();
      const cpu0 = cpuSeconds(setup.pids);
      const busy0 = machineBusySeconds();
      const iperfReceived = await send();
      // Let the queue drain before reading the counters.
      await sleep(300);
      const off1 = await devStat(lb, "vcl");
      const del1 = await devStat(tg, "veth0");
      const q1 = await stats();
      const cpu1 = cpuSeconds(setup.pids);
      const busy1 = machineBusySeconds();
      const handled = q0 === null || q1 === null
        ? NaN
        : (q1.seq - q0.seq) - (q1.userDropped - q0.userDropped);
      const user = cpu1.user - cpu0.user;
      const cpu = user + cpu1.sys - cpu0.sys;
      const delivered = del1 - del0;
      return {
        offered: (off1 - off0) / DURATION,
        delivered: delivered / DURATION,
        iperfReceived,
        handled: handled / DURATION,
        queueDrops: q0 === null || q1 === null ? NaN : (q1.dropped - q0.dropped) / DURATION,
        userDrops: q0 === null || q1 === null ? NaN : (q1.userDropped - q0.userDropped) / DURATION,
        cpuUsPerPacket: handled > 0 ? cpu / handled * 1e6 : NaN,
        userUsPerPacket: handled > 0 ? user / handled * 1e6 : NaN,
        readerCpuShare: q === undefined ? NaN : cpu / DURATION,
        machineUsPerPacket: (busy1 - busy0) / delivered * 1e6,
      };
    } finally {
      if (q !== undefined) await ruleOff(q);
    }
  };

  const results = new Map<Path, RunResult[]>(paths.map((p) => [p, []]));
  const fmt = (x: number) => Number.isNaN(x) ? "–" : Math.round(x).toLocaleString("en-US");
  for (let r = 1; r <= RUNS; r++) {
    for (const path of paths) {
      await sleep(500);
      const res = await measure(setups.get(path)!);
      results.get(path)!.push(res);
      log(
        `run ${r}/${RUNS} ${path}: offered ${fmt(res.offered)}/s, delivered ${
          fmt(res.delivered)
        }/s` +
          (SENDER === "iperf3" ? `, iperf3 ${fmt(res.iperfReceived)}/s` : "") +
          (path !== "kernel"
            ? `, handled ${fmt(res.handled)}/s, queue-full drops ${fmt(res.queueDrops)}/s, ` +
              `socket-full drops ${fmt(res.userDrops)}/s, ` +
              `reader CPU ${res.cpuUsPerPacket.toFixed(2)} µs/packet (${
                (res.readerCpuShare * 100).toFixed(0)
              }% of a core)`
            : "") +
          `, machine CPU ${res.machineUsPerPacket.toFixed(2)} µs/delivered packet`,
      );
    }
  }

  const med = (path: Path, k: keyof RunResult) => median(results.get(path)!.map((r) => r[k]));
  const sender = SENDER === "flood"
    ? "udp_flood (sendmmsg)"
    : `iperf3, ${BITRATE === "0" ? "unbounded" : BITRATE}`;
  console.log(
    `\n### nfqlb lb throughput: ${LENGTH}-byte UDP, ${STREAMS} streams, ${sender}, ` +
      `${DURATION} s × ${RUNS} runs (medians), ${QUEUES} queue${QUEUES > 1 ? "s" : ""}, ` +
      `${TARGETS} target${TARGETS > 1 ? "s" : ""}, ` +
      `qlength ${QLENGTH}, ` +
      `${navigator.hardwareConcurrency} CPUs\n`,
  );
  console.log(
    "| path | offered pkt/s | delivered pkt/s | iperf3 received pkt/s | handled pkt/s | " +
      "queue-full drops/s | reader CPU µs/pkt (user) | reader CPU, cores | " +
      "machine CPU µs/delivered pkt |",
  );
  console.log("|---|--:|--:|--:|--:|--:|--:|--:|--:|");
  for (const path of paths) {
    const q = path !== "kernel";
    const cells = [
      setups.get(path)!.label,
      fmt(med(path, "offered")),
      fmt(med(path, "delivered")),
      fmt(med(path, "iperfReceived")),
      q ? fmt(med(path, "handled")) : "–",
      q ? fmt(med(path, "queueDrops")) : "–",
      q
        ? `${med(path, "cpuUsPerPacket").toFixed(2)} (${med(path, "userUsPerPacket").toFixed(2)})`
        : "–",
      q ? med(path, "readerCpuShare").toFixed(2) : "–",
      med(path, "machineUsPerPacket").toFixed(2),
    ];
    console.log(`| ${cells.join(" | ")} |`);
  }
  console.log("");
  const ratio = (a: Path, b: Path, k: keyof RunResult, text: string) => {
    if (results.has(a) && results.has(b)) {
      console.log(`${text}: ${(med(a, k) / med(b, k)).toFixed(2)}`);
    }
  };
  ratio("nfqlb", "base", "delivered", "nfqlb / baseline checkout, delivered pkt/s");
  ratio("base", "nfqlb", "cpuUsPerPacket", "baseline checkout / nfqlb, reader CPU per packet");
  ratio("nfqlb", "c", "delivered", "nfqlb / C baseline, delivered pkt/s");
  ratio("c", "nfqlb", "cpuUsPerPacket", "C baseline / nfqlb, reader CPU per packet");
  ratio("nfqlb", "kernel", "delivered", "nfqlb / kernel, delivered pkt/s");
  ratio("c", "kernel", "delivered", "C baseline / kernel, delivered pkt/s");
  // Stop the readers cleanly: SIGTERM, exit status 0.
  for (const p of readers.splice(0)) {
    Deno.kill(p.pid, "SIGTERM");
    const st = await p.status;
    if (st.code !== 0) log(`a reader (pid ${p.pid}) exited with ${st.code}`);
  }
} finally {
  await cleanup();
  for (const s of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    Deno.removeSignalListener(s, onSignal);
  }
}
