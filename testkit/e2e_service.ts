/**
 * What the end-to-end tests of a UDP service behind nfqlb share (fragments,
 * LB tier, trace flows, metrics): the topology made ready for traffic, the
 * daemon process, the raw-socket fragment client (`fixtures/frag_client.py`),
 * the placement `nfqlb fwmark` predicts, the `ftshm` counters, and the client
 * and LB namespaces whose mangle INPUT rules count marked UDP (`markedUdpNet`).
 * @module
 */
import assert from "node:assert/strict";
import { runCli } from "./cli.ts";
import { LineProcess } from "./line_process.ts";
import type { TestNet } from "./netns.ts";
import { type Addressing, buildTopology, type Topology } from "./e2e_topology.ts";
import { type FtStats, type FtStatsExt, readStats, readStatsExt } from "../lib/frag/stats.ts";

const DENO = Deno.execPath();
const CLI = new URL("../cli.ts", import.meta.url).pathname;
const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;
/** The fragment client: standard-library Python 3. */
export const FRAG_CLIENT = ["/usr/bin/python3", FIXTURES + "frag_client.py"];
/** The UDP target that answers each datagram with its name. */
export const UDP_TARGET = [DENO, "run", "--allow-all", FIXTURES + "e2e_target.ts"];
/** The environment prefix of flowlb and the flow commands. */
export const FLOW_ENV = ["env", "NFQLB_FLOW_ADDRESS=unix:nfqlb"];
/** The UDP sender (`--to=ADDR --port=N --count=N`). */
const UDP_SENDER = [DENO, "run", "--allow-net", FIXTURES + "udp_sender.ts"];

/** `nfqlb lb` or `nfqlb flowlb` in a namespace. */
export class Daemon extends LineProcess {
  constructor(net: TestNet, ns: string, cmd: "lb" | "flowlb", args: string[]) {
    const pre = cmd === "flowlb" ? FLOW_ENV : [];
    super(net, ns, [...pre, DENO, "run", "--allow-all", CLI, cmd, ...args], `nfqlb ${cmd}`);
  }
  /** Wait for the `FragTable;` line and one `queue_length=` line per queue. */
  async ready(queues = 1): Promise<void> {
    await this.waitLine(/^FragTable; /);
    await this.waitLines(/^queue_length=/, queues);
  }
  /** SIGTERM and wait for the exit. */
  async stop(): Promise<{ code: number; stderr: string }> {
    Deno.kill(this.pid, "SIGTERM");
    return await this.finish();
  }
  /** SIGKILL (after a failure) and wait. */
  async kill(): Promise<void> {
    try {
      Deno.kill(this.pid, "SIGKILL");
    } catch {
      // gone
    }
    await this.finish();
  }
}

/** Run `nfqlb <args>` in-process; it must succeed. Returns stdout. */
export async function cli(...args: string[]): Promise<string> {
  const r = await runCli(...args);
  assert.equal(r.code, 0, `nfqlb ${args.join(" ")}: exit ${r.code}: ${r.err}`);
  return r.out;
}

/** Where UDP datagrams go: the VIP and port, and fwmark -> target name. */
export interface Service {
  readonly vip4: string;
  readonly vip6: string;
  readonly port: number;
  readonly targets: ReadonlyMap<number, string>;
}

/** The service of topology `a` on UDP `port`: its VIPs and the four targets' fwmarks. */
export function serviceOf(a: Addressing, port: number): Service {
  return {
    vip4: a.vip4,
    vip6: a.vip6,
    port,
    targets: new Map(a.targets.map((i) => [a.tMark(i), a.tName(i)])),
  };
}

/** The target `nfqlb fwmark --shm` predicts for UDP src:sport -> VIP:port (null: none). */
export async function predict(
  svc: Service,
  shm: string,
  src: string,
  sport: number,
): Promise<string | null> {
  const v6 = src.includes(":");
  const out = await cli(
    "fwmark",
    `--shm=${shm}`,
    "--proto=udp",
    v6 ? `--src=[${src}]:${sport}` : `--src=${src}:${sport}`,
    v6 ? `--dst=[${svc.vip6}]:${svc.port}` : `--dst=${svc.vip4}:${svc.port}`,
  );
  return svc.targets.get(JSON.parse(out).fwmark as number) ?? null;
}

