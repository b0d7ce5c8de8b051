/**
 * End-to-end test of `nfqlb lb` (issue 3), as root, in private network
 * namespaces:
 *
 * ```
 *   cl (10.203.0.2-5, fd00:203::2-5)
 *    | veth
 *   lb (nfqlb lb; mangle PREROUTING -d VIP -j NFQUEUE; ip rule fwmark 10i table 10i)
 *    | veth x4
 *   t1..t4 (VIP 10.203.255.1 / fd00:203:ffff::1 on lo; e2e_target.ts answers with its name)
 * ```
 *
 * Packets from the client to the VIP are queued to `nfqlb lb`, which ACCEPTs
 * them with the fwmark of a target; policy routing forwards them to that
 * target. Targets route their replies back through the LB (replies are not
 * queued). The table is created with the CLI in shared memory; every
 * expected placement comes from `nfqlb fwmark --shm=… --proto=…` (run
 * in-process), so the test checks the real data path against the hash the
 * CLI computes from the same table.
 *
 * The client (testkit/fixtures/e2e_client.ts) opens all connections of a
 * batch concurrently from explicit source addresses and ports and prints
 * one JSON line; the same batch (700 exchanges: TCP and UDP, IPv4 and IPv6)
 * is repeated after each change. Steps:
 * 1. every exchange is answered by the target `nfqlb fwmark` predicts; the
 *    spread over the 4 targets is within ±30% of even;
 * 2. ping over IPv4 and IPv6 (the echo requests pass the queue);
 * 3. fragmented UDP: all fragments follow the first one (the targets
 *    reassemble and answer);
 * 4. the same 5-tuples land on the same targets again;
 * 5. `deactivate` moves exactly the tuples `fwmark` predicts (all of the
 *    removed target's, a few of the others'), `activate` restores the mapping;
 * 6. SIGTERM: exit 0, nothing on stderr, the queue is unbound; a restarted
 *    daemon keeps every mapping;
 * 7. `--queue=0:1` with `--queue-balance 0:1`: same mapping, both worker
 *    threads carry packets; SIGINT stops it with exit 0;
 * 8. `--fail-open` with a stopped daemon (SIGSTOP) and `--qlength=4`: the
 *    excess is accepted (and routed unmarked); without it, it is dropped and
 *    only the 4 queued packets arrive after SIGCONT.
 */
import assert from "node:assert/strict";
import { runCli } from "../../testkit/cli.ts";
import { traceShmName } from "../../daemon/open_trace_shm.ts";
import {
  Addressing,
  buildTopology,
  type ClientResult,
  tupleKey,
} from "../../testkit/e2e_topology.ts";
import { LineProcess } from "../../testkit/line_process.ts";
import { isRoot, type TestNet, withTestNet } from "../../testkit/netns.ts";

const ROOT = isRoot();
if (!ROOT) {
  console.warn("lb_e2e_test: not running as root: nfqlb lb end-to-end test skipped");
}

const DENO = Deno.execPath();
const CLI = new URL("../../cli.ts", import.meta.url).pathname;
const FIXTURES = new URL("../../testkit/fixtures/", import.meta.url).pathname;
const TARGET = [DENO, "run", "--allow-all", FIXTURES + "e2e_target.ts"];
const CLIENT = [DENO, "run", "--allow-all", FIXTURES + "e2e_client.ts"];

const NET = new Addressing(203, 4, 4);
const { vip4: VIP4, vip6: VIP6, lbCl4: LB_CL4, lbCl6: LB_CL6, cl4: CL4, cl6: CL6 } = NET;
const TARGETS = NET.targets;
const tName = (i: number) => NET.tName(i);
const tMark = (i: number) => NET.tMark(i);
const tAddr4 = (i: number) => NET.tAddr4(i);
const tAddr6 = (i: number) => NET.tAddr6(i);
const lbAddr4 = (i: number) => NET.lbAddr4(i);
const lbAddr6 = (i: number) => NET.lbAddr6(i);
const PORT = 80;
/** Client addresses: several, so that `--queue-balance` (which hashes addresses) uses both queues. */
const MARK_TO_TARGET = new Map(TARGETS.map((i) => [tMark(i), tName(i)]));
/** Single-queue number. */
const Q = 5;

