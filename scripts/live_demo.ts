/**
 * The live demo behind `./dev demo` (as root): real packets through a real
 * queue. It builds a client, an LB and four target namespaces (IPv4 and IPv6
 * VIPs), starts `nfqlb flowlb` with two flows on two tables (TCP/80 → table A
 * with t1, t2 and t3, UDP/80 → table B with t3 and t4), sends TCP connections,
 * UDP exchanges, pings and fragmented datagrams, and prints where they went,
 * `flow-list` with its matches and the metrics. Then it takes t1 out of table
 * A and shows that t1's connections moved and almost no others. Everything it made (namespaces,
 * shared memory — the tables, the statistics object and the daemon's trace object
 * `nfqlb-trace.demo-<pid>` — and processes) is removed at the end, on error and on Ctrl-C.
 * @module
 */
import { Addressing, buildTopology, type ClientResult } from "../testkit/e2e_topology.ts";
import {
  cli,
  Daemon,
  FLOW_ENV,
  perFamily,
  type Service,
  serviceOf,
  startTargets,
} from "../testkit/e2e_service.ts";
import { type TestNet, withTestNet } from "../testkit/netns.ts";
import { DEMO_TRACE_SHM, removeDemoTraceShm } from "./demo_trace_shm.ts";

const DENO = Deno.execPath();
const CLI = new URL("../cli.ts", import.meta.url).pathname;
const CLIENT = [
  DENO,
  "run",
  "-A",
  new URL("../testkit/fixtures/e2e_client.ts", import.meta.url).pathname,
];
const NET = new Addressing(212, 2, 2);
const PORT = 80;
const SVC: Service = serviceOf(NET, PORT);
const Q = "0:1";
const METRICS = "127.0.0.1:9100";
const encoder = new TextEncoder();
const say = (t: string) => Deno.stdout.writeSync(encoder.encode(t + "\n"));
const started = Date.now();
const step = (t: string) => say(`\n[${((Date.now() - started) / 1000).toFixed(1)}s] ${t}`);

/** Per-target counts of answered exchanges. */
function counts(results: ClientResult[]): string {
  const c = new Map<string, number>();
  for (const r of results) {
    c.set(r.target ?? "no answer", (c.get(r.target ?? "no answer") ?? 0) + 1);
  }
  return [...c].sort().map(([t, n]) => `${t}: ${n}`).join(", ");
}

/** Run the client in the client namespace; its results. */
async function client(net: TestNet, ns: string, sets: string[], extra: string[] = []) {
  const r = await net.exec(ns, [
    ...CLIENT,
    `--dst4=${NET.vip4}`,
    `--dst6=${NET.vip6}`,
    `--port=${PORT}`,
    `--sets=${sets.join(",")}`,
    "--concurrency=100",
    ...extra,
  ]);
  if (r.code !== 0) throw new Error(`client failed: ${r.stderr}`);
  return (JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { results: ClientResult[] }).results;
}

