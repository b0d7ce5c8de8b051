/**
 * End-to-end test of `nfqlb flowlb` (issue 4), as root, in private network
 * namespaces:
 *
 * ```
 *   cl (10.204.0.2-5, fd00:204::2-3; e2e_client.ts, e2e_flow_probe.ts, ping)
 *    | veth
 *   lb (nfqlb flowlb --queue=0:3; mangle PREROUTING -d VIP -j NFQUEUE --queue-balance 0:3;
 *       ip rule fwmark 10i table 10i; main table: VIP via t1 for unmarked/nolb packets)
 *    | veth x4
 *   t1..t4 (VIP 10.204.255.1 / fd00:204:ffff::1 on lo; e2e_target.ts on ports 80, 5001, 9899)
 * ```
 *
 * Two target tables in shared memory: A = {t1, t2} (fwmarks 101, 102) and
 * B = {t3, t4} (103, 104). Flows are set with the real CLI run inside the LB
 * namespace (the control socket `unix:nfqlb` is an abstract socket, per
 * namespace). Every expected placement comes from
 * `nfqlb fwmark --shm=<table> --proto=…` (run in-process). Steps:
 * 1. flows by protocol and port: TCP/80 → A, UDP/5001 → B; every exchange
 *    (IPv4 and IPv6) lands on the target `fwmark` predicts in its table;
 * 2. packets no flow matches are dropped (default `--nolb_fwmark=-1`): the
 *    client sees a timeout although the LB has a route to the VIP; with
 *    `nfqlb loglevel 6` each is logged as `Failed flowLookup` on stderr;
 * 3. overlapping flows: a UDP catch-all below UDP/5001 only takes the other
 *    ports; raised above it, it takes UDP/5001 too;
 * 4. `flow-delete` and `flow-set` take effect for the very next packet (the
 *    probes are sent on all four queues as soon as the command returns);
 * 5. without `--promiscuous_ping` ping is not matched by the TCP/80 flow;
 * 6. SCTP over UDP (`--udpencap=9899`): the `#sctp` helper and `sctp` flows
 *    are listed byte-exact (docs/COMPATIBILITY.md#flows); UDP datagrams to 9899 carrying an SCTP
 *    common header reach the target predicted for the SCTP ports
 *    (`--hash_mode=1` hashes ports only); an SCTP port outside the flow is
 *    dropped; the match counters count exactly these packets;
 * 7. fragmented UDP (3000 bytes, IPv4 and IPv6): the first fragment is
 *    classified by flow and the others follow it (docs/COMPATIBILITY.md#packet-decisions; IPv6 first
 *    fragments take the ports after the fragment header, docs/COMPATIBILITY.md#differences D22–D23), so each
 *    datagram is answered by the target `fwmark` predicts;
 * 8. `--flow-state`: SIGTERM (exit 0, queues unbound), restart with the same
 *    file: the same flow list and every tuple on the same target;
 * 9. with `--promiscuous_ping` (as Meridio runs it) ping matches the TCP/80
 *    flow and is answered by a table-A target;
 * 10. `--nolb_fwmark=77` with `-m mark --mark 77 -j REJECT` in FORWARD: TCP
 *    gets a reset (ECONNREFUSED, `--reject-with tcp-reset`), UDP an ICMP
 *    port unreachable (ECONNREFUSED on the connected socket);
 * 11. SIGTERM: exit 0, queues unbound, the targets exit cleanly.
 */
import assert from "node:assert/strict";
import { runCli } from "../../testkit/cli.ts";
import {
  Addressing,
  buildTopology,
  type ClientResult,
  tupleKey,
} from "../../testkit/e2e_topology.ts";
import { LineProcess } from "../../testkit/line_process.ts";
import { type CommandResult, isRoot, type TestNet, withTestNet } from "../../testkit/netns.ts";

const ROOT = isRoot();
if (!ROOT) {
  console.warn("flowlb_e2e_test: not running as root: nfqlb flowlb end-to-end test skipped");
}

const DENO = Deno.execPath();
const CLI = new URL("../../cli.ts", import.meta.url).pathname;
const FIXTURES = new URL("../../testkit/fixtures/", import.meta.url).pathname;
const TARGET = [DENO, "run", "--allow-all", FIXTURES + "e2e_target.ts"];
const CLIENT = [DENO, "run", "--allow-all", FIXTURES + "e2e_client.ts"];
const PROBE = [DENO, "run", "--allow-all", FIXTURES + "e2e_flow_probe.ts"];
const FLOW_ENV = ["env", "NFQLB_FLOW_ADDRESS=unix:nfqlb"];