/** One batch of fragmented datagrams (see fixtures/frag_client.py). */
export interface FragCase {
  readonly src: string;
  readonly size: number;
  readonly order: "in-order" | "reverse" | "shuffle";
  readonly sportBase: number;
  readonly count: number;
  readonly extra?: string[];
}

/** Send a batch from `ns`; returns sport -> the target that answered (null: none). */
export async function sendFragments(
  net: TestNet,
  ns: string,
  svc: Service,
  c: FragCase,
): Promise<Map<number, string | null>> {
  const v6 = c.src.includes(":");
  const r = await net.exec(ns, [
    ...FRAG_CLIENT,
    `--src=${c.src}`,
    `--dst=${v6 ? svc.vip6 : svc.vip4}`,
    `--port=${svc.port}`,
    `--size=${c.size}`,
    `--count=${c.count}`,
    `--sport-base=${c.sportBase}`,
    `--ident-base=${c.sportBase}`,
    `--order=${c.order}`,
    `--seed=${c.sportBase}`,
    ...(c.extra ?? []),
  ]);
  assert.equal(r.code, 0, `frag_client: ${r.stdout}\n${r.stderr}`);
  const { replies } = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as {
    replies: Record<string, string | null>;
  };
  return new Map(Object.entries(replies).map(([p, t]) => [Number(p), t]));
}

/**
 * {@link sendFragments}, then: every datagram answered by the target `shm` predicts for it
 * (answered = arrived whole: the checksum covers the whole datagram). Returns how many were.
 */
export async function sendAndCheck(
  net: TestNet,
  ns: string,
  svc: Service,
  shm: string,
  c: FragCase,
  what: string,
): Promise<number> {
  const got = await sendFragments(net, ns, svc, c);
  const wrong: string[] = [];
  let whole = 0;
  for (const [sport, target] of got) {
    const want = await predict(svc, shm, c.src, sport);
    if (target === want) whole++;
    else wrong.push(`${sport}: ${target ?? "no answer"} (want ${want})`);
  }
  console.log(`  ${what}: ${whole}/${got.size} whole at the predicted target`);
  assert.deepEqual(wrong.slice(0, 5), [], `${what}: ${wrong.length} datagrams lost or misplaced`);
  return whole;
}

/** Every counter of an `ftshm` object in /dev/shm (1.2.0's and ours). */
export function fragStats(name: string): FtStats & FtStatsExt {
  const b = Deno.readFileSync(`/dev/shm/${name}`);
  return { ...readStats(b), ...(readStatsExt(b) as FtStatsExt) };
}

/** The drop counters of `s` that are not zero. */
export function fragDrops(s: FtStatsExt): Record<string, number> {
  return Object.fromEntries(
    Object.entries(s).filter(([k, v]) => k.startsWith("fragsDropped") && v !== 0),
  ) as Record<string, number>;
}

/** Id sequence numbers of the queues in /proc/net/netfilter/nfnetlink_queue of `ns`. */
export async function queueSeq(net: TestNet, ns: string): Promise<Map<number, number>> {
  const out = await net.run(ns, ["cat", "/proc/net/netfilter/nfnetlink_queue"]);
  const m = new Map<number, number>();
  for (const l of out.split("\n")) {
    const f = l.trim().split(/\s+/).map(Number);
    if (f.length >= 8) m.set(f[0], f[7]);
  }
  return m;
}

/** Run `fn` for IPv4 (`iptables`, the VIP) and IPv6 (`ip6tables`, the VIP), one after the other. */
export async function perFamily(
  svc: Service,
  fn: (iptables: string, vip: string) => Promise<unknown>,
): Promise<void> {
  await fn("iptables", svc.vip4);
  await fn("ip6tables", svc.vip6);
}

/** Start the UDP targets (name -> namespace) and wait until each one listens on the VIPs. */
export async function startTargets(
  net: TestNet,
  svc: Service,
  targets: Iterable<[string, string]>,
): Promise<LineProcess[]> {
  const servers = [...targets].map(([name, ns]) =>
    new LineProcess(net, ns, [
      ...UDP_TARGET,
      `--name=${name}`,
      `--vip4=${svc.vip4}`,
      `--vip6=${svc.vip6}`,
      `--port=${svc.port}`,
    ], name)
  );
  await Promise.all(servers.map((s) => s.waitLines(/^READY$/)));
  return servers;
}