/** The live demo; resolves when everything it made is removed again. */
export async function liveDemo(): Promise<void> {
  const tag = `${Deno.pid}`;
  const tableA = `nfqlb-demo-${tag}-a`;
  const tableB = `nfqlb-demo-${tag}-b`;
  const ftshm = `nfqlb-demo-${tag}-ft`;
  let daemon: Daemon | undefined;
  const removeShm = () => {
    for (const n of [tableA, tableB, ftshm]) {
      try {
        Deno.removeSync(`/dev/shm/${n}`);
      } catch {
        // not made
      }
    }
    removeDemoTraceShm();
  };
  try {
    await withTestNet(async (net) => {
      // Ctrl-C: remove what was made, then leave.
      const onInterrupt = async () => {
        say("\ninterrupted: removing the namespaces and shared memory");
        // The namespaces' processes (the daemon, the targets) are killed by the cleanup.
        await net.cleanup();
        removeShm();
        Deno.exit(130);
      };
      Deno.addSignalListener("SIGINT", onInterrupt);
      try {
        step(
          "namespaces: client, LB, targets t1..t4 (IPv4 and IPv6 VIPs on the targets' loopback)",
        );
        const { cl, lb, targets } = await buildTopology(net, NET);
        await perFamily(
          SVC,
          (ipt, vip) =>
            net.run(lb, [
              ipt,
              ...`-t mangle -A PREROUTING -d ${vip} -j NFQUEUE --queue-balance ${Q}`.split(" "),
            ]),
        );
        say(
          `  LB: mangle PREROUTING -d VIP -j NFQUEUE --queue-balance 0:1; ip rule fwmark 10N table 10N`,
        );
        const servers = await startTargets(
          net,
          SVC,
          [...targets].map(([i, ns]) => [NET.tName(i), ns]),
        );
        await Promise.all(
          [...targets].map(([i]) => net.run(lb, ["ping", "-c1", "-W3", NET.tAddr4(i)])),
        );

        step("tables: A = t1, t2, t3 (fwmarks 101, 102, 103); B = t3, t4 (103, 104)");
        await cli("init", `--shm=${tableA}`, "--M=997", "--N=8");
        await cli("activate", `--shm=${tableA}`, "101", "102", "103");
        await cli("init", `--shm=${tableB}`, "--M=997", "--N=8");
        await cli("activate", `--shm=${tableB}`, "103", "104");

        step(`nfqlb flowlb --queue=${Q} --promiscuous_ping --metrics=${METRICS}`);
        say(
          `  NFQLB_TRACE_SHM=${DEMO_TRACE_SHM}: log level and trace mask of its own ` +
            "(/dev/shm is shared by every network namespace of the host)",
        );
        daemon = new Daemon(net, lb, "flowlb", [
          `--queue=${Q}`,
          "--promiscuous_ping",
          `--ft_shm=${ftshm}`,
          `--metrics=${METRICS}`,
        ]);
        await daemon.ready(2);
        const nfqlb = async (...args: string[]) => {
          const r = await net.exec(lb, [...FLOW_ENV, DENO, "run", "-A", CLI, ...args]);
          if (r.code !== 0) throw new Error(`nfqlb ${args.join(" ")}: ${r.stdout}${r.stderr}`);
          return r.stdout;
        };
        say(
          `  flow web: TCP/${PORT} -> table A: ${
            (await nfqlb(
              "flow-set",
              "--name=web",
              `--target=${tableA}`,
              "--protocols=tcp",
              `--dports=${PORT}`,
            )).trim()
          }`,
        );
        say(
          `  flow dns: UDP/${PORT} -> table B: ${
            (await nfqlb(
              "flow-set",
              "--name=dns",
              `--target=${tableB}`,
              "--prio=5",
              "--protocols=udp",
              `--dports=${PORT}`,
            )).trim()
          }`,
        );

        step(
          "traffic: 200 TCP connections and 100 UDP exchanges (IPv4 and IPv6), pings, fragments",
        );
        const tcpSets = [
          `tcp/${NET.cl4[0]}/20000-20079`,
          `tcp/${NET.cl4[1]}/20000-20079`,
          `tcp/${NET.cl6[0]}/20000-20039`,
        ];
        const tcp = await client(net, cl, tcpSets);
        say(`  TCP -> ${counts(tcp)}`);
        const udp = await client(net, cl, [
          `udp/${NET.cl4[0]}/30000-30049`,
          `udp/${NET.cl6[1]}/30000-30049`,
        ]);
        say(`  UDP -> ${counts(udp)}`);
        const frag = await client(net, cl, [`udp/${NET.cl4[1]}/31000-31009`], ["--size=3000"]);
        say(`  UDP datagrams of 3000 bytes (3 fragments each) -> ${counts(frag)}`);
        const ping = await net.exec(cl, ["ping", "-c3", "-i0.2", "-W2", NET.vip4]);
        say(
          `  ping ${NET.vip4}: ${
            /(\d+) received/.exec(ping.stdout)?.[1] ?? 0
          }/3 answered (promiscuous ping)`,
        );

        step("nfqlb flow-list (matches per flow)");
        for (
          const f of JSON.parse(await nfqlb("flow-list")) as {
            name: string;
            matches_count: number;
          }[]
        ) {
          say(`  ${f.name}: ${f.matches_count} packets`);
        }

        step("take t1 out of table A: t1's connections move, the others stay (but for a few)");
        await cli("deactivate", `--shm=${tableA}`, "101");
        const tcp2 = await client(net, cl, tcpSets);
        const before = new Map(tcp.map((r) => [`${r.src}/${r.sport}`, r.target]));
        const moved = tcp2.filter((r) => before.get(`${r.src}/${r.sport}`) !== r.target);
        const onT1 = tcp.filter((r) => r.target === "t1").length;
        const fromT1 = moved.filter((r) => before.get(`${r.src}/${r.sport}`) === "t1").length;
        say(`  TCP -> ${counts(tcp2)}`);
        say(
          `  moved: ${moved.length} of ${tcp2.length} connections: ${fromT1} of t1's ${onT1}, and ` +
            `${moved.length - fromT1} other${moved.length - fromT1 === 1 ? "" : "s"} ` +
            "(Maglev moves a few to keep the table even)",
        );

        step(`metrics: GET http://${METRICS}/metrics (a few lines)`);
        const get =
          `import urllib.request; print(urllib.request.urlopen("http://${METRICS}/metrics").read().decode())`;
        const body = await net.run(lb, ["/usr/bin/python3", "-c", get]);
        for (const l of body.split("\n")) {
          if (
            /^nfqlb_(target_packets_total|flow_matches_total|queue_packets_received_total)/.test(l)
          ) {
            say(`  ${l}`);
          }
        }

        step("stopping flowlb, removing namespaces and shared memory");
        Deno.kill(daemon.pid, "SIGTERM");
        await daemon.finish();
        daemon = undefined;
        for (const s of servers) await s.finish();
      } finally {
        Deno.removeSignalListener("SIGINT", onInterrupt);
      }
    });
  } finally {
    // A daemon still running after a failure was killed and reaped by the namespaces' cleanup.
    removeShm();
  }
  step(
    `done: nothing left behind (namespaces, processes, /dev/shm/nfqlb-demo-${tag}-*, ` +
      `/dev/shm/${DEMO_TRACE_SHM})`,
  );
}
