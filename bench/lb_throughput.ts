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
 * - **newflows**: `udp_flood` in its `newflows` mode: every datagram is a new
 *   5-tuple. One raw socket per sender builds the UDP datagrams itself (64
 *   per `sendmmsg`, per-message destination); the source port advances per
 *   datagram over 1024..65535 and, after each full cycle, the destination
 *   port over 5201..6224, so a 5-tuple recurs only after 66 million
 *   datagrams (far beyond any element's lifetime here; each sender starts at
 *   a random point). `--streams` does not apply. It shows what the fast path
 *   costs when nothing can be offloaded: with the default
 *   `--fastpath-min-packets=2` no tuple is seen twice, so nothing is added;
 *   with `--fastpath-args=--fastpath-min-packets=1` every queued packet is
 *   offered and added (until the map is full) and never hit. Received as with
 *   flood.
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
 * - **fastpath**: like nfqlb, but a second `nfqlb lb` on queues 3N..4N-1
 *   runs with `--fastpath --fastpath-table=nfqlbbench` (plus
 *   `--fastpath-args`), and its rule skips packets already marked:
 *   `iptables -t mangle -A PREROUTING -d VIP -p udp -m mark --mark 0 -j
 *   NFQUEUE ...`. The daemon owns the nftables table `inet nfqlbbench`
 *   (prerouting chain at priority -160 that marks the 5-tuples it has
 *   decided, after `--fastpath-min-packets` queued packets of a tuple, for
 *   `--fastpath-timeout` ms; docs/FASTPATH.md) and removes it on exit.
 *   Unlike the other readers, this daemon is started before each fastpath
 *   measurement and stopped (SIGTERM; the table must then be gone) after it:
 *   while it runs, its chain (a map lookup for every packet) and its writer's
 *   table scans (every 5 ms) are in the way of every path (left running, they
 *   cost the kernel path 13% of its rate with the flood on a 2-CPU VM,
 *   263,000 -> 230,000 pkt/s). Each fastpath run therefore starts with an
 *   empty map (and a daemon not yet warmed up). The marking chain runs in
 *   the softirq of the CPU that sends (veth), so where the sender is bound
 *   by its CPU, fastpath can deliver less than kernel and than nfqlb (whose
 *   re-injection runs on the reader's CPU): compare the machine CPU per
 *   delivered packet then;
 * - **kernel**: no queue rule (the main table routes the VIP to the same
 *   target), i.e. plain forwarding.
 *
 * Per run: offered packets/s (packets received on the LB's client-side
 * veth), delivered packets/s (packets received on the target's veth),
 * iperf3's own count of datagrams that reached the server, and for a queue
 * reader its CPU time (utime+stime of the reader processes from
 * /proc/<pid>/stat) divided by the packets it handled (queue `id_sequence`
 * minus `user_dropped` from /proc/net/netfilter/nfnetlink_queue), plus the
 * packets the kernel dropped because the queue was full. For fastpath the
 * reader CPU is divided by all delivered packets instead (most never reach
 * the reader), and a run also reports the kernel's hits (the difference over
 * the run of the packets of counters `hits4` + `hits6` in `nft -j list
 * counters table inet nfqlbbench`, read outside the CPU-time window because
 * nft 1.0.6 fetches every element of the table's maps to list them: seconds
 * for a few 10^5 elements), the share of delivered packets that
 * were queued (handled / delivered), and the elements the daemon added
 * (`F_ADDS`), the adds the kernel refused (`F_ADD_FAILURES`, e.g. map full)
 * and the offers skipped while adds pause after a full map
 * (`F_MAP_FULL_SKIPS`), per second, from its status object
 * `/dev/shm/nfqlb-fastpath.<netns inode>.nfqlbbench`, found by the daemon's
 * pid (these three columns appear when fastpath is measured). Every run also gives the machine's busy CPU time
 * (/proc/stat) per delivered packet. The table shows medians, then the
 * ratios nfqlb / c, nfqlb / kernel, fastpath / kernel and fastpath / nfqlb
 * (delivered packets; for fastpath / nfqlb also reader and machine CPU per
 * delivered packet).
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
 *   [--sender=iperf3|flood|newflows] [--paths=nfqlb,fastpath,c,kernel]
 *   [--targets=4] [--baseline-cli=OTHER_CHECKOUT/cli.ts]
 *   [--fastpath-args="--fastpath-min-packets=1 ..."]
 *
 * `--fastpath-args` are extra arguments of the fastpath path's daemon,
 * separated by spaces (e.g. `--fastpath-min-packets=1`,
 * `--fastpath-timeout=2000`, `--fastpath-size=...`). The table name
 * `nfqlbbench` is fixed (it lives in the benchmark's own LB namespace).
 *
 * `--baseline-cli` adds the path **base**: `nfqlb lb` of another checkout
 * (e.g. the previous commit in a `git worktree`), on queues 2N..3N-1, measured
 * alternately with the others in the same run, so a change's effect on the
 * data path is a same-run ratio (nfqlb / base) rather than a comparison of
 * two runs on a noisy machine.
 *
 * `--bitrate` is iperf3's `-b`, per stream (0 = unbounded); `--qlength` is
 * passed to all readers.
 * @module
 */
import { main } from "../cli/main.ts";
import { exec, isRoot, run, TestNet } from "../testkit/netns.ts";
import { openShm, type ShmMapping, unlinkShm } from "../ffi/shm.ts";
import {
  F_ADD_FAILURES,
  F_ADDS,
  F_MAP_FULL_SKIPS,
  STATUS_PREFIX,
  statusPid,
  statusValues,
} from "../lib/fastpath/status.ts";

const USAGE = "usage: deno run --allow-all bench/lb_throughput.ts [--queues=N] [--runs=R] " +
  "[--duration=S] [--streams=P] [--length=BYTES] [--bitrate=RATE] [--qlength=N] " +
  "[--sender=iperf3|flood|newflows] [--paths=nfqlb,fastpath,c,kernel,base] [--targets=T] " +
  '[--baseline-cli=PATH] [--fastpath-args="ARG ..."]';
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
  "fastpath-args",
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
if (SENDER !== "iperf3" && SENDER !== "flood" && SENDER !== "newflows") {
  console.error(`--sender=${SENDER}: expected iperf3, flood or newflows`);
  Deno.exit(2);
}
/** The udp_flood binary sends (flood, newflows); iperf3 otherwise. */
const FLOOD = SENDER !== "iperf3";
const FASTPATH_TABLE = "nfqlbbench";
const FASTPATH_ARGS = (opt.get("fastpath-args") ?? "").split(/\s+/).filter((a) => a !== "");
if (
  FASTPATH_ARGS.some((a) => !a.startsWith("--") || /^--(queue|fastpath-table|tshm|ft_shm)=/.test(a))
) {
  console.error(
    `--fastpath-args=${opt.get("fastpath-args")}: expected daemon options --NAME[=VALUE] ` +
      "(not --queue, --fastpath-table, --tshm, --ft_shm: the benchmark sets them)",
  );
  Deno.exit(2);
}
type Path = "nfqlb" | "fastpath" | "c" | "kernel" | "base";
const BASELINE_CLI = opt.get("baseline-cli");
const ALL_PATHS: readonly Path[] = BASELINE_CLI === undefined
  ? ["nfqlb", "fastpath", "c", "kernel"]
  : ["nfqlb", "base", "fastpath", "c", "kernel"];
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
const FTSHM_FP = `${FTSHM}-fp`;

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
if (FLOOD) {
  const b = await buildC("udp_flood", []);
  if (typeof b !== "string") {
    console.error(`--sender=${SENDER} needs cc to build bench/c/udp_flood.c: ${b.error}`);
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
/** The fastpath path's daemon and its status object (mapped read-only), once started. */
let fpChild: Deno.ChildProcess | undefined;
let fpStatus: ShmMapping | undefined;
/** Name of the last fastpath daemon's status object. */
let fpStatusName: string | undefined;
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
    fpStatus?.close();
    // The daemon unlinks its status object on exit; not when it had to be killed.
    if (fpChild !== undefined && fpStatusName !== undefined) {
      try {
        const m = openShm(fpStatusName, false);
        const pid = statusPid(m.buffer);
        m.close();
        if (pid === fpChild.pid) unlinkShm(fpStatusName);
      } catch {
        // gone
      }
    }
    // Removes the namespaces, and with them the nftables table if the daemon left it.
    await net.cleanup();
    for (const name of [TSHM, FTSHM, FTSHM_BASE, FTSHM_FP]) {
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

/**
 * Packets the fast path's kernel rules marked so far: counters `hits4` + `hits6` of table
 * `inet nfqlbbench` in `ns`.
 */
async function fastpathHits(ns: string): Promise<number> {
  const out = await net.run(ns, ["nft", "-j", "list", "counters", "table", "inet", FASTPATH_TABLE]);
  const j = JSON.parse(out) as { nftables: { counter?: { name: string; packets: number } }[] };
  const counters = j.nftables.flatMap((o) => o.counter === undefined ? [] : [o.counter]);
  const hits = counters.filter((c) => c.name === "hits4" || c.name === "hits6");
  if (hits.length !== 2) throw new Error(`nft list counters: no hits4/hits6 in ${out}`);
  return hits.reduce((a, c) => a + c.packets, 0);
}

/**
 * Map the status object of the fastpath daemon `pid`: `nfqlb-fastpath.<table>`, or
 * `nfqlb-fastpath.<netns inode>.<table>`, in /dev/shm, whichever holds that pid.
 */
async function openFastpathStatus(pid: number): Promise<{ name: string; mem: ShmMapping }> {
  for (let k = 0; k < 40; k++) {
    for (const e of Deno.readDirSync("/dev/shm")) {
      const n = e.name;
      if (!n.startsWith(STATUS_PREFIX) || !n.endsWith(`.${FASTPATH_TABLE}`)) continue;
      try {
        const mem = openShm(n, false);
        if (statusPid(mem.buffer) === pid) return { name: n, mem };
        mem.close();
      } catch {
        // gone, or not one
      }
    }
    await sleep(25);
  }
  throw new Error(`no status object ${STATUS_PREFIX}*${FASTPATH_TABLE} of pid ${pid} in /dev/shm`);
}

/**
 * Elements added, adds the kernel refused, and offers skipped while adds pause after a full
 * map, so far, from the fastpath daemon's status object.
 */
function fastpathAdds(): { adds: number; failures: number; skips: number } {
  if (fpStatus === undefined) return { adds: NaN, failures: NaN, skips: NaN };
  const v = statusValues(fpStatus.buffer);
  return { adds: v[F_ADDS], failures: v[F_ADD_FAILURES], skips: v[F_MAP_FULL_SKIPS] };
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
async function startReader(
  ns: string,
  cmd: string[],
  lines: number,
  quiet = false,
): Promise<Deno.ChildProcess> {
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
  if (!quiet) log(`${cmd.slice(0, 4).map((a) => a.split("/").pop()).join(" ")}...: ${text.trim()}`);
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
  /** Reader CPU time per delivered packet, µs (fastpath: the per-packet figure of the table). */
  readerUsPerDelivered: number;
  userUsPerDelivered: number;
  /** fastpath: packets marked by the kernel (hits4 + hits6), per second. */
  hits: number;
  /** fastpath: handled / delivered. */
  queuedShare: number;
  /** fastpath: elements added, adds refused, offers skipped (map full), per second. */
  adds: number;
  addFailures: number;
  addSkips: number;
}

/** How packets of one path reach (or bypass) a queue reader. */
interface PathSetup {
  label: string;
  /** Queue range of the NFQUEUE rule; none for the kernel path. */
  queues?: { first: number; last: number };
  /** Reader processes whose CPU time is measured. */
  pids: number[];
  /** fastpath: the rule skips marked packets; hits and adds are read. */
  fastpath?: boolean;
  /** Started before each measurement (its reader pids) and stopped after it. */
  start?: () => Promise<number[]>;
  stop?: () => Promise<void>;
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
  /** The k-th block of QUEUES queues: first, last and the `--queue` argument. */
  const queueBlock = (k: number) => {
    const first = k * QUEUES, last = (k + 1) * QUEUES - 1;
    return { first, last, arg: QUEUES === 1 ? String(first) : `${first}:${last}` };
  };
  /** `nfqlb lb` of checkout `cli` on `--queue=queue`, with its own fragment object. */
  const lbCommand = (cli: string, ftshm: string, queue: string, extra: string[] = []) => [
    DENO,
    "run",
    "--allow-all",
    cli,
    "lb",
    `--tshm=${TSHM}`,
    `--ft_shm=${ftshm}`,
    `--queue=${queue}`,
    `--qlength=${QLENGTH}`,
    ...extra,
  ];
  const queueArg = queueBlock(0).arg;
  const lbChild = await startReader(lb, lbCommand(CLI, FTSHM, queueArg), QUEUES);
  setups.set("nfqlb", {
    label: `nfqlb lb --queue=${queueArg}`,
    queues: { first: 0, last: QUEUES - 1 },
    pids: [lbChild.pid],
  });
  if (paths.includes("base") && BASELINE_CLI !== undefined) {
    const { first, last, arg: baseArg } = queueBlock(2);
    const baseChild = await startReader(lb, lbCommand(BASELINE_CLI, FTSHM_BASE, baseArg), QUEUES);
    setups.set("base", {
      label: `baseline nfqlb lb --queue=${baseArg} (${BASELINE_CLI})`,
      queues: { first, last },
      pids: [baseChild.pid],
    });
  }
  if (paths.includes("fastpath")) {
    const { first, last, arg: fpArg } = queueBlock(3);
    // `list tables`: names only (listing the table itself would fetch all its elements).
    const tableGone = async () => {
      for (let k = 0; k < 40; k++) {
        const r = await net.run(lb, ["nft", "list", "tables", "inet"]);
        if (!r.split("\n").some((l) => l.trim() === `table inet ${FASTPATH_TABLE}`)) return true;
        await sleep(50);
      }
      return false;
    };
    /** Start the daemon (and with it its table) for one measurement; its pid. */
    const startFastpath = async (): Promise<number[]> => {
      const child = await startReader(
        lb,
        lbCommand(CLI, FTSHM_FP, fpArg, [
          "--fastpath",
          `--fastpath-table=${FASTPATH_TABLE}`,
          ...FASTPATH_ARGS,
        ]),
        QUEUES,
        fpChild !== undefined,
      );
      fpChild = child;
      // The table exists once the daemon has started its queues (the writer thread comes first).
      const table = await net.run(lb, ["nft", "list", "table", "inet", FASTPATH_TABLE]);
      if (!/chain prerouting/.test(table)) {
        throw new Error(`nft list table inet ${FASTPATH_TABLE}: no prerouting chain:\n${table}`);
      }
      const st = await openFastpathStatus(child.pid);
      fpStatus = st.mem;
      fpStatusName = st.name;
      // Let the start-up settle (module compilation, first scans) before counting.
      await sleep(300);
      return [child.pid];
    };
    /** SIGTERM; the daemon must exit with 0 and its table must be gone. */
    const stopFastpath = async (): Promise<void> => {
      const child = fpChild;
      if (child === undefined || !readers.includes(child)) return;
      fpStatus?.close();
      fpStatus = undefined;
      await stopReader(child);
      readers.splice(readers.indexOf(child), 1);
      const st = await child.status;
      if (st.code !== 0) log(`the fastpath daemon (pid ${child.pid}) exited with ${st.code}`);
      if (!await tableGone()) {
        throw new Error(`table inet ${FASTPATH_TABLE} is still there after the daemon exited`);
      }
    };
    setups.set("fastpath", {
      label: `nfqlb lb --queue=${fpArg} --fastpath${
        FASTPATH_ARGS.length > 0 ? " " + FASTPATH_ARGS.join(" ") : ""
      }`,
      queues: { first, last },
      pids: [],
      fastpath: true,
      start: startFastpath,
      stop: stopFastpath,
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

  type Queues = { first: number; last: number };
  /** The queue rule; `unmarked`: only packets the fast path has not marked (mark 0). */
  const ruleFor = (q: Queues, unmarked: boolean) => [
    "PREROUTING",
    "-d",
    VIP,
    "-p",
    "udp",
    ...(unmarked ? ["-m", "mark", "--mark", "0"] : []),
    "-j",
    "NFQUEUE",
    ...(q.first === q.last
      ? ["--queue-num", String(q.first)]
      : ["--queue-balance", `${q.first}:${q.last}`]),
  ];
  const ruleOn = (q: Queues, unmarked = false) =>
    net.run(lb, ["iptables", "-t", "mangle", "-A", ...ruleFor(q, unmarked)]);
  const ruleOff = (q: Queues, unmarked = false) =>
    net.run(lb, ["iptables", "-t", "mangle", "-D", ...ruleFor(q, unmarked)]);

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

  /** Run the senders for DURATION seconds; iperf3's received datagrams/s (NaN for udp_flood). */
  const send = async (): Promise<number> => {
    const outs = await Promise.all(clients.map((src, i) =>
      spawnOutput(
        cl,
        FLOOD
          ? [
            floodBin,
            src,
            VIP,
            String(BASE_PORT + i),
            String(streamsOf(i)),
            String(LENGTH),
            String(DURATION),
            ...(SENDER === "newflows" ? ["newflows"] : []),
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
    if (FLOOD) return NaN;
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
    const pids = setup.start === undefined ? setup.pids : await setup.start();
    try {
      return await measureWith(setup, pids);
    } finally {
      await setup.stop?.();
    }
  };
  const measureWith = async (setup: PathSetup, pids: number[]): Promise<RunResult> => {
    const q = setup.queues;
    const fp = setup.fastpath === true;
    if (q !== undefined) await ruleOn(q, fp);
    try {
      const stats = () => q === undefined ? null : queueStats(lb, q.first, q.last);
      const hits = () => fp ? fastpathHits(lb) : Promise.resolve(NaN);
      const off0 = await devStat(lb, "vcl");
      const del0 = await devStat(tg, "veth0");
      const q0 = await stats();
      const hits0 = await hits();
      const adds0 = fastpathAdds();
      const cpu0 = cpuSeconds(pids);
      const busy0 = machineBusySeconds();
      const iperfReceived = await send();
      // Let the queue drain before reading the counters.
      await sleep(300);
      const off1 = await devStat(lb, "vcl");
      const del1 = await devStat(tg, "veth0");
      const q1 = await stats();
      const adds1 = fastpathAdds();
      const cpu1 = cpuSeconds(pids);
      const busy1 = machineBusySeconds();
      // Outside the CPU window: nft fetches every set element to list the counters (seconds
      // for some 10^5 elements). Nothing is sent any more, so the counters no longer move.
      const hits1 = await hits();
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
        readerUsPerDelivered: q !== undefined && delivered > 0 ? cpu / delivered * 1e6 : NaN,
        userUsPerDelivered: q !== undefined && delivered > 0 ? user / delivered * 1e6 : NaN,
        hits: (hits1 - hits0) / DURATION,
        queuedShare: fp && delivered > 0 ? handled / delivered : NaN,
        adds: fp ? (adds1.adds - adds0.adds) / DURATION : NaN,
        addFailures: fp ? (adds1.failures - adds0.failures) / DURATION : NaN,
        addSkips: fp ? (adds1.skips - adds0.skips) / DURATION : NaN,
      };
    } finally {
      if (q !== undefined) await ruleOff(q, fp);
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
          (path === "fastpath"
            ? `, kernel hits ${fmt(res.hits)}/s, queued ${(res.queuedShare * 100).toFixed(2)}%` +
              ` of delivered, reader CPU ${res.readerUsPerDelivered.toFixed(3)} µs/delivered ` +
              `packet, adds ${fmt(res.adds)}/s (refused ${fmt(res.addFailures)}/s, skipped ` +
              `${fmt(res.addSkips)}/s)`
            : "") +
          `, machine CPU ${res.machineUsPerPacket.toFixed(2)} µs/delivered packet`,
      );
    }
  }

  const med = (path: Path, k: keyof RunResult) => median(results.get(path)!.map((r) => r[k]));
  const sender = SENDER === "flood"
    ? `${STREAMS} streams, udp_flood (sendmmsg)`
    : SENDER === "newflows"
    ? "a new 5-tuple per datagram, udp_flood newflows (raw socket, sendmmsg)"
    : `${STREAMS} streams, iperf3, ${BITRATE === "0" ? "unbounded" : BITRATE}`;
  const fpMeasured = results.has("fastpath");
  const fpOptions = fpMeasured
    ? `, fastpath ${FASTPATH_ARGS.length > 0 ? FASTPATH_ARGS.join(" ") : "defaults"}`
    : "";
  console.log(
    `\n### nfqlb lb throughput: ${LENGTH}-byte UDP, ${sender}, ` +
      `${DURATION} s × ${RUNS} runs (medians), ${QUEUES} queue${QUEUES > 1 ? "s" : ""}, ` +
      `${TARGETS} target${TARGETS > 1 ? "s" : ""}, ` +
      `qlength ${QLENGTH}${fpOptions}, ` +
      `${navigator.hardwareConcurrency} CPUs\n`,
  );
  console.log(
    "| path | offered pkt/s | delivered pkt/s | iperf3 received pkt/s | handled pkt/s | " +
      "queue-full drops/s | " +
      (fpMeasured
        ? "reader CPU µs/pkt (user), per handled pkt; fastpath: per delivered pkt | "
        : "reader CPU µs/pkt (user) | ") +
      "reader CPU, cores | machine CPU µs/delivered pkt |" +
      (fpMeasured
        ? " kernel hits pkt/s | queued / delivered | fast-path adds/s (refused, skipped) |"
        : ""),
  );
  console.log(`|---|--:|--:|--:|--:|--:|--:|--:|--:|${fpMeasured ? "--:|--:|--:|" : ""}`);
  const us = (path: Path, all: keyof RunResult, user: keyof RunResult) =>
    `${med(path, all).toFixed(2)} (${med(path, user).toFixed(2)})`;
  for (const path of paths) {
    const q = path !== "kernel";
    const f = path === "fastpath";
    const cells = [
      setups.get(path)!.label,
      fmt(med(path, "offered")),
      fmt(med(path, "delivered")),
      fmt(med(path, "iperfReceived")),
      q ? fmt(med(path, "handled")) : "–",
      q ? fmt(med(path, "queueDrops")) : "–",
      f
        ? us(path, "readerUsPerDelivered", "userUsPerDelivered")
        : q
        ? us(path, "cpuUsPerPacket", "userUsPerPacket")
        : "–",
      q ? med(path, "readerCpuShare").toFixed(2) : "–",
      med(path, "machineUsPerPacket").toFixed(2),
      ...(fpMeasured
        ? [
          f ? fmt(med(path, "hits")) : "–",
          f ? `${(med(path, "queuedShare") * 100).toFixed(2)}%` : "–",
          f
            ? `${fmt(med(path, "adds"))} (${fmt(med(path, "addFailures"))}, ${
              fmt(med(path, "addSkips"))
            })`
            : "–",
        ]
        : []),
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
  ratio("fastpath", "kernel", "delivered", "fastpath / kernel, delivered pkt/s");
  ratio("fastpath", "nfqlb", "delivered", "fastpath / nfqlb, delivered pkt/s");
  ratio(
    "fastpath",
    "nfqlb",
    "readerUsPerDelivered",
    "fastpath / nfqlb, reader CPU per delivered packet",
  );
  ratio(
    "fastpath",
    "nfqlb",
    "machineUsPerPacket",
    "fastpath / nfqlb, machine CPU per delivered packet",
  );
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