/**
 * The topology of `a` (testkit/e2e_topology.ts) ready for traffic: neighbours resolved, the VIPs
 * queued to `queue` in the LB namespace (mangle PREROUTING; no rule when undefined; with
 * `unmarkedOnly` only packets without a mark, as `--fastpath` needs), the targets answering, and the
 * table `tshm` created with the four targets' fwmarks.
 */
export async function readyTopology(
  net: TestNet,
  a: Addressing,
  svc: Service,
  queue: number | undefined,
  tshm: string,
  opts: { readonly unmarkedOnly?: boolean } = {},
): Promise<Topology & { servers: LineProcess[] }> {
  const topo = await buildTopology(net, a);
  const { cl, lb, targets } = topo;
  const pings: [string, string][] = [[cl, a.lbCl4], [cl, a.lbCl6]];
  for (const c of [...a.cl4, ...a.cl6]) pings.push([lb, c]);
  for (const [i, ns] of targets) {
    pings.push([lb, a.tAddr4(i)], [lb, a.tAddr6(i)], [ns, a.lbAddr4(i)], [ns, a.lbAddr6(i)]);
  }
  await Promise.all(pings.map(([ns, addr]) => net.run(ns, ["ping", "-c1", "-W3", addr])));
  if (queue !== undefined) {
    await perFamily(svc, (ipt, vip) => {
      // --fastpath: packets the kernel has marked skip the queue.
      const mark = opts.unmarkedOnly ? " -m mark --mark 0" : "";
      const rule = `-t mangle -A PREROUTING -d ${vip}${mark} -j NFQUEUE --queue-num ${queue}`;
      return net.run(lb, [ipt, ...rule.split(" ")]);
    });
  }
  const servers = await startTargets(net, svc, [...targets].map(([i, ns]) => [a.tName(i), ns]));
  await cli("init", `--shm=${tshm}`, "--M=997", "--N=32");
  await cli("activate", `--shm=${tshm}`, ...a.targets.map((i) => String(a.tMark(i))));
  return { ...topo, servers };
}

/** Remove the shared-memory objects `names` from /dev/shm (those that exist). */
export function removeShmObjects(...names: string[]): void {
  for (const n of names) {
    try {
      Deno.removeSync(`/dev/shm/${n}`);
    } catch {
      // not there
    }
  }
}

/** Packets the first rule of `chain` counted (`iptables -L -v -x`). */
export async function ruleCount(
  net: TestNet,
  ns: string,
  cmd: string,
  chain: string,
): Promise<number> {
  const out = await net.run(ns, [cmd, "-L", chain, "-n", "-v", "-x"]);
  const line = out.split("\n")[2] ?? "";
  return Number(line.trim().split(/\s+/)[0] ?? "0");
}

/** Count, in each target's INPUT chain, the ICMP frag-needed / ICMPv6 packet-too-big it gets. */
export async function countPmtuErrors(net: TestNet, targets: Iterable<string>): Promise<void> {
  for (const ns of targets) {
    await net.run(ns, [
      "iptables",
      "-A",
      "INPUT",
      "-p",
      "icmp",
      "--icmp-type",
      "fragmentation-needed",
    ]);
    await net.run(ns, [
      "ip6tables",
      "-A",
      "INPUT",
      "-p",
      "icmpv6",
      "--icmpv6-type",
      "packet-too-big",
    ]);
  }
}

/**
 * Send `count` PMTU errors from `ns` for the replies VIP:port -> src:(base + i), as a router
 * on the way back would (fixtures/frag_client.py --pmtu), and check that each reaches the target
 * `shm` predicts for its flow (counted by {@link countPmtuErrors}; targets: name -> namespace).
 */