/** The main batch: 400 TCP/IPv4, 100 each of UDP/IPv4, TCP/IPv6, UDP/IPv6. */
const BATCH = [
  ...CL4.map((a) => `tcp/${a}/20000-20099`),
  ...CL4.map((a) => `udp/${a}/21000-21024`),
  ...CL6.map((a) => `tcp/${a}/22000-22024`),
  ...CL6.map((a) => `udp/${a}/23000-23024`),
];
const BATCH_SIZE = 700;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The trace server's log lines (docs/COMPATIBILITY.md#trace-and-log). */
const TRACE_LOG = /^warning: Trace(; active mask=0x[0-9a-f]{8}|: closed)$/;

/** The trace mask in the host's `nfqlb-trace` object (docs/COMPATIBILITY.md#shared-memory), 0 if there is none. */
function traceMask(): number {
  try {
    const b = Deno.readFileSync(`/dev/shm/${traceShmName()}`);
    return b.length >= 8 ? new DataView(b.buffer).getUint32(4, true) : 0;
  } catch {
    return 0;
  }
}

// ---------------------------------------------------------------- processes

/** `nfqlb lb` in the LB namespace. */
class Lb extends LineProcess {
  constructor(net: TestNet, ns: string, readonly queues: number[], args: string[]) {
    super(net, ns, [DENO, "run", "--allow-all", CLI, "lb", ...args], "nfqlb lb");
  }

  /** Wait for the `FragTable;` line and one `queue_length=` line per queue. */
  async ready(): Promise<void> {
    await this.waitLines(/^FragTable; /);
    await this.waitLines(/^queue_length=\d+, mtu=\d+, SO_RCVBUF=\d+ \(\d+\)$/, this.queues.length);
  }

  /** Send `signal` (SIGTERM or SIGINT) and wait for the exit. */
  async stop(signal: "SIGTERM" | "SIGINT" = "SIGTERM"): Promise<{ code: number; stderr: string }> {
    Deno.kill(this.pid, signal);
    const r = await this.finish();
    return { code: r.code, stderr: r.stderr };
  }
}

// ---------------------------------------------------------------- helpers

/** Run `nfqlb <args>` in-process; it must succeed. Returns stdout. */
async function cli(...args: string[]): Promise<string> {
  const r = await runCli(...args);
  assert.equal(r.code, 0, `nfqlb ${args.join(" ")}: exit ${r.code}: ${r.err}`);
  return r.out;
}

/** Target name `nfqlb fwmark` predicts for a tuple to the VIP (null: no target). */
async function predict(shm: string, r: { proto: string; src: string; sport: number }) {
  const v6 = r.src.includes(":");
  const src = v6 ? `[${r.src}]:${r.sport}` : `${r.src}:${r.sport}`;
  const dst = v6 ? `[${VIP6}]:${PORT}` : `${VIP4}:${PORT}`;
  const out = await cli(
    "fwmark",
    `--shm=${shm}`,
    `--proto=${r.proto}`,
    `--src=${src}`,
    `--dst=${dst}`,
  );
  const fw = JSON.parse(out).fwmark as number;
  return MARK_TO_TARGET.get(fw) ?? null;
}

/** Predictions for every tuple of `results`, keyed by tuple. */
async function predictAll(
  shm: string,
  results: ClientResult[],
): Promise<Map<string, string | null>> {
  const m = new Map<string, string | null>();
  for (const r of results) m.set(tupleKey(r), await predict(shm, r));
  return m;
}

/** Run the client in the client namespace with `sets`; returns its results. */
async function runClient(net: TestNet, ns: string, sets: string[], extra: string[] = []) {
  const r = await net.exec(ns, [
    ...CLIENT,
    `--dst4=${VIP4}`,
    `--dst6=${VIP6}`,
    `--port=${PORT}`,
    `--sets=${sets.join(",")}`,
    ...extra,
  ]);
  assert.equal(r.code, 0, `client failed: ${r.stdout}\n${r.stderr}`);
  const parsed = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as {
    results: ClientResult[];
    ms: number;
  };
  return parsed;
}

/** Run the main batch; every exchange must be answered. Returns tuple -> target. */
async function batch(net: TestNet, ns: string, what: string): Promise<Map<string, string>> {
  const { results, ms } = await runClient(net, ns, BATCH, ["--concurrency=100"]);
  assert.equal(results.length, BATCH_SIZE);
  const failed = results.filter((r) => r.target === null);
  assert.equal(
    failed.length,
    0,
    `${what}: ${failed.length} unanswered, e.g. ${JSON.stringify(failed.slice(0, 3))}`,
  );
  const retried = results.filter((r) => r.tries > 1).length;
  console.log(`  ${what}: ${results.length} exchanges in ${ms} ms (${retried} retried)`);
  return new Map(results.map((r) => [tupleKey(r), r.target!]));
}

