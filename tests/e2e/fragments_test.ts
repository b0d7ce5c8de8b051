/**
 * Fragments end to end (docs/COMPATIBILITY.md#fragments), as root, in private
 * network namespaces:
 *
 * ```
 *   cl (10.207.0.2, fd00:207::2)   testkit/fixtures/frag_client.py: raw-socket fragments
 *    | veth
 *   lb (nfqlb lb|flowlb --tun=nfqtun; raw notrack; mangle PREROUTING -d VIP -j NFQUEUE;
 *    |  tun device nfqtun, up: re-injected fragments come back through the same rule)
 *    | veth x4
 *   t1..t4 (VIP on lo; e2e_target.ts answers each UDP datagram with its name)
 * ```
 *
 * A target's kernel hands a datagram to its socket only when every fragment
 * reached it (the UDP checksum covers the whole datagram), so an answer from
 * target X means "arrived whole at X". Every datagram must be answered by the
 * target `nfqlb fwmark` predicts for its 5-tuple: 50 datagrams per case, of
 * 3000 and 10000 bytes, IPv4 and IPv6, fragments in order, reversed and
 * shuffled, for `lb` with and without `--reassembler` and for `flowlb`.
 * Then: two queue threads with CPU fanout (first fragments from one CPU, the
 * rest from the other), no `--tun` (the loss is counted, not silent),
 * conntrack in the LB namespace (the kernel reassembles: counted and logged
 * once), ICMP "fragmentation needed" / "packet too big" (PMTU) reaching the
 * flow's target, and a flood of orphan fragments (memory bounded).
 */
import assert from "node:assert/strict";
import { Addressing } from "../../testkit/e2e_topology.ts";
import {
  checkPmtuErrors,
  cli,
  countPmtuErrors,
  Daemon,
  FLOW_ENV,
  FRAG_CLIENT,
  type FragCase,
  fragDrops,
  fragStats,
  perFamily,
  queueSeq,
  readyTopology,
  removeShmObjects,
  sendAndCheck as sendAndCheckTo,
  sendFragments,
  type Service,
  serviceOf,
} from "../../testkit/e2e_service.ts";
import { isRoot, type TestNet, withTestNet } from "../../testkit/netns.ts";

const ROOT = isRoot();
if (!ROOT) console.warn("fragments_test: not running as root: fragment end-to-end test skipped");

const DENO = Deno.execPath();
const CLI = new URL("../../cli.ts", import.meta.url).pathname;

const NET = new Addressing(207, 1, 1);
const { vip4: VIP4, vip6: VIP6, cl4: [CL4], cl6: [CL6] } = NET;
const PORT = 80;
const SVC: Service = serviceOf(NET, PORT);
const Q = 7;
const TUN = "nfqtun";
const PER_CASE = 50;
const ORDERS = ["in-order", "reverse", "shuffle"] as const;

/** A case of this test: the family picks the client address. */
interface Case extends Omit<FragCase, "src" | "count"> {
  v6: boolean;
  count?: number;
}
const asFragCase = (c: Case): FragCase => ({
  ...c,
  src: c.v6 ? CL6 : CL4,
  count: c.count ?? PER_CASE,
});
const send = (net: TestNet, ns: string, c: Case) => sendFragments(net, ns, SVC, asFragCase(c));
const sendAndCheck = (net: TestNet, ns: string, shm: string, c: Case, what: string) =>
  sendAndCheckTo(net, ns, SVC, shm, asFragCase(c), what);
const drops = fragDrops;

/** Resident memory of a process, in kB. */
function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  return m === null ? 0 : Number(m[1]);
}