export async function checkPmtuErrors(
  net: TestNet,
  ns: string,
  svc: Service,
  shm: string,
  targets: ReadonlyMap<string, string>,
  src: string,
  base: number,
  count: number,
): Promise<void> {
  const v6 = src.includes(":");
  const cmd = v6 ? "ip6tables" : "iptables";
  const want = new Map<string, number>();
  for (let p = base; p < base + count; p++) {
    const tgt = await predict(svc, shm, src, p);
    want.set(tgt!, (want.get(tgt!) ?? 0) + 1);
  }
  const before = new Map<string, number>();
  for (const [name, t] of targets) before.set(name, await ruleCount(net, t, cmd, "INPUT"));
  const r = await net.exec(ns, [
    ...FRAG_CLIENT,
    "--pmtu",
    `--src=${src}`,
    `--dst=${v6 ? svc.vip6 : svc.vip4}`,
    `--port=${svc.port}`,
    "--size=0",
    `--count=${count}`,
    `--sport-base=${base}`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const got = new Map<string, number>();
  const deadline = Date.now() + 3000;
  for (;;) {
    for (const [name, t] of targets) {
      const n = await ruleCount(net, t, cmd, "INPUT") - before.get(name)!;
      if (n > 0) got.set(name, n);
    }
    const total = [...got.values()].reduce((a, b) => a + b, 0);
    if (total >= count || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(Object.fromEntries(got), Object.fromEntries(want), `IPv${v6 ? 6 : 4}`);
}

/**
 * Namespaces `cl` -> veth -> `lb` (`lb4`/24, `cl4`/24) where UDP to `port` is queued to `queue`
 * in lb's mangle PREROUTING and counted in mangle INPUT by two rules: `all`, and `marked` (fwmark
 * `mark`, the target's).
 */
export interface MarkedUdpNet {
  readonly lb: string;
  readonly cl: string;
  /** Send `count` datagrams from `cl` to lb4:port. */
  send(count: number): Promise<string>;
  /** Packets the mangle INPUT rule `all` or `marked` counted. */
  counter(rule: "all" | "marked"): Promise<number>;
}

/** Build a {@link MarkedUdpNet} in `net` (the client has pinged lb when it returns). */
export async function markedUdpNet(
  net: TestNet,
  o: { lb4: string; cl4: string; port: number; queue: number; mark: number },
): Promise<MarkedUdpNet> {
  const lb = await net.addNs("lb");
  const cl = await net.addNs("cl");
  await net.veth(lb, "veth0", cl, "veth0");
  for (const [ns, a4] of [[lb, o.lb4], [cl, o.cl4]]) {
    await net.run(ns, ["ip", "addr", "add", `${a4}/24`, "dev", "veth0"]);
  }
  await net.run(cl, ["ping", "-c1", "-W2", o.lb4]);
  const ipt = (...args: string[]) => net.run(lb, ["iptables", "-t", "mangle", ...args]);
  const udp = ["-p", "udp", "--dport", `${o.port}`];
  await ipt("-A", "PREROUTING", ...udp, "-j", "NFQUEUE", "--queue-num", `${o.queue}`);
  await ipt("-A", "INPUT", ...udp, "-m", "comment", "--comment", "all");
  const mark = ["-m", "mark", "--mark", `${o.mark}`];
  await ipt("-A", "INPUT", ...udp, ...mark, "-m", "comment", "--comment", "marked");
  return {
    lb,
    cl,
    send: (count) =>
      net.run(cl, [...UDP_SENDER, `--to=${o.lb4}`, `--port=${o.port}`, `--count=${count}`]),
    async counter(rule) {
      const out = await ipt("-L", "INPUT", "-nvx");
      const line = out.split("\n").find((l) => l.includes(`/* ${rule} */`));
      assert.ok(line !== undefined, `no rule ${rule} in:\n${out}`);
      return Number(line.trim().split(/\s+/)[0]);
    },
  };
}

/** GET `http://ADDR/PATH` (argv 1 and 2): prints the status line's code, then the body. */
const HTTP_GET = `
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen("http://" + sys.argv[1] + sys.argv[2], timeout=5)
    print(r.status); print(r.read().decode(), end="")
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode(), end="")
`;

/** GET `path` from the HTTP server at `address` (`--metrics`) inside `ns`: [status, body]. */
export async function httpGet(
  net: TestNet,
  ns: string,
  address: string,
  path: string,
): Promise<[number, string]> {
  const out = await net.run(ns, ["/usr/bin/python3", "-c", HTTP_GET, address, path]);
  const nl = out.indexOf("\n");
  return [Number(out.slice(0, nl)), out.slice(nl + 1)];
}