/** Tuples of a batch result map, parsed back. */
function tuples(m: Map<string, string>): ClientResult[] {
  return [...m.keys()].map((k) => {
    const [proto, src, sport] = k.split("/");
    return { proto: proto as "tcp" | "udp", src, sport: Number(sport), target: null, tries: 0 };
  });
}

/** Our queues' lines of /proc/net/netfilter/nfnetlink_queue, keyed by queue number. */
async function procQueues(net: TestNet, ns: string) {
  const out = await net.run(ns, ["cat", "/proc/net/netfilter/nfnetlink_queue"]);
  const m = new Map<number, { total: number; dropped: number; userDropped: number; seq: number }>();
  for (const l of out.split("\n")) {
    const f = l.trim().split(/\s+/).map(Number);
    if (f.length >= 8) m.set(f[0], { total: f[2], dropped: f[5], userDropped: f[6], seq: f[7] });
  }
  return m;
}

/** Poll `f` until `ok` holds (or time out); returns the last value. */
async function until<T>(f: () => Promise<T>, ok: (v: T) => boolean, ms = 3000): Promise<T> {
  const deadline = Date.now() + ms;
  let v = await f();
  while (!ok(v) && Date.now() < deadline) {
    await sleep(50);
    v = await f();
  }
  return v;
}

function counts(m: Map<string, string>, filter: (k: string) => boolean = () => true) {
  const c = new Map<string, number>(TARGETS.map((i) => [tName(i), 0]));
  for (const [k, t] of m) if (filter(k)) c.set(t, (c.get(t) ?? 0) + 1);
  return c;
}

function processState(pid: number): string {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
}

// ---------------------------------------------------------------- the test