const NET = new Addressing(204, 4, 2);
const { vip4: VIP4, vip6: VIP6, lbCl4: LB_CL4, lbCl6: LB_CL6, cl4: CL4, cl6: CL6 } = NET;
const TARGETS = NET.targets;
const tName = (i: number) => NET.tName(i);
const tMark = (i: number) => NET.tMark(i);
const tAddr4 = (i: number) => NET.tAddr4(i);
const tAddr6 = (i: number) => NET.tAddr6(i);
const lbAddr4 = (i: number) => NET.lbAddr4(i);
const lbAddr6 = (i: number) => NET.lbAddr6(i);
/** Several client addresses, so that `--queue-balance` spreads them over the queues. */
const MARK_TO_TARGET = new Map(TARGETS.map((i) => [tMark(i), tName(i)]));
/** Table A holds t1, t2; table B t3, t4. */
const IN_A = new Set(["t1", "t2"]);
const IN_B = new Set(["t3", "t4"]);
const TCP_PORT = 80;
const UDP_PORT = 5001;
const ENCAP_PORT = 9899;
const SCTP_PORT = 6000;
const PORTS = [TCP_PORT, UDP_PORT, ENCAP_PORT];
/** Queues served (Meridio runs `--queue=0:3`). */
const QUEUES = [0, 1, 2, 3];
const NOLB = 77;
const DSTS = `${VIP4}/32,${VIP6}/128`;
const DESTS = [`::ffff:${VIP4}/128`, `${VIP6}/128`];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- processes

/** `nfqlb flowlb` in the LB namespace. */
class FlowLb extends LineProcess {
  constructor(net: TestNet, ns: string, args: string[]) {
    super(
      net,
      ns,
      [...FLOW_ENV, DENO, "run", "--allow-all", CLI, "flowlb", ...args],
      "nfqlb flowlb",
    );
  }

  /** Wait for the `FragTable;` line and one `queue_length=` line per queue. */
  async ready(): Promise<void> {
    await this.waitLine(/^FragTable; /);
    await this.waitLines(/^queue_length=1024, mtu=1500, SO_RCVBUF=\d+ \(\d+\)$/, QUEUES.length);
  }

  /** SIGTERM and wait for the exit. */
  async stop(): Promise<{ code: number; stderr: string }> {
    Deno.kill(this.pid, "SIGTERM");
    return await this.finish();
  }
}

/** One exchange of the prober (testkit/fixtures/e2e_flow_probe.ts). */
interface Job {
  proto: "tcp" | "udp";
  src: string;
  sport: number;
  dst: string;
  port: number;
  /** UDP payload in hex. */
  payload?: string;
  timeoutMs?: number;
}

interface ProbeResult {
  answer: string | null;
  error?: string;
}

/** The prober in the client namespace: runs a batch of jobs concurrently per request. */
class Prober extends LineProcess {
  constructor(net: TestNet, ns: string) {
    super(net, ns, PROBE, "prober");
  }

