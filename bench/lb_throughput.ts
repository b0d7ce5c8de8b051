/**
 * Throughput of `nfqlb lb` on the real data path, as root:
 *
 * ```
 *   cl (iperf3 -c, 10.205.0.10+) --veth-- lb (nfqlb lb) --veth-- tg (VIP 10.205.255.1 on lo, iperf3 -s)
 * ```
 *
 * The receiver is a target namespace behind the LB, not the LB namespace
 * itself: that is the path `nfqlb lb` exists for (NFQUEUE verdict with a
 * fwmark, then policy routing `ip rule fwmark 201 table 201` forwards to the
 * target), so the measurement includes forwarding and the re-injection of
 * every packet after its verdict.
 *
 * iperf3 floods 64-byte UDP datagrams to the VIP (8 parallel streams,
 * `-b 0` = unbounded unless `--bitrate` is given) for `--duration` seconds.
 * Two set-ups alternate, `--runs` times each:
 * - **nfqlb**: `iptables -t mangle -A PREROUTING -d VIP -p udp -j NFQUEUE`
 *   (`--queue-num 0`, or `--queue-balance 0:N-1` with `--queues=N`), served
 *   by `nfqlb lb --queue=0` / `--queue=0:N-1`;
 * - **kernel**: the same without the queue rule (the main table routes the
 *   VIP to the same target), i.e. plain forwarding.
 *
 * Per run: offered packets/s (packets received on the LB's client-side
 * veth), delivered packets/s (packets received on the target's veth),
 * iperf3's own count of datagrams that reached the server, and for nfqlb the
 * LB's CPU time (utime+stime of the whole lb process from /proc/<pid>/stat)
 * divided by the packets it handled (queue `id_sequence` minus
 * `user_dropped` from /proc/net/netfilter/nfnetlink_queue), plus the packets
 * the kernel dropped because the queue was full. The table shows medians.
 *
 * `--queue-balance` hashes only the addresses (and protocol), not the ports,
 * so one client address would put all streams in one queue. With
 * `--queues=N` the client therefore uses N source addresses, found by
 * probing so that each queue gets one, and runs N iperf3 clients (one per
 * address, streams split between them); the kernel runs use the same
 * clients.
 *
 * Usage: deno run --allow-all bench/lb_throughput.ts [--queues=1] [--runs=5]
 *   [--duration=5] [--streams=8] [--length=64] [--bitrate=0] [--qlength=1024]
 *
 * `--bitrate` is iperf3's `-b`, per stream (0 = unbounded); `--qlength` is
 * passed to `nfqlb lb`.
 * @module
 */
import { main } from "../cli/main.ts";
import { isRoot, run, TestNet } from "../tests/netns.ts";

const USAGE = "usage: deno run --allow-all bench/lb_throughput.ts [--queues=N] [--runs=R] " +
  "[--duration=S] [--streams=P] [--length=BYTES] [--bitrate=RATE] [--qlength=N]";
const OPTIONS = ["queues", "runs", "duration", "streams", "length", "bitrate", "qlength"];
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
if (STREAMS < QUEUES) {
  console.error("--streams must be at least --queues (one iperf3 client per queue)");
  Deno.exit(2);
}

if (!isRoot()) {
  console.error("lb_throughput: needs root (network namespaces, NFQUEUE)");
  Deno.exit(1);
}

const DENO = Deno.execPath();
const CLI = new URL("../cli.ts", import.meta.url).pathname;
const VIP = "10.205.255.1";
const LB_CL = "10.205.0.1";
const LB_TG = "10.205.1.1";
const TG = "10.205.1.2";
const MARK = "201";
const BASE_PORT = 5201;

const token = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
const TSHM = `nfqlbbench-${Deno.pid}-${token}-t`;
const FTSHM = `nfqlbbench-${Deno.pid}-${token}-ft`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const T0 = performance.now();
const log = (t: string) => console.error(`[${((performance.now() - T0) / 1000).toFixed(1)}s] ${t}`);

/** Run `nfqlb <args>` in-process; exit on failure. */
async function nfqlb(...args: string[]): Promise<void> {
  let err = "";
  const code = await main("nfqlb", args, { out: () => undefined, err: (t) => err += t });
  if (code !== 0) throw new Error(`nfqlb ${args.join(" ")}: exit ${code}: ${err}`);
}

// ---------------------------------------------------------------- clean-up

const net = await TestNet.create();
let lbProc: Deno.ChildProcess | null = null;
let cleaned: Promise<void> | null = null;