Deno.test({
  name: "nfqlb lb end to end: client -> LB (NFQUEUE + fwmark routing) -> 4 targets (needs root)",
  ignore: !ROOT,
  async fn(t) {
    const token = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
    const tshm = `nfqlbe2e-${Deno.pid}-${token}-t`;
    const ftshm = `nfqlbe2e-${Deno.pid}-${token}-ft`;
    try {
      await withTestNet(async (net) => {
        // ---- topology (tests/e2e_topology.ts)
        const { cl, lb, targets, ip } = await buildTopology(net, NET);
        // Resolve all neighbours up front (the first packets must not wait for ARP/ND).
        const pings: [string, string][] = [[cl, LB_CL4], [cl, LB_CL6]];
        for (const a of [...CL4, ...CL6]) pings.push([lb, a]);
        for (const [i, ns] of targets) {
          pings.push([lb, tAddr4(i)], [lb, tAddr6(i)], [ns, lbAddr4(i)], [ns, lbAddr6(i)]);
        }
        await Promise.all(pings.map(([ns, a]) => net.run(ns, ["ping", "-c1", "-W3", a])));

        // ---- queue rules
        const setQueueRule = async (nfq: string[], op = "-A") => {
          for (const [ipt, vip] of [["iptables", VIP4], ["ip6tables", VIP6]]) {
            const spec = ["PREROUTING", ...(op === "-R" ? ["1"] : []), "-d", vip];
            await net.run(lb, [ipt, "-t", "mangle", op, ...spec, "-j", "NFQUEUE", ...nfq]);
          }
        };
        await setQueueRule(["--queue-num", String(Q)]);

        // ---- targets
        const servers = [...targets].map(([i, ns]) =>
          new LineProcess(net, ns, [
            ...TARGET,
            `--name=${tName(i)}`,
            `--vip4=${VIP4}`,
            `--vip6=${VIP6}`,
            `--port=${PORT}`,
          ], tName(i))
        );
        await Promise.all(servers.map((s) => s.waitLines(/^READY$/)));

        // ---- table: M=997, N=32, targets 101..104
        await cli("init", `--shm=${tshm}`, "--M=997", "--N=32");
        await cli("activate", `--shm=${tshm}`, ...TARGETS.map((i) => String(tMark(i))));

        const lbArgs = [`--tshm=${tshm}`, `--ft_shm=${ftshm}`];
        let daemon: Lb | null = new Lb(net, lb, [Q], [...lbArgs, `--queue=${Q}`]);
        await daemon.ready();
        const stopDaemon = async (signal: "SIGTERM" | "SIGINT" = "SIGTERM") => {
          const d = daemon!;
          daemon = null;
          const r = await d.stop(signal);
          assert.equal(r.code, 0, `lb exit ${r.code} after ${signal}: ${r.stderr}`);
          // Only the trace server's warnings (docs/COMPATIBILITY.md#trace-and-log) when a trace client came and went.
          const other = r.stderr.split("\n").filter((l) => l !== "" && !TRACE_LOG.test(l));
          assert.deepEqual(other, [], "nothing else on stderr");
          return r;
        };
        /** After a failure: make sure no daemon is left holding a queue. */
        const dropDaemon = async () => {
          const d = daemon;
          daemon = null;
          if (d === null) return;
          try {
            Deno.kill(d.pid, "SIGCONT");
            Deno.kill(d.pid, "SIGKILL");
          } catch {
            // already gone
          }
          await d.finish();
        };

        let base = new Map<string, string>();
        let basePrediction = new Map<string, string | null>();

        await t.step(
          "TCP and UDP over IPv4 and IPv6 from 700 source ports: each lands where `nfqlb fwmark` predicts; spread within ±30%",
          async () => {
            base = await batch(net, cl, "first batch");
            basePrediction = await predictAll(tshm, tuples(base));
            const wrong = [...base].filter(([k, tgt]) => basePrediction.get(k) !== tgt);
            assert.deepEqual(wrong, [], "every tuple on its predicted target");
            for (
              const [what, filter] of [
                ["TCP/IPv4 (400)", (k: string) => k.startsWith("tcp/10.")],
                ["all 700", () => true],
              ] as const
            ) {
              const c = counts(base, filter);
              const n = [...c.values()].reduce((a, b) => a + b, 0);
              console.log(`  spread ${what}: ${JSON.stringify(Object.fromEntries(c))}`);
              for (const [tgt, k] of c) {
                assert.ok(
                  Math.abs(k - n / 4) <= 0.3 * n / 4,
                  `${what}: ${tgt} got ${k} of ${n}, not within ±30% of ${n / 4}`,
                );
              }
            }
            for (const kind of ["tcp/10.", "udp/10.", "tcp/fd00", "udp/fd00"]) {
              const used = new Set([...base].filter(([k]) => k.startsWith(kind)).map(([, v]) => v));
              assert.equal(used.size, 4, `${kind}: all 4 targets used`);
            }
          },
        );

        await t.step(
          "trace --selection=packet: one line per packet with its fwmark; detaching resets the mask",
          async () => {
            const tr = new LineProcess(net, lb, [
              DENO,
              "run",
              "--allow-all",
              CLI,
              "trace",
              "--selection=packet",
            ], "trace");
            try {
              assert.deepEqual(await tr.waitLines(/^Mask=/), ["Mask=0x00000002"]);
              await tr.waitLines(/^Trace active, mask=0x00000002$/);
              assert.equal(traceMask(), 2, "the mask is in nfqlb-trace");
              const r = await net.exec(cl, ["ping", "-c3", "-i0.2", "-W3", "-4", VIP4]);
              assert.equal(r.code, 0, r.stdout + r.stderr);
              const lines = await tr.waitLines(/^Load-balance packet\. fw=/, 3);
              for (const l of lines) {
                // 1.2.0's text, then the packet (COMPATIBILITY D60): an echo request to the VIP.
                const m = /^Load-balance packet\. fw=(\d+), (\S+) -> (\S+), icmp type=8 code=0$/
                  .exec(l);
                assert.ok(m, `${l}: 1.2.0's line with the packet's addresses and ICMP type`);
                assert.ok(MARK_TO_TARGET.has(Number(m[1])), `${l}: a target's fwmark`);
                assert.equal(m[3], VIP4, `${l}: to the VIP`);
              }
            } finally {
              Deno.kill(tr.pid, "SIGTERM");
              await tr.finish();
            }
            assert.equal(
              await until(() => Promise.resolve(traceMask()), (m) => m === 0),
              0,
              "mask reset",
            );
          },
        );

        await t.step(
          "ping to the VIP over IPv4 and IPv6 (echo requests pass the queue)",
          async () => {
            const before = (await procQueues(net, lb)).get(Q)!.seq;
            for (const args of [["-4", VIP4], ["-6", VIP6]]) {
              const r = await net.exec(cl, ["ping", "-c3", "-i0.2", "-W3", ...args]);
              assert.equal(r.code, 0, r.stdout + r.stderr);
              assert.match(r.stdout, /3 packets transmitted, 3 received/);
            }
            assert.equal(
              (await procQueues(net, lb)).get(Q)!.seq - before,
              6,
              "6 echo requests queued",
            );
          },
        );

        await t.step(
          "fragmented UDP (3000 bytes, IPv4 and IPv6): all fragments reach the first fragment's target",
          async () => {
            const reassembled = async () => {
              let v4 = 0;
              let v6 = 0;
              for (const ns of targets.values()) {
                const snmp = await net.run(ns, ["cat", "/proc/net/snmp", "/proc/net/snmp6"]);
                const ip = snmp.split("\n").filter((l) => l.startsWith("Ip: "));
                v4 += Number(ip[1].split(" ")[ip[0].split(" ").indexOf("ReasmOKs")]);
                v6 += Number(/^Ip6ReasmOKs\s+(\d+)$/m.exec(snmp)![1]);
              }
              return { v4, v6 };
            };
            const before = await reassembled();
            const sets = [...CL4, ...CL6].map((a) => `udp/${a}/25000-25009`);
            const { results } = await runClient(net, cl, sets, ["--size=3000", "--concurrency=80"]);
            assert.equal(results.length, 80);
            const failed = results.filter((r) => r.target === null);
            assert.deepEqual(failed, [], "every fragmented datagram reassembled and answered");
            const after = await reassembled();
            assert.ok(after.v4 - before.v4 >= 40, "40 IPv4 datagrams reassembled by the targets");
            assert.ok(after.v6 - before.v6 >= 40, "40 IPv6 datagrams reassembled by the targets");
            // IPv4 first fragments carry the ports, so they hash like unfragmented packets.
            // (IPv6 first fragments hash a quirky key, docs/COMPATIBILITY.md#hashing-and-parsing, that `fwmark` does not model.)
            for (const r of results.filter((r) => !r.src.includes(":"))) {
              assert.equal(r.target, await predict(tshm, r), tupleKey(r));
            }
          },
        );

        await t.step("the same 5-tuples land on the same targets again", async () => {
          const again = await batch(net, cl, "repeat");
          assert.deepEqual(again, base);
        });

        await t.step(
          "deactivate moves exactly the tuples `nfqlb fwmark` predicts; activate restores the mapping",
          async () => {
            const gone = 2;
            await cli("deactivate", `--shm=${tshm}`, String(tMark(gone)));
            let reactivated = false;
            try {
              const predicted = await predictAll(tshm, tuples(base));
              const after = await batch(net, cl, `without ${tName(gone)}`);
              const wrong = [...after].filter(([k, tgt]) => predicted.get(k) !== tgt);
              assert.deepEqual(wrong, [], "every tuple on its predicted target");
              let fromGone = 0;
              let others = 0;
              const movedOthers: string[] = [];
              for (const [k, was] of base) {
                const now = after.get(k)!;
                if (was === tName(gone)) {
                  fromGone++;
                  assert.notEqual(now, was, `${k} still on the deactivated target`);
                } else {
                  others++;
                  if (now !== was) movedOthers.push(`${k}: ${was}->${now}`);
                }
              }
              console.log(
                `  deactivate ${tName(gone)}: ${fromGone} moved off it; ${movedOthers.length} of ` +
                  `${others} others moved (as predicted)`,
              );
              assert.ok(fromGone > 0);
              assert.ok(
                movedOthers.length <= 0.05 * others,
                `Maglev should move few others: ${movedOthers.length} of ${others}`,
              );

              await cli("activate", `--shm=${tshm}`, String(tMark(gone)));
              reactivated = true;
              assert.deepEqual(await predictAll(tshm, tuples(base)), basePrediction);
              assert.deepEqual(await batch(net, cl, `${tName(gone)} back`), base);
            } finally {
              if (!reactivated) await cli("activate", `--shm=${tshm}`, String(tMark(gone)));
            }
          },
        );

        await t.step(
          "SIGTERM: exit 0, queue unbound; a restarted lb keeps every 5-tuple on its target",
          async () => {
            assert.ok((await procQueues(net, lb)).has(Q), "queue bound while running");
            await stopDaemon();
            assert.ok(!(await procQueues(net, lb)).has(Q), "queue gone after SIGTERM");
            daemon = new Lb(net, lb, [Q], [...lbArgs, `--queue=${Q}`]);
            await daemon.ready();
            assert.deepEqual(await batch(net, cl, "after restart"), base);
          },
        );

        await t.step(
          "--queue=0:1 with --queue-balance 0:1 (two worker threads): same mapping, both queues used; SIGINT stops it",
          async () => {
            if (daemon !== null) await stopDaemon();
            await setQueueRule(["--queue-balance", "0:1"], "-R");
            try {
              daemon = new Lb(net, lb, [0, 1], [...lbArgs, "--queue=0:1"]);
              await daemon.ready();
              const pq = await procQueues(net, lb);
              assert.ok(pq.has(0) && pq.has(1), "queues 0 and 1 bound");
              assert.deepEqual(await batch(net, cl, "two queues"), base);
              const used = await procQueues(net, lb);
              const seq = [0, 1].map((q) => used.get(q)!.seq);
              console.log(`  packets per queue: ${seq.join(", ")}`);
              assert.ok(seq.every((s) => s > 0), `both queues carried packets: ${seq}`);
              for (const q of [0, 1]) assert.equal(used.get(q)!.dropped, 0);
              await stopDaemon("SIGINT");
              const left = await procQueues(net, lb);
              assert.ok(!left.has(0) && !left.has(1), "both queues gone after SIGINT");
            } finally {
              await dropDaemon();
              await setQueueRule(["--queue-num", String(Q)], "-R");
            }
          },
        );

        await t.step(
          "--fail-open: a full queue (stopped reader) accepts the excess; without it the excess is dropped",
          async () => {
            await dropDaemon();
            // Accepted packets without a fwmark follow the main table: send them to t1.
            await ip(lb, "route", "add", `${VIP4}/32`, "via", tAddr4(1));
            const QLEN = 4;
            const BURST = 20;
            const stalledBurst = async (d: Lb, failOpen: boolean, firstPort: number) => {
              await d.ready();
              const before = (await procQueues(net, lb)).get(Q)!;
              Deno.kill(d.pid, "SIGSTOP");
              await until(() => Promise.resolve(processState(d.pid)), (s) => s === "T");
              const client = new LineProcess(net, cl, [
                ...CLIENT,
                `--dst4=${VIP4}`,
                `--port=${PORT}`,
                `--sets=udp/${CL4[0]}/${firstPort}-${firstPort + BURST - 1}`,
                `--concurrency=${BURST}`,
                "--tries=1",
                "--timeout-ms=3000",
                "--announce",
              ], "client");
              try {
                await client.waitLines(/^SENT$/);
                const want = (v: { total: number; dropped: number }) =>
                  v.total === QLEN && v.dropped - before.dropped === (failOpen ? 0 : BURST - QLEN);
                const stalled = await until(async () => (await procQueues(net, lb)).get(Q)!, want);
                assert.ok(want(stalled), `queue while stopped: ${JSON.stringify(stalled)}`);
              } finally {
                Deno.kill(d.pid, "SIGCONT");
              }
              const r = await client.finish();
              assert.equal(r.code, 0, r.stderr);
              const { results } = JSON.parse(r.lines.at(-1)!) as { results: ClientResult[] };
              await stopDaemon();
              return results;
            };
            const burst = async (failOpen: boolean, firstPort: number) => {
              const d = new Lb(net, lb, [Q], [
                ...lbArgs,
                `--queue=${Q}`,
                `--qlength=${QLEN}`,
                ...(failOpen ? ["--fail-open"] : []),
              ]);
              daemon = d;
              try {
                return await stalledBurst(d, failOpen, firstPort);
              } finally {
                await dropDaemon();
              }
            };

            const open = await burst(true, 24000);
            const openAnswered = open.filter((r) => r.target !== null);
            console.log(`  fail-open: ${openAnswered.length} of ${BURST} answered`);
            assert.equal(openAnswered.length, BURST, "all delivered: queued ones after SIGCONT");
            const byFallback = open.filter((r) => r.target === tName(1)).length;
            assert.ok(byFallback >= BURST - QLEN, "the excess went the unmarked (main table) way");

            const closed = await burst(false, 24100);
            const closedAnswered = closed.filter((r) => r.target !== null);
            console.log(`  default: ${closedAnswered.length} of ${BURST} answered`);
            assert.equal(closedAnswered.length, QLEN, "only the queued packets are delivered");
            for (const r of closedAnswered) assert.equal(r.target, await predict(tshm, r));
            await ip(lb, "route", "del", `${VIP4}/32`);
          },
        );

        await t.step("clean shutdown leaves no queue and the targets exit cleanly", async () => {
          if (daemon !== null) await stopDaemon();
          assert.equal((await procQueues(net, lb)).size, 0);
          for (const s of servers) assert.equal((await s.finish()).code, 0);
        });
      });
    } finally {
      for (const name of [tshm, ftshm]) await runCli("delete", `--shm=${name}`);
    }
  },
});