  async run(jobs: Job[]): Promise<ProbeResult[]> {
    const index = this.lines.length;
    await this.write(JSON.stringify({ jobs }) + "\n");
    const line = await this.waitLine(/^\{"results"/, index);
    return (JSON.parse(line) as { results: ProbeResult[] }).results;
  }
}

// ---------------------------------------------------------------- helpers

/** Run `nfqlb <args>` in-process; it must succeed. Returns stdout. */
async function cli(...args: string[]): Promise<string> {
  const r = await runCli(...args);
  assert.equal(r.code, 0, `nfqlb ${args.join(" ")}: exit ${r.code}: ${r.err}`);
  return r.out;
}

const hostPort = (a: string, port: number) => a.includes(":") ? `[${a}]:${port}` : `${a}:${port}`;
const vipFor = (src: string) => src.includes(":") ? VIP6 : VIP4;

/** Target `nfqlb fwmark --shm=<shm>` predicts (null: no target). */
async function predict(
  shm: string,
  proto: string,
  src: string,
  sport: number,
  dport: number,
): Promise<string | null> {
  const out = await cli(
    "fwmark",
    `--shm=${shm}`,
    `--proto=${proto}`,
    `--src=${hostPort(src, sport)}`,
    `--dst=${hostPort(vipFor(src), dport)}`,
    "--hash_mode=1",
  );
  return MARK_TO_TARGET.get(JSON.parse(out).fwmark as number) ?? null;
}

/** One JSON line of `nfqlb flow-list --name=<name>` parsed (for counters). */
function parseFlow(text: string): { name: string; matches_count: number } {
  return JSON.parse(text);
}

/** Expected `flow-list` text of one flow, built from docs/COMPATIBILITY.md#flows. */
interface FlowView {
  name: string;
  priority: number;
  protocols?: string[];
  dests?: string[];
  dports?: string[];
  udpencap?: number;
  /** Exact count, or "any" to take the listed value (traffic-dependent). */
  matches: number | "any";
  userRef: string;
}

function renderFlow(f: FlowView, matches: number): string {
  const list = (key: string, items: string[]) =>
    `  "${key}": [\n${items.map((i) => `    "${i}"`).join(",\n")}\n  ],`;
  const lines = ["{", `  "name": "${f.name}",`, `  "priority": ${f.priority},`];
  if (f.protocols) lines.push(`  "protocols": [ ${f.protocols.map((p) => `"${p}"`).join(", ")} ],`);
  if (f.dests) lines.push(list("dests", f.dests));
  if (f.dports) lines.push(list("dports", f.dports));
  if (f.udpencap) lines.push(`  "udpencap": ${f.udpencap},`);
  lines.push(`  "matches_count": ${matches},`, `  "user_ref": "${f.userRef}"`, "}");
  return lines.join("\n");
}

/** Expected whole `flow-list` output; "any" counts are taken from `actual` in order. */
function renderList(flows: FlowView[], actual: string): string {
  const listed = [...actual.matchAll(/^ {2}"matches_count": (\d+),$/gm)].map((m) => Number(m[1]));
  if (flows.length === 0) return "[]\n";
  return "[" +
    flows.map((f, i) => renderFlow(f, f.matches === "any" ? listed[i] ?? -1 : f.matches)).join(
      ",\n",
    ) + "]\n";
}

/** The flow list with every match counter set to 0 (they restart with the daemon). */
const withoutCounts = (list: string) =>
  list.replace(/^ {2}"matches_count": \d+,$/gm, '  "matches_count": 0,');

/** A 12-byte SCTP common header: sport, dport, verification tag, checksum (hex). */
function sctpHeader(sport: number, dport: number, vtag: number): string {
  const b = new Uint8Array(12);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, sport);
  dv.setUint16(2, dport);
  dv.setUint32(4, vtag);
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

// ---------------------------------------------------------------- the test

Deno.test({
  name: "nfqlb flowlb end to end: flows select target tables, priorities, delete, " +
    "ping, SCTP over UDP, nolb reject, --flow-state (needs root)",
  ignore: !ROOT,
  async fn(t) {
    const token = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
    const shmA = `nfqlbfe2e-${Deno.pid}-${token}-a`;
    const shmB = `nfqlbfe2e-${Deno.pid}-${token}-b`;
    const ftshm = `nfqlbfe2e-${Deno.pid}-${token}-ft`;
    const stateDir = await Deno.makeTempDir({ prefix: "nfqlb-flowlb-e2e-" });
    const stateFile = `${stateDir}/flows.json`;
    try {
      await withTestNet(async (net) => {
        // ---- topology (tests/e2e_topology.ts)
        const { cl, lb, targets, ip } = await buildTopology(net, NET);
        // Packets accepted without a target fwmark (the nolb mark) follow the main table
        // to t1: "no answer" then really means "dropped by the verdict", and the REJECT
        // rule of step 10 is what the client sees.
        await ip(lb, "route", "add", `${VIP4}/32`, "via", tAddr4(1));
        await ip(lb, "-6", "route", "add", `${VIP6}/128`, "via", tAddr6(1));
        const pings: [string, string][] = [[cl, LB_CL4], [cl, LB_CL6]];
        for (const a of [...CL4, ...CL6]) pings.push([lb, a]);
        for (const [i, ns] of targets) {
          pings.push([lb, tAddr4(i)], [lb, tAddr6(i)], [ns, lbAddr4(i)], [ns, lbAddr6(i)]);
        }
        await Promise.all(pings.map(([ns, a]) => net.run(ns, ["ping", "-c1", "-W3", a])));

        for (const [ipt, vip] of [["iptables", VIP4], ["ip6tables", VIP6]]) {
          await net.run(lb, [
            ipt,
            "-t",
            "mangle",
            "-A",
            "PREROUTING",
            "-d",
            vip,
            "-j",
            "NFQUEUE",
            "--queue-balance",
            `${QUEUES[0]}:${QUEUES.at(-1)}`,
          ]);
        }

        // ---- targets, prober
        const servers: LineProcess[] = [];
        for (const [i, ns] of targets) {
          for (const port of PORTS) {
            servers.push(
              new LineProcess(net, ns, [
                ...TARGET,
                `--name=${tName(i)}`,
                `--vip4=${VIP4}`,
                `--vip6=${VIP6}`,
                `--port=${port}`,
              ], `${tName(i)}:${port}`),
            );
          }
        }
        const prober = new Prober(net, cl);
        await Promise.all([...servers, prober].map((s) => s.waitLine(/^READY$/)));

        // ---- tables: A = t1, t2; B = t3, t4
        await cli("init", `--shm=${shmA}`, "--M=997", "--N=8");
        await cli("activate", `--shm=${shmA}`, String(tMark(1)), String(tMark(2)));
        await cli("init", `--shm=${shmB}`, "--M=997", "--N=8");
        await cli("activate", `--shm=${shmB}`, String(tMark(3)), String(tMark(4)));

        // ---- helpers bound to the namespaces
        /** `nfqlb <args>` as a process in the LB namespace (the flow socket is there). */
        const nfqlb = (...args: string[]): Promise<CommandResult> =>
          net.exec(lb, [...FLOW_ENV, DENO, "run", "--allow-all", CLI, ...args]);
        /** A flow command that must print `OK`. */
        const flowOk = async (...args: string[]) => {
          const r = await nfqlb(...args);
          assert.equal(r.stdout, "OK\n", `nfqlb ${args.join(" ")}: ${r.stdout}${r.stderr}`);
          assert.equal(r.code, 0);
          assert.equal(r.stderr, "");
        };
        const flowList = async (...args: string[]) => {
          const r = await nfqlb("flow-list", ...args);
          assert.equal(r.code, 0, r.stderr);
          assert.equal(r.stderr, "");
          return r.stdout;
        };
        const flowNames = async () => {
          const r = await nfqlb("flow-list-names");
          assert.equal(r.code, 0, r.stderr);
          return JSON.parse(r.stdout) as string[];
        };
        const matches = async (name: string) =>
          parseFlow(await flowList(`--name=${name}`)).matches_count;

        /** Run the batch client: every exchange must be answered. Returns tuple -> target. */
        const batch = async (proto: "tcp" | "udp", port: number, first: number, what: string) => {
          const sets = [
            ...CL4.map((a, i) => `${proto}/${a}/${first + 100 * i}-${first + 100 * i + 24}`),
            ...CL6.map((a, i) =>
              `${proto}/${a}/${first + 1000 + 100 * i}-${first + 1000 + 100 * i + 14}`
            ),
          ];
          const r = await net.exec(cl, [
            ...CLIENT,
            `--dst4=${VIP4}`,
            `--dst6=${VIP6}`,
            `--port=${port}`,
            `--sets=${sets.join(",")}`,
            "--concurrency=65",
          ]);
          assert.equal(r.code, 0, `client failed: ${r.stdout}\n${r.stderr}`);
          const { results, ms } = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as {
            results: ClientResult[];
            ms: number;
          };
          assert.equal(results.length, 4 * 25 + 2 * 15);
          const failed = results.filter((x) => x.target === null);
          assert.deepEqual(failed, [], `${what}: unanswered exchanges`);
          console.log(`  ${what}: ${results.length} exchanges in ${ms} ms`);
          return new Map(results.map((x) => [tupleKey(x), x.target!]));
        };
        /** Check that every tuple of `m` is on the target `shm` predicts, and both of `set` are used. */
        const checkPlacement = async (
          m: Map<string, string>,
          shm: string,
          set: Set<string>,
          port: number,
        ) => {
          const wrong: string[] = [];
          for (const [k, tgt] of m) {
            const [proto, src, sport] = k.split("/");
            const want = await predict(shm, proto, src, Number(sport), port);
            if (want !== tgt) wrong.push(`${k}: on ${tgt}, predicted ${want}`);
          }
          assert.deepEqual(wrong, [], "every tuple on its predicted target");
          assert.deepEqual(new Set(m.values()), set, "both targets of the table used");
        };
        /**
         * One probe job from every client address (so every queue sees some), from the
         * first source port `batch(…, first, …)` uses for that address.
         */
        const jobs = (proto: "tcp" | "udp", port: number, first: number, timeoutMs = 1500) => [
          ...CL4.map((src, i): Job => ({
            proto,
            src,
            sport: first + 100 * i,
            dst: VIP4,
            port,
            timeoutMs,
          })),
          ...CL6.map((src, i): Job => ({
            proto,
            src,
            sport: first + 1000 + 100 * i,
            dst: VIP6,
            port,
            timeoutMs,
          })),
        ];
        const expectedFor = (shm: string, js: Job[]) =>
          Promise.all(js.map((j) => predict(shm, j.proto, j.src, j.sport, j.port)));
        /** Per-queue sequence numbers from /proc/net/netfilter/nfnetlink_queue. */
        const queueSeq = async () => {
          const out = await net.run(lb, ["cat", "/proc/net/netfilter/nfnetlink_queue"]);
          const m = new Map<number, number>();
          for (const l of out.split("\n")) {
            const f = l.trim().split(/\s+/).map(Number);
            if (f.length >= 8) m.set(f[0], f[7]);
          }
          return m;
        };
        /** ICMP echo requests received by each target (IPv4, IPv6). */
        const inEchos = async () => {
          const m = new Map<string, [number, number]>();
          for (const [i, ns] of targets) {
            const snmp = await net.run(ns, ["cat", "/proc/net/snmp", "/proc/net/snmp6"]);
            const icmp = snmp.split("\n").filter((l) => l.startsWith("Icmp: "));
            const v4 = Number(icmp[1].split(" ")[icmp[0].split(" ").indexOf("InEchos")]);
            const v6 = Number(/^Icmp6InEchos\s+(\d+)$/m.exec(snmp)![1]);
            m.set(tName(i), [v4, v6]);
          }
          return m;
        };
        const ping = (vip: string, count: number) =>
          net.exec(cl, ["ping", `-c${count}`, "-i0.2", "-W1", vip]);

        // ---- flows
        const tcp80Args = [
          "--name=tcp80",
          `--target=${shmA}`,
          "--prio=20",
          "--protocols=tcp",
          `--dports=${TCP_PORT}`,
          `--dsts=${DSTS}`,
        ];
        const tcp80: FlowView = {
          name: "tcp80",
          priority: 20,
          protocols: ["tcp"],
          dests: DESTS,
          dports: [String(TCP_PORT)],
          matches: "any",
          userRef: shmA,
        };
        const udp5001: FlowView = {
          name: "udp5001",
          priority: 10,
          protocols: ["udp"],
          dports: [String(UDP_PORT)],
          matches: "any",
          userRef: shmB,
        };
        const helper: FlowView = {
          name: "#sctp",
          priority: 5,
          protocols: ["udp"],
          dests: DESTS,
          dports: [String(ENCAP_PORT)],
          udpencap: ENCAP_PORT,
          matches: 0,
          userRef: "NULL",
        };
        const sctp: FlowView = {
          name: "sctp",
          priority: 5,
          protocols: ["sctp"],
          dests: DESTS,
          dports: [String(SCTP_PORT)],
          udpencap: ENCAP_PORT,
          matches: 0,
          userRef: shmB,
        };

        let daemon: FlowLb | null = null;
        const startDaemon = async (extra: string[]) => {
          const d = new FlowLb(net, lb, [
            `--queue=${QUEUES[0]}:${QUEUES.at(-1)}`,
            // Two threads serving the four queues (daemon/packet_loops.ts), as with
            // --queue-threads on a small pod.
            "--queue-threads=2",
            "--qlength=1024",
            `--ft_shm=${ftshm}`,
            `--flow-state=${stateFile}`,
            ...extra,
          ]);
          daemon = d;
          await d.ready();
          return d;
        };
        /** SIGTERM: exit 0, every queue unbound; returns stderr. */
        const stopDaemon = async () => {
          const d = daemon!;
          daemon = null;
          const r = await d.stop();
          assert.equal(r.code, 0, `flowlb exit ${r.code} after SIGTERM: ${r.stderr}`);
          const left = await queueSeq();
          assert.deepEqual(QUEUES.filter((q) => left.has(q)), [], "queues unbound after SIGTERM");
          return r.stderr;
        };

        await startDaemon([]);
        let tcpMap = new Map<string, string>();
        let udpMap = new Map<string, string>();
        let sctpJobs: Job[] = [];
        let sctpAnswers: (string | null)[] = [];
        /** `Failed flowLookup` lines step 2 expects on stderr: at least, at most. */
        let lookupLogs = [0, 0];

        await t.step(
          "TCP/80 -> table A, UDP/5001 -> table B: each tuple on the target `nfqlb fwmark --shm` predicts",
          async () => {
            assert.equal(await flowList(), "[]\n", "no flows at start");
            await flowOk("flow-set", ...tcp80Args);
            await flowOk(
              "flow-set",
              "--name=udp5001",
              `--target=${shmB}`,
              "--prio=10",
              "--protocols=udp",
              `--dports=${UDP_PORT}`,
            );
            tcpMap = await batch("tcp", TCP_PORT, 20000, "TCP/80");
            await checkPlacement(tcpMap, shmA, IN_A, TCP_PORT);
            udpMap = await batch("udp", UDP_PORT, 30000, "UDP/5001");
            await checkPlacement(udpMap, shmB, IN_B, UDP_PORT);
            const seq = await queueSeq();
            console.log(`  packets per queue: ${QUEUES.map((q) => seq.get(q)).join(", ")}`);
          },
        );

        await t.step(
          "no flow matches (UDP/80, TCP/5001, UDP/9899): dropped with the default --nolb_fwmark=-1",
          async () => {
            // Log level 6 (info) for this step only: the daemon logs every unmatched packet.
            const level = (await cli("loglevel")).trim().replace("loglevel=", "");
            await cli("loglevel", "6");
            const before = await queueSeq();
            const js = [
              ...jobs("udp", TCP_PORT, 40000, 800),
              ...jobs("tcp", UDP_PORT, 42000, 800),
              ...jobs("udp", ENCAP_PORT, 44000, 800),
            ];
            let res;
            try {
              res = await prober.run(js);
            } finally {
              await cli("loglevel", level);
            }
            assert.deepEqual(
              res,
              js.map(() => ({ answer: null, error: "timeout" })),
              "no answer, no ICMP error",
            );
            const after = await queueSeq();
            const queued = QUEUES.reduce((s, q) => s + after.get(q)! - before.get(q)!, 0);
            assert.ok(queued >= js.length, `the packets passed the queues (${queued})`);
            lookupLogs = [js.length, queued];
          },
        );

        await t.step(
          "overlapping flows: the higher priority wins; changing priorities moves the traffic",
          async () => {
            const setUdpAll = (prio: number) =>
              flowOk(
                "flow-set",
                "--name=udp-all",
                `--target=${shmA}`,
                `--prio=${prio}`,
                "--protocols=udp",
              );
            await setUdpAll(5);
            assert.deepEqual(await flowNames(), ["tcp80", "udp5001", "udp-all"]);
            assert.deepEqual(
              await batch("udp", UDP_PORT, 30000, "UDP/5001, udp-all below"),
              udpMap,
            );
            const js = jobs("udp", TCP_PORT, 46000);
            const res = await prober.run(js);
            assert.deepEqual(
              res.map((r) => r.answer),
              await expectedFor(shmA, js),
              "UDP/80 now taken by udp-all (table A)",
            );

            await setUdpAll(30);
            assert.deepEqual(await flowNames(), ["udp-all", "tcp80", "udp5001"]);
            const above = await batch("udp", UDP_PORT, 30000, "UDP/5001, udp-all above");
            await checkPlacement(above, shmA, IN_A, UDP_PORT);
            assert.deepEqual(
              await batch("tcp", TCP_PORT, 20000, "TCP/80, udp-all above"),
              tcpMap,
              "TCP unaffected",
            );
          },
        );

        await t.step(
          "flow-delete / flow-set take effect for the next packet on every queue",
          async () => {
            await flowOk("flow-delete", "--name=udp-all");
            const js = jobs("udp", UDP_PORT, 30000);
            const res = await prober.run(js);
            assert.deepEqual(
              res.map((r) => r.answer),
              js.map((j) => udpMap.get(tupleKey(j))),
              "UDP/5001 back on table B right after the delete",
            );

            await flowOk("flow-delete", "--name=tcp80");
            const gone = jobs("tcp", TCP_PORT, 48000, 800);
            assert.deepEqual(
              await prober.run(gone),
              gone.map(() => ({ answer: null, error: "timeout" })),
              "TCP/80 dropped right after its flow was deleted",
            );
            await flowOk("flow-set", ...tcp80Args);
            const back = jobs("tcp", TCP_PORT, 54000);
            assert.deepEqual(
              (await prober.run(back)).map((r) => r.answer),
              await expectedFor(shmA, back),
              "TCP/80 on its table-A target right after the flow is set again",
            );
            assert.deepEqual(await flowNames(), ["tcp80", "udp5001"]);
            const r = await nfqlb("flow-delete", "--name=no-such-flow");
            assert.equal(r.stdout, "OK\n", "deleting an unknown flow is OK");
          },
        );

        await t.step(
          "without --promiscuous_ping, ping is not matched by the tcp/80 flow (dropped)",
          async () => {
            const count = await matches("tcp80");
            const echos = await inEchos();
            const [r4, r6] = await Promise.all([ping(VIP4, 1), ping(VIP6, 1)]);
            for (const r of [r4, r6]) {
              assert.notEqual(r.code, 0, r.stdout);
              assert.match(r.stdout, /1 packets transmitted, 0 received/);
            }
            assert.equal(await matches("tcp80"), count, "tcp80 did not match the echo requests");
            assert.deepEqual(await inEchos(), echos, "no target saw an echo request");
          },
        );

        await t.step(
          "SCTP over UDP: flow-set --udpencap=9899 lists #sctp and sctp (docs/COMPATIBILITY.md#flows); " +
            "UDP/9899 with an SCTP header reaches the target predicted for the SCTP ports",
          async () => {
            await flowOk(
              "flow-set",
              "--name=sctp",
              `--target=${shmB}`,
              "--prio=5",
              "--protocols=sctp",
              `--udpencap=${ENCAP_PORT}`,
              `--dsts=${DSTS}`,
              `--dports=${SCTP_PORT}`,
            );
            const list = await flowList();
            assert.equal(list, renderList([tcp80, udp5001, helper, sctp], list));
            assert.equal(await flowList("--name=#sctp"), renderFlow(helper, 0));
            assert.equal(await flowList("--name=sctp"), renderFlow(sctp, 0));
            assert.deepEqual(await flowNames(), ["tcp80", "udp5001", "#sctp", "sctp"]);

            // Outer UDP sport 43000+i, inner SCTP sport 50000+7i, dport 6000.
            sctpJobs = [...CL4, ...CL4, ...CL6].map((src, i): Job => ({
              proto: "udp",
              src,
              sport: 43000 + i,
              dst: vipFor(src),
              port: ENCAP_PORT,
              payload: sctpHeader(50000 + 7 * i, SCTP_PORT, 0x1000 + i),
              timeoutMs: 1500,
            }));
            const expected = await Promise.all(
              sctpJobs.map((_, i) =>
                predict(shmB, "sctp", sctpJobs[i].src, 50000 + 7 * i, SCTP_PORT)
              ),
            );
            const asUdp = await expectedFor(shmB, sctpJobs);
            assert.notDeepEqual(expected, asUdp, "the SCTP-port hash differs from the UDP one");
            assert.deepEqual(new Set(expected), IN_B, "the probes cover both table-B targets");
            const res = await prober.run(sctpJobs);
            sctpAnswers = res.map((r) => r.answer);
            assert.deepEqual(sctpAnswers, expected, "each on the target of its SCTP ports");

            const other: Job = {
              ...sctpJobs[0],
              sport: 43100,
              payload: sctpHeader(50000, SCTP_PORT + 1, 1),
              timeoutMs: 800,
            };
            assert.deepEqual(await prober.run([other]), [{ answer: null, error: "timeout" }]);
            assert.equal(await matches("#sctp"), sctpJobs.length + 1, "#sctp saw every UDP/9899");
            assert.equal(
              await matches("sctp"),
              sctpJobs.length,
              "sctp matched SCTP port 6000 only",
            );
          },
        );

        await t.step(
          "fragmented UDP/5001 (3000 bytes, IPv4 and IPv6): the first fragment is classified, " +
            "every fragment follows it to the predicted table-B target",
          async () => {
            const sets = [...CL4, ...CL6].map((a) => `udp/${a}/25000-25004`);
            const r = await net.exec(cl, [
              ...CLIENT,
              `--dst4=${VIP4}`,
              `--dst6=${VIP6}`,
              `--port=${UDP_PORT}`,
              `--sets=${sets.join(",")}`,
              "--size=3000",
              "--concurrency=30",
            ]);
            assert.equal(r.code, 0, r.stderr);
            const { results } = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as {
              results: ClientResult[];
            };
            assert.equal(results.length, 30);
            const wrong: string[] = [];
            for (const x of results) {
              const want = await predict(shmB, "udp", x.src, x.sport, UDP_PORT);
              if (x.target !== want) wrong.push(`${tupleKey(x)}: ${x.target}, predicted ${want}`);
            }
            assert.deepEqual(wrong, [], "every datagram reassembled and answered as predicted");
          },
        );

        await t.step(
          "--flow-state: SIGTERM (exit 0, queues unbound), restart: same flows, same targets",
          async () => {
            const before = await flowList();
            const stderr = await stopDaemon();
            const lines = stderr.split("\n").filter((l) => l !== "");
            assert.deepEqual(
              lines.filter((l) => l !== "info: Failed flowLookup"),
              [],
              "nothing else on stderr",
            );
            const [least, most] = lookupLogs;
            assert.ok(
              lines.length >= least && lines.length <= most,
              `${lines.length} 'Failed flowLookup' lines (step 2: ${least}..${most})`,
            );
            await Deno.stat(stateFile);
            // As Meridio runs it, plus the nolb mark for the last step.
            await startDaemon(["--promiscuous_ping", `--nolb_fwmark=${NOLB}`]);
            const after = await flowList();
            assert.equal(withoutCounts(after), withoutCounts(before), "the same flow list");
            assert.equal(after, withoutCounts(after), "counters start at 0");
            assert.deepEqual(await batch("tcp", TCP_PORT, 20000, "TCP/80 after restart"), tcpMap);
            assert.deepEqual(await batch("udp", UDP_PORT, 30000, "UDP/5001 after restart"), udpMap);
            assert.deepEqual(
              (await prober.run(sctpJobs)).map((r) => r.answer),
              sctpAnswers,
              "SCTP over UDP after restart",
            );
          },
        );

        await t.step(
          "with --promiscuous_ping, ping matches the tcp/80 flow and is answered by a table-A target",
          async () => {
            // Let stray packets of the batches (late retransmissions, FINs) pass before counting:
            // the count must hold still for 300 ms (bounded; a busy machine delays them).
            let count = await matches("tcp80");
            for (let i = 0, prev = -1; i < 30 && count !== prev; i++) {
              await sleep(300);
              prev = count;
              count = await matches("tcp80");
            }
            const echos = await inEchos();
            for (const vip of [VIP4, VIP6]) {
              const r = await ping(vip, 3);
              assert.equal(r.code, 0, r.stdout + r.stderr);
              assert.match(r.stdout, /3 packets transmitted, 3 received/);
            }
            assert.equal(await matches("tcp80") - count, 6, "tcp80 matched the 6 echo requests");
            const now = await inEchos();
            const delta = (set: Set<string>, v: 0 | 1) =>
              [...set].reduce((s, tgt) => s + now.get(tgt)![v] - echos.get(tgt)![v], 0);
            assert.deepEqual([delta(IN_A, 0), delta(IN_A, 1)], [3, 3], "table A answered");
            assert.deepEqual([delta(IN_B, 0), delta(IN_B, 1)], [0, 0], "table B did not");
          },
        );

        await t.step(
          `--nolb_fwmark=${NOLB} + REJECT on that mark: TCP gets a reset, UDP an ICMP port unreachable`,
          async () => {
            for (const ipt of ["iptables", "ip6tables"]) {
              const mark = ["-m", "mark", "--mark", String(NOLB)];
              await net.run(lb, [
                ipt,
                "-A",
                "FORWARD",
                ...mark,
                "-p",
                "tcp",
                "-j",
                "REJECT",
                "--reject-with",
                "tcp-reset",
              ]);
              await net.run(lb, [ipt, "-A", "FORWARD", ...mark, "-j", "REJECT"]);
            }
            const js = [...jobs("tcp", UDP_PORT, 50000), ...jobs("udp", TCP_PORT, 52000)];
            const res = await prober.run(js);
            assert.deepEqual(
              res,
              js.map(() => ({ answer: null, error: "ECONNREFUSED" })),
              "every unmatched exchange refused",
            );
            for (const ipt of ["iptables", "ip6tables"]) {
              const out = await net.run(lb, [ipt, "-L", "FORWARD", "-v", "-x", "-n"]);
              const pkts = out.split("\n").filter((l) => / REJECT /.test(l)).map((l) =>
                Number(l.trim().split(/\s+/)[0])
              );
              const n = ipt === "iptables" ? CL4.length : CL6.length;
              assert.deepEqual(pkts, [n, n], `${ipt} REJECT rules hit (tcp, udp)`);
            }
            // Matching traffic is unaffected.
            const ok = jobs("udp", UDP_PORT, 30000);
            assert.deepEqual(
              (await prober.run(ok)).map((r) => r.answer),
              ok.map((j) => udpMap.get(tupleKey(j))),
            );
          },
        );

        await t.step("SIGTERM: exit 0, queues unbound; targets exit cleanly", async () => {
          const stderr = await stopDaemon();
          assert.equal(stderr, `notice: flowlb: restored 3 flows from ${stateFile}\n`);
          for (const s of [...servers, prober]) assert.equal((await s.finish()).code, 0, s.label);
        });
      });
    } finally {
      for (const name of [shmA, shmB, ftshm]) await runCli("delete", `--shm=${name}`);
      await Deno.remove(stateDir, { recursive: true });
    }
  },
});