function cleanup(): Promise<void> {
  cleaned ??= (async () => {
    if (lbProc !== null) {
      try {
        Deno.kill(lbProc.pid, "SIGCONT");
        Deno.kill(lbProc.pid, "SIGTERM");
      } catch {
        // already gone
      }
      const t = setTimeout(() => {
        try {
          lbProc?.kill("SIGKILL");
        } catch {
          // already gone
        }
      }, 3000);
      await lbProc.status.catch(() => undefined);
      clearTimeout(t);
    }
    await net.cleanup();
    for (const name of [TSHM, FTSHM]) {
      await nfqlb("delete", `--shm=${name}`).catch((e) => log(String(e)));
    }
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
}

/** Sum of our queues' counters in /proc/net/netfilter/nfnetlink_queue of `ns`. */
async function queueStats(ns: string): Promise<QueueStats & { perQueue: Map<number, number> }> {
  const out = await net.run(ns, ["cat", "/proc/net/netfilter/nfnetlink_queue"]);
  const s = { seq: 0, dropped: 0, userDropped: 0, perQueue: new Map<number, number>() };
  for (const l of out.split("\n")) {
    const f = l.trim().split(/\s+/).map(Number);
    if (f.length < 8 || f[0] >= QUEUES) continue;
    s.dropped += f[5];
    s.userDropped += f[6];
    s.seq += f[7];
    s.perQueue.set(f[0], f[7]);
  }
  return s;
}

const CLK_TCK = Number((await run(["getconf", "CLK_TCK"])).trim()) || 100;

/** utime and stime of process `pid` (all threads), in seconds. */
function cpuSeconds(pid: number): { user: number; sys: number } {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14 and 15 of proc_pid_stat(5), counted from the state field (3).
  return { user: Number(f[11]) / CLK_TCK, sys: Number(f[12]) / CLK_TCK };
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
  lbCpuShare: number;
  machineUsPerPacket: number;
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
  await ip(lb, "rule", "add", "fwmark", MARK, "table", MARK);
  await ip(lb, "route", "add", "default", "via", TG, "table", MARK);
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
  await nfqlb("activate", `--shm=${TSHM}`, MARK);

  // nfqlb lb
  const queueArg = QUEUES === 1 ? "0" : `0:${QUEUES - 1}`;
  const lbChild = net.spawn(lb, [
    DENO,
    "run",
    "--allow-all",
    CLI,
    "lb",
    `--tshm=${TSHM}`,
    `--ft_shm=${FTSHM}`,
    `--queue=${queueArg}`,
    `--qlength=${QLENGTH}`,
  ]);
  lbProc = lbChild;
  const lbErr = new Response(lbChild.stderr).text();
  {
    const reader = lbChild.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<null>((r) => timer = setTimeout(() => r(null), 30000));
    try {
      while ((text.match(/^queue_length=/gm) ?? []).length < QUEUES) {
        const r = await Promise.race([reader.read(), timeout]);
        if (r === null || r.done) {
          throw new Error(`nfqlb lb did not start:\n${text}\n${r === null ? "" : await lbErr}`);
        }
        text += r.value;
      }
    } finally {
      clearTimeout(timer);
    }
    log(text.trim());
    // Keep draining stdout so the daemon never blocks on a full pipe.
    (async () => {
      for (;;) if ((await reader.read()).done) break;
    })().catch(() => undefined);
  }

  const nfqRule = [
    "PREROUTING",
    "-d",
    VIP,
    "-p",
    "udp",
    "-j",
    "NFQUEUE",
    ...(QUEUES === 1 ? ["--queue-num", "0"] : ["--queue-balance", queueArg]),
  ];
  const ruleOn = () => net.run(lb, ["iptables", "-t", "mangle", "-A", ...nfqRule]);
  const ruleOff = () => net.run(lb, ["iptables", "-t", "mangle", "-D", ...nfqRule]);

  // Client addresses: one per queue (probed: which queue does a datagram from it go to?).
  const clients: string[] = [firstClient];
  if (QUEUES > 1) {
    await ruleOn();
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
      const before = (await queueStats(lb)).perQueue;
      await probe(src);
      let hit: number | undefined;
      for (let i = 0; i < 100 && hit === undefined; i++) {
        const after = (await queueStats(lb)).perQueue;
        hit = [...after].find(([q, seq]) => seq > (before.get(q) ?? 0))?.[0];
        if (hit === undefined) await sleep(10);
      }
      if (hit !== undefined && !byQueue.has(hit)) byQueue.set(hit, src);
    }
    await ruleOff();
    if (byQueue.size < QUEUES) {
      throw new Error(`probing found source addresses for queues ${[...byQueue.keys()]} only`);
    }
    clients.length = 0;
    for (let q = 0; q < QUEUES; q++) clients.push(byQueue.get(q)!);
    log(`client addresses per queue: ${clients.join(", ")}`);
  }

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

  const streamsOf = (i: number) =>
    Math.floor(STREAMS / clients.length) + (i < STREAMS % clients.length ? 1 : 0);

  const measure = async (mode: "nfqlb" | "kernel"): Promise<RunResult> => {
    if (mode === "nfqlb") await ruleOn();
    try {
      const off0 = await devStat(lb, "vcl");
      const del0 = await devStat(tg, "veth0");
      const q0 = await queueStats(lb);
      const cpu0 = cpuSeconds(lbChild.pid);
      const busy0 = machineBusySeconds();
      const outs = await Promise.all(clients.map((src, i) =>
        spawnOutput(cl, [
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
        ])
      ));
      // Let the queue drain before reading the counters.
      await sleep(300);
      const off1 = await devStat(lb, "vcl");
      const del1 = await devStat(tg, "veth0");
      const q1 = await queueStats(lb);
      const cpu1 = cpuSeconds(lbChild.pid);
      const busy1 = machineBusySeconds();
      let iperfReceived = 0;
      for (const o of outs) {
        const j = JSON.parse(o.stdout);
        if (j.error !== undefined) throw new Error(`iperf3: ${j.error}`);
        const s = j.end.sum;
        iperfReceived += (s.packets - s.lost_packets) / s.seconds;
      }
      const handled = (q1.seq - q0.seq) - (q1.userDropped - q0.userDropped);
      const user = cpu1.user - cpu0.user;
      const cpu = user + cpu1.sys - cpu0.sys;
      const delivered = del1 - del0;
      return {
        offered: (off1 - off0) / DURATION,
        delivered: delivered / DURATION,
        iperfReceived,
        handled: handled / DURATION,
        queueDrops: (q1.dropped - q0.dropped) / DURATION,
        userDrops: (q1.userDropped - q0.userDropped) / DURATION,
        cpuUsPerPacket: handled > 0 ? cpu / handled * 1e6 : NaN,
        userUsPerPacket: handled > 0 ? user / handled * 1e6 : NaN,
        lbCpuShare: cpu / DURATION,
        machineUsPerPacket: (busy1 - busy0) / delivered * 1e6,
      };
    } finally {
      if (mode === "nfqlb") await ruleOff();
    }
  };

  const results: Record<"nfqlb" | "kernel", RunResult[]> = { nfqlb: [], kernel: [] };
  const fmt = (x: number) => Number.isNaN(x) ? "–" : Math.round(x).toLocaleString("en-US");
  for (let r = 1; r <= RUNS; r++) {
    for (const mode of ["nfqlb", "kernel"] as const) {
      await sleep(500);
      const res = await measure(mode);
      results[mode].push(res);
      log(
        `run ${r}/${RUNS} ${mode}: offered ${fmt(res.offered)}/s, delivered ${
          fmt(res.delivered)
        }/s, iperf3 ${fmt(res.iperfReceived)}/s` +
          (mode === "nfqlb"
            ? `, handled ${fmt(res.handled)}/s, queue-full drops ${fmt(res.queueDrops)}/s, ` +
              `socket-full drops ${fmt(res.userDrops)}/s, ` +
              `lb CPU ${res.cpuUsPerPacket.toFixed(2)} µs/packet (${
                (res.lbCpuShare * 100).toFixed(0)
              }% of a core)`
            : "") +
          `, machine CPU ${res.machineUsPerPacket.toFixed(2)} µs/delivered packet`,
      );
    }
  }

  const med = (mode: "nfqlb" | "kernel", k: keyof RunResult) =>
    median(results[mode].map((r) => r[k]));
  const rate = BITRATE === "0" ? "unbounded" : BITRATE;
  console.log(
    `\n### nfqlb lb throughput: ${LENGTH}-byte UDP, ${STREAMS} streams, ${rate}, ` +
      `${DURATION} s × ${RUNS} runs (medians), ${QUEUES} queue${QUEUES > 1 ? "s" : ""}, ` +
      `qlength ${QLENGTH}, ` +
      `${navigator.hardwareConcurrency} CPUs\n`,
  );
  console.log(
    "| path | offered pkt/s | delivered pkt/s | iperf3 received pkt/s | lb handled pkt/s | " +
      "queue-full drops/s | lb CPU µs/pkt (user) | lb CPU, cores | machine CPU µs/delivered pkt |",
  );
  console.log("|---|--:|--:|--:|--:|--:|--:|--:|--:|");
  const row = (label: string, mode: "nfqlb" | "kernel") => {
    const q = mode === "nfqlb";
    const cells = [
      label,
      fmt(med(mode, "offered")),
      fmt(med(mode, "delivered")),
      fmt(med(mode, "iperfReceived")),
      q ? fmt(med(mode, "handled")) : "–",
      q ? fmt(med(mode, "queueDrops")) : "–",
      q
        ? `${med(mode, "cpuUsPerPacket").toFixed(2)} (${med(mode, "userUsPerPacket").toFixed(2)})`
        : "–",
      q ? med(mode, "lbCpuShare").toFixed(2) : "–",
      med(mode, "machineUsPerPacket").toFixed(2),
    ];
    console.log(`| ${cells.join(" | ")} |`);
  };
  row(`nfqlb lb --queue=${queueArg}`, "nfqlb");
  row("kernel (no queue rule)", "kernel");
  console.log(
    `\nnfqlb / kernel delivered pkt/s: ${
      (med("nfqlb", "delivered") / med("kernel", "delivered")).toFixed(3)
    }`,
  );
  // Stop the daemon cleanly: SIGTERM, exit status 0.
  Deno.kill(lbChild.pid, "SIGTERM");
  const st = await lbChild.status;
  lbProc = null;
  const lbErrText = await lbErr;
  if (st.code !== 0 || lbErrText !== "") {
    log(`nfqlb lb exited with ${st.code}; stderr:\n${lbErrText}`);
  }
} finally {
  await cleanup();
  for (const s of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    Deno.removeSignalListener(s, onSignal);
  }
}