Deno.test({
  name:
    "fragments end to end: tun re-injection, every order, lb and flowlb, two queues (needs root)",
  ignore: !ROOT,
  async fn(t) {
    const token = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
    const tshm = `nfqlbfrag-${Deno.pid}-${token}-t`;
    const ftshm = `nfqlbfrag-${Deno.pid}-${token}-ft`;
    let daemon: Daemon | null = null;
    try {
      await withTestNet(async (net) => {
        // Queue rule -d VIP -> queue Q: it also catches what comes back through the tun device.
        const { cl, lb, targets, ip, servers } = await readyTopology(net, NET, SVC, Q, tshm);
        // The tun device the daemon re-injects stored fragments through.
        await ip(lb, "tuntap", "add", TUN, "mode", "tun");
        await ip(lb, "link", "set", TUN, "up");
        await perFamily(
          SVC,
          (ipt) => net.run(lb, [ipt, ..."-t raw -A PREROUTING -j NOTRACK".split(" ")]),
        );
        const queueRule = (op: "-A" | "-D", nfq: string[]) =>
          perFamily(
            SVC,
            (ipt, vip) =>
              net.run(lb, [
                ipt,
                "-t",
                "mangle",
                op,
                "PREROUTING",
                "-d",
                vip,
                "-j",
                "NFQUEUE",
                ...nfq,
              ]),
          );
        const oneQueue = ["--queue-num", String(Q)];
        /** A rule that needs conntrack: the kernel then reassembles fragments in this namespace. */
        const conntrackRule = (op: "-A" | "-D") =>
          perFamily(
            SVC,
            (ipt) =>
              net.run(lb, [
                ipt,
                op,
                ..."FORWARD -m conntrack --ctstate INVALID -j DROP".split(" "),
              ]),
          );

        const start = async (cmd: "lb" | "flowlb", args: string[], queues = 1) => {
          await daemon?.kill(); // what a failed step left behind (its queue, its tun device)
          const d = new Daemon(net, lb, cmd, [`--ft_shm=${ftshm}`, ...args]);
          daemon = d;
          await d.ready(queues);
          if (cmd === "flowlb") {
            const r = await net.exec(lb, [
              ...FLOW_ENV,
              DENO,
              "run",
              "--allow-all",
              CLI,
              "flow-set",
              "--name=udp80",
              `--target=${tshm}`,
              "--protocols=udp",
              `--dports=${PORT}`,
            ]);
            assert.equal(r.stdout, "OK\n", r.stderr);
          }
          return d;
        };
        const stop = async () => {
          const d = daemon!;
          daemon = null;
          const r = await d.stop();
          assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}`);
          return r.stderr;
        };

        let sportBase = 20000;
        const configs: [string, "lb" | "flowlb", string[]][] = [
          ["lb --tun", "lb", [`--tshm=${tshm}`, `--queue=${Q}`, `--tun=${TUN}`]],
          [
            "lb --tun --reassembler=500",
            "lb",
            [`--tshm=${tshm}`, `--queue=${Q}`, `--tun=${TUN}`, "--reassembler=500"],
          ],
          ["flowlb --tun", "flowlb", [`--queue=${Q}`, `--tun=${TUN}`, "--reassembler=500"]],
        ];
        for (const [label, cmd, args] of configs) {
          await t.step(
            `${label}: 3000 and 10000 bytes, IPv4 and IPv6, in order, reversed, shuffled: all whole`,
            async () => {
              await start(cmd, args);
              for (const v6 of [false, true]) {
                for (const size of [3000, 10000]) {
                  for (const order of ORDERS) {
                    const c = { v6, size, order, sportBase };
                    sportBase += PER_CASE;
                    await sendAndCheck(
                      net,
                      cl,
                      tshm,
                      c,
                      `${label} IPv${v6 ? 6 : 4} ${size} ${order}`,
                    );
                  }
                }
              }
              const s = fragStats(ftshm);
              console.log(`  stats: stored ${s.fragsAllocated}, injected ${s.fragsInjected}`);
              assert.ok(s.fragsAllocated > 0, "out-of-order fragments were stored");
              assert.equal(s.fragsInjected, s.fragsAllocated, "every stored fragment re-injected");
              assert.deepEqual(drops(s), {}, "no fragment dropped");
              assert.equal(s.kernelReassembled, 0, "notrack: the kernel reassembled nothing");
              if (args.includes("--reassembler=500")) assert.ok(s.reAssembled > 0);
              // `nfqlb stats` reads the daemon's live object: the same figures, valid JSON.
              const text = await cli("stats", `--ft_shm=${ftshm}`);
              const printed = JSON.parse(text);
              assert.equal(printed.fragsInjected, fragStats(ftshm).fragsInjected);
              assert.equal(printed.lookups, fragStats(ftshm).lookups);
              console.log(`  nfqlb stats:\n${text}`);
              const stderr = await stop();
              assert.equal(stderr, "", "nothing on stderr");
            },
          );
        }

        await t.step(
          "two queue threads, CPU fanout: first fragments from CPU 0, the rest from CPU 1",
          async () => {
            const two = ["--queue-balance", `${Q}:${Q + 1}`, "--queue-cpu-fanout"];
            await queueRule("-D", oneQueue);
            await queueRule("-A", two);
            try {
              const before = await queueSeq(net, lb).catch(() => new Map<number, number>());
              await start("lb", [`--tshm=${tshm}`, `--queue=${Q}:${Q + 1}`, `--tun=${TUN}`], 2);
              for (const v6 of [false, true]) {
                for (const order of ["in-order", "reverse"] as const) {
                  const c = {
                    v6,
                    size: 3000,
                    order,
                    sportBase,
                    extra: ["--cpu-first=0", "--cpu-rest=1"],
                  };
                  sportBase += PER_CASE;
                  await sendAndCheck(net, cl, tshm, c, `2 queues IPv${v6 ? 6 : 4} ${order}`);
                }
              }
              const seq = await queueSeq(net, lb);
              for (const q of [Q, Q + 1]) {
                assert.ok((seq.get(q) ?? 0) > (before.get(q) ?? 0), `queue ${q} carried packets`);
              }
              const s = fragStats(ftshm);
              assert.deepEqual(drops(s), {});
              assert.equal(s.bucketsUsed <= s.bucketsMax, true, "one table, not one per thread");
              await stop();
            } finally {
              await queueRule("-D", two);
              await queueRule("-A", oneQueue);
            }
          },
        );

        await t.step(
          "without --tun: fragments ahead of their first are lost, and counted",
          async () => {
            await start("lb", [`--tshm=${tshm}`, `--queue=${Q}`]);
            const got = await send(net, cl, {
              v6: false,
              size: 3000,
              order: "reverse",
              sportBase,
              count: 10,
              extra: ["--timeout=1"],
            });
            sportBase += 10;
            assert.deepEqual([...got.values()].filter((x) => x !== null), [], "none arrives whole");
            const s = fragStats(ftshm);
            assert.equal(s.fragsDroppedNoTun, 10, "the last fragment of each, ahead of the first");
            assert.equal(s.fragsDroppedLostDatagram, 20, "then the middle and the first fragment");
            await stop();
          },
        );

        await t.step(
          "PMTU: ICMP frag-needed / ICMPv6 packet-too-big reach the flow's target",
          async () => {
            await start("lb", [`--tshm=${tshm}`, `--queue=${Q}`, `--tun=${TUN}`]);
            await countPmtuErrors(net, targets.values());
            const names = new Map([...targets].map(([i, ns]) => [NET.tName(i), ns]));
            for (const v6 of [false, true]) {
              const base = sportBase;
              sportBase += 20;
              await checkPmtuErrors(net, cl, SVC, tshm, names, v6 ? CL6 : CL4, base, 20);
            }
            await stop();
          },
        );

        await t.step(
          "conntrack in the LB namespace: reassembled packets counted, warned once",
          async () => {
            await conntrackRule("-A");
            try {
              await start("lb", [`--tshm=${tshm}`, `--queue=${Q}`, `--tun=${TUN}`]);
              for (const v6 of [false, true]) {
                // The kernel reassembles, nfqlb sees whole datagrams; they still reach their target.
                const c = { v6, size: 3000, order: "reverse" as const, sportBase, count: 20 };
                sportBase += 20;
                await sendAndCheck(net, cl, tshm, c, `conntrack IPv${v6 ? 6 : 4}`);
              }
              const s = fragStats(ftshm);
              assert.ok(s.kernelReassembled >= 40, `kernelReassembled ${s.kernelReassembled}`);
              const stderr = await stop();
              const warnings = stderr.split("\n").filter((l) => /longer than --mtu=1500/.test(l));
              assert.equal(warnings.length, 1, stderr);
              assert.match(warnings[0], /conntrack/);
            } finally {
              await conntrackRule("-D");
            }
          },
        );

        await t.step(
          "a flood of orphan fragments: memory bounded, then a datagram still gets through",
          async () => {
            const d = await start("lb", [`--tshm=${tshm}`, `--queue=${Q}`, `--tun=${TUN}`]);
            const before = rssKb(d.pid);
            const seconds = Number(Deno.env.get("NFQLB_FLOOD_SECONDS") ?? "60");
            const floods = [false, true].map((v6) =>
              net.exec(cl, [
                ...FRAG_CLIENT,
                `--flood=${seconds}`,
                `--src=${v6 ? CL6 : CL4}`,
                `--dst=${v6 ? VIP6 : VIP4}`,
                "--size=0",
                "--sport-base=1",
              ])
            );
            // IPv4 and IPv6 at once.
            const f4 = await floods[0];
            const f6 = await floods[1];
            assert.equal(f4.code, 0, f4.stderr);
            assert.equal(f6.code, 0, f6.stderr);
            const sent = JSON.parse(f4.stdout).sent + JSON.parse(f6.stdout).sent;
            const after = rssKb(d.pid);
            const s = fragStats(ftshm);
            console.log(
              `  flood: ${sent} orphan fragments in ${seconds} s; RSS ${before} -> ${after} kB; ` +
                `stored ${s.fragsAllocated}, pool full ${s.fragsDroppedPoolFull}, ttl ${s.fragsDroppedTtl}, ` +
                `rejected ${s.rejected}`,
            );
            assert.ok(s.fragsAllocated > 0 && s.fragsDroppedTtl + s.fragsDroppedPoolFull > 0);
            assert.ok(after - before < 64 * 1024, `RSS grew by ${after - before} kB`);
            // ttl 200 ms: the orphans are gone; a normal fragmented datagram gets through.
            await new Promise((r) => setTimeout(r, 300));
            for (const v6 of [false, true]) {
              const c = { v6, size: 3000, order: "shuffle" as const, sportBase, count: 10 };
              sportBase += 10;
              await sendAndCheck(net, cl, tshm, c, `after the flood IPv${v6 ? 6 : 4}`);
            }
            await stop();
          },
        );
        for (const s of servers) await s.finish();
      });
    } finally {
      await (daemon as Daemon | null)?.kill();
      removeShmObjects(tshm, ftshm);
    }
  },
});
