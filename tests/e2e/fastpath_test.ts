/**
 * The kernel fast path (`--fastpath`, docs/FASTPATH.md), as root, in private network
 * namespaces (testkit/e2e_topology.ts, block 215): the queue rule skips marked packets
 * (`-m mark --mark 0`), the daemon's nftables table marks the 5-tuples it has decided.
 *
 * - 1000 TCP and UDP tuples over IPv4 and IPv6 land on the target `nfqlb fwmark` predicts;
 *   the repeats are marked by the kernel (its hit counters grow, the queue sees nothing).
 * - `deactivate` moves exactly the tuples `fwmark` predicts; a table write that does not wait
 *   (as 1.2.0's CLI writes) is seen and the maps flushed within the stated bound.
 * - Fragments of offloaded tuples, and ICMP PMTU errors for them, still take the queue path.
 * - A full map degrades to the queue path with nothing lost.
 * - The table is gone when the daemon stops, and when it is killed.
 */
import assert from "node:assert/strict";
import { Addressing, type ClientResult, tupleKey } from "../../testkit/e2e_topology.ts";
import {
  checkPmtuErrors,
  cli,
  countPmtuErrors,
  Daemon,
  FLOW_ENV,
  readyTopology,
  removeShmObjects,
  sendAndCheck,
  sendFragments,
  serviceOf,
} from "../../testkit/e2e_service.ts";
import { isRoot, type TestNet, withTestNet } from "../../testkit/netns.ts";
import { openShm } from "../../ffi/shm.ts";
import { MaglevTable } from "../../lib/maglev/table.ts";
import { deactivate } from "../../lib/maglev/maglev.ts";
import {
  F_ADD_FAILURES,
  F_FLUSHES,
  F_MAP_FULL,
  statusTable,
  statusValues,
} from "../../lib/fastpath/status.ts";

const ROOT = isRoot();
if (!ROOT) console.warn("fastpath_test: not running as root: fast-path end-to-end test skipped");

const NET = new Addressing(215, 4, 4);
const PORT = 80;
const SVC = serviceOf(NET, PORT);
const Q = 9;
const DENO = Deno.execPath();
const CLI = new URL("../../cli.ts", import.meta.url).pathname;
const CLIENT = [
  DENO,
  "run",
  "--allow-all",
  new URL("../../testkit/fixtures/e2e_client.ts", import.meta.url).pathname,
];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const UDP = [...NET.cl4, ...NET.cl6].map((a) => `udp/${a}/21000-21049`);
const TCP = [...NET.cl4, ...NET.cl6].map((a) => `tcp/${a}/20000-20074`);

/** Run the TCP/UDP client with `sets`; every exchange must be answered. */
async function exchange(net: TestNet, ns: string, sets: string[]): Promise<ClientResult[]> {
  const r = await net.exec(ns, [
    ...CLIENT,
    `--dst4=${NET.vip4}`,
    `--dst6=${NET.vip6}`,
    `--port=${PORT}`,
    `--sets=${sets.join(",")}`,
    "--concurrency=100",
  ]);
  assert.equal(r.code, 0, `client failed: ${r.stdout}\n${r.stderr}`);
  const { results } = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as {
    results: ClientResult[];
  };
  const lost = results.filter((x) => x.target === null);
  assert.deepEqual(lost.slice(0, 3), [], `${lost.length} exchanges unanswered`);
  return results;
}

/** The target `nfqlb fwmark` predicts for a TCP or UDP tuple to the VIP. */
async function predictTuple(shm: string, r: { proto: string; src: string; sport: number }) {
  const v6 = r.src.includes(":");
  const out = await cli(
    "fwmark",
    `--shm=${shm}`,
    `--proto=${r.proto}`,
    v6 ? `--src=[${r.src}]:${r.sport}` : `--src=${r.src}:${r.sport}`,
    v6 ? `--dst=[${NET.vip6}]:${PORT}` : `--dst=${NET.vip4}:${PORT}`,
  );
  return SVC.targets.get(JSON.parse(out).fwmark as number) ?? null;
}

/** The tuples of `results` not on the target `fwmark` predicts. */
async function misplaced(shm: string, results: ClientResult[]): Promise<string[]> {
  const wrong: string[] = [];
  for (const r of results) {
    const want = await predictTuple(shm, r);
    if (r.target !== want) wrong.push(`${tupleKey(r)}: ${r.target} (want ${want})`);
  }
  return wrong;
}

/** Packets of the nft counter objects hits4 + hits6 of table `table` (read with nft). */
async function hits(net: TestNet, ns: string, table: string): Promise<number> {
  const out = await net.run(ns, ["nft", "-j", "list", "counters", "table", "inet", table]);
  let n = 0;
  for (const o of JSON.parse(out).nftables) if (o.counter !== undefined) n += o.counter.packets;
  return n;
}

/** Elements in the four maps of `table` (nft). */
async function elements(net: TestNet, ns: string, table: string): Promise<number> {
  let n = 0;
  for (const map of ["fp4a", "fp4b", "fp6a", "fp6b"]) {
    const out = await net.run(ns, ["nft", "-j", "list", "map", "inet", table, map]);
    for (const o of JSON.parse(out).nftables) n += o.map?.elem?.length ?? 0;
  }
  return n;
}

/** Elements in the two maps the rules use now (the side their lookups name). */
async function inUse(net: TestNet, ns: string, table: string): Promise<number> {
  const chain = await net.run(ns, ["nft", "list", "chain", "inet", table, "prerouting"]);
  const maps = [...chain.matchAll(/map @(fp[46][ab]) /g)].map((m) => m[1]);
  assert.equal(maps.length, 2, chain);
  assert.equal(maps[0].at(-1), maps[1].at(-1), "both rules on one side");
  let n = 0;
  for (const map of maps) {
    const o = await net.run(ns, ["nft", "-j", "list", "map", "inet", table, map]);
    for (const x of JSON.parse(o).nftables) n += x.map?.elem?.length ?? 0;
  }
  return n;
}

/** Wait until the maps not in use are empty too (the writer empties them step by step). */
async function allEmpty(net: TestNet, ns: string, table: string): Promise<number> {
  let n = await elements(net, ns, table);
  for (let i = 0; i < 40 && n > 0; i++) {
    await sleep(50);
    n = await elements(net, ns, table);
  }
  return n;
}

/**
 * Wait until the writer has added at least `n` elements (it runs on its own thread and may lag a
 * burst on a busy machine); returns the count reached, so the caller's assert says what was seen.
 */
async function untilElements(
  net: TestNet,
  ns: string,
  table: string,
  n: number,
): Promise<number> {
  let have = await elements(net, ns, table);
  for (const deadline = Date.now() + 10_000; have < n && Date.now() < deadline;) {
    await sleep(50);
    have = await elements(net, ns, table);
  }
  return have;
}

/** Packets queue `q` has seen (its id sequence in /proc/net/netfilter/nfnetlink_queue). */
async function queued(net: TestNet, ns: string): Promise<number> {
  const out = await net.run(ns, ["cat", "/proc/net/netfilter/nfnetlink_queue"]);
  for (const l of out.split("\n")) {
    const f = l.trim().split(/\s+/).map(Number);
    if (f[0] === Q) return f[7];
  }
  return 0;
}

async function tableExists(net: TestNet, ns: string, table: string): Promise<boolean> {
  return (await net.exec(ns, ["nft", "list", "table", "inet", table])).code === 0;
}

Deno.test({
  name: "lb --fastpath end to end: kernel-marked flows, same decisions (needs root)",
  ignore: !ROOT,
  async fn(t) {
    const token = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
    const tshm = `nfqlbfp-${Deno.pid}-${token}-t`;
    const ftshm = `nfqlbfp-${Deno.pid}-${token}-ft`;
    const table = `nfqlbfp${token}`;
    /** The daemon's status object (`nfqlb-fastpath.<netns>.<table>`), if there is one. */
    const status = () =>
      [...Deno.readDirSync("/dev/shm")].map((e) => e.name).find((n) => statusTable(n) === table);
    try {
      await withTestNet(async (net) => {
        const { cl, lb, targets, servers } = await readyTopology(net, NET, SVC, Q, tshm, {
          unmarkedOnly: true,
        });
        const common = [
          `--tshm=${tshm}`,
          `--ft_shm=${ftshm}`,
          `--queue=${Q}`,
          "--fastpath",
          `--fastpath-table=${table}`,
          "--fastpath-timeout=60000",
          "--fastpath-min-packets=1",
        ];
        let daemon: Daemon | undefined = new Daemon(net, lb, "lb", common);
        const stop = async () => {
          const d = daemon!;
          daemon = undefined;
          const r = await d.stop();
          assert.equal(r.code, 0, r.stderr);
          assert.equal(r.stderr, "", "nothing on stderr");
        };
        try {
          await daemon.ready();
          // nft reads the table back from the kernel: the maps and rules as designed.
          const listing = await net.run(lb, ["nft", "list", "table", "inet", table]);
          for (
            const want of [
              "flags owner",
              "type ipv4_addr . ipv4_addr . inet_proto . inet_service . inet_service : mark",
              "type ipv6_addr . ipv6_addr . inet_proto . inet_service . inet_service : mark",
              "type filter hook prerouting priority mangle - 10; policy accept;",
              'ip frag-off & 16383 == 0 meta mark set ip saddr . ip daddr . ip protocol . th sport . th dport map @fp4a counter name "hits4"',
              'meta mark set ip6 saddr . ip6 daddr . ip6 nexthdr . th sport . th dport map @fp6a counter name "hits6"',
            ]
          ) {
            assert.ok(listing.includes(want), `nft list table shows: ${want}\n${listing}`);
          }

          await t.step(
            "1000 TCP/UDP tuples over IPv4 and IPv6 land as predicted; repeats skip the queue",
            async () => {
              const first = await exchange(net, cl, [...TCP, ...UDP]);
              assert.equal(first.length, 1000);
              assert.deepEqual((await misplaced(tshm, first)).slice(0, 5), [], "first round");
              assert.ok(await untilElements(net, lb, table, 1000) >= 1000, "1000 tuples cached");
              const h0 = await hits(net, lb, table);
              assert.ok(h0 > 0, "TCP packets after the first were marked by the kernel");
              const q0 = await queued(net, lb);
              const again = await exchange(net, cl, UDP);
              assert.deepEqual((await misplaced(tshm, again)).slice(0, 5), [], "repeat");
              const h1 = await hits(net, lb, table);
              const q1 = await queued(net, lb);
              console.log(
                `  repeat of ${again.length} UDP tuples: ${h1 - h0} kernel hits, ${q1 - q0} queued`,
              );
              assert.ok(
                h1 - h0 >= again.length,
                "every repeated datagram was marked by the kernel",
              );
              assert.equal(q1 - q0, 0, "none of them reached the queue");
              // The writer reads the kernel's counters once a second: wait for a reading that
              // includes the repeats (bounded; a busy machine may delay the writer).
              let stats = "", line: string | undefined, m: RegExpExecArray | null = null;
              for (let i = 0; i < 100; i++) {
                stats = await cli("stats", `--ft_shm=${ftshm}`);
                line = stats.split("\n").find((l) => l.startsWith(`Fastpath ${table}: `));
                m = /elements=(\d+), hits4=(\d+), hits6=(\d+)/.exec(line ?? "");
                if (m !== null && Number(m[2]) + Number(m[3]) === h1) break;
                await sleep(100);
              }
              assert.ok(m !== null, `stats shows the fast path:\n${stats}`);
              assert.ok(Number(m[1]) >= 1000 && Number(m[2]) + Number(m[3]) === h1, line);
            },
          );

          await t.step(
            "deactivate moves exactly the tuples fwmark predicts; a write that does not wait is seen and switched",
            async () => {
              const before = new Map(
                (await exchange(net, cl, UDP)).map((r) => [tupleKey(r), r.target]),
              );
              await cli("deactivate", `--shm=${tshm}`, "101");
              const after = await exchange(net, cl, UDP);
              assert.deepEqual((await misplaced(tshm, after)).slice(0, 5), [], "after deactivate");
              const moved = after.filter((r) => before.get(tupleKey(r)) !== r.target);
              assert.ok(moved.length > 0, "tuples moved");
              assert.equal(after.filter((r) => r.target === "t1").length, 0, "none left on t1");
              await cli("activate", `--shm=${tshm}`, "101");
              // A write by another program: straight into the shared memory, nothing waits.
              const st = openShm(status()!, false);
              const flushes = statusValues(st.buffer)[F_FLUSHES];
              const m = openShm(tshm, true);
              const t0 = performance.now();
              deactivate(MaglevTable.view(m.buffer), [101]);
              // How soon is bench/fastpath_staleness.ts's business (a few ms on a quiet machine);
              // the test asserts that a write nobody announces is seen and switched at all.
              while (
                statusValues(st.buffer)[F_FLUSHES] === flushes && performance.now() - t0 < 10_000
              ) {
                await sleep(1);
              }
              const ms = performance.now() - t0;
              const switched = statusValues(st.buffer)[F_FLUSHES] !== flushes;
              m.close();
              console.log(`  a table write was flushed after ${ms.toFixed(1)} ms`);
              st.close();
              assert.ok(switched, `the write was seen and the side switched (${ms} ms)`);
              assert.equal(await inUse(net, lb, table), 0, "the maps in use are empty");
              assert.equal(await allEmpty(net, lb, table), 0, "the others are emptied after");
              const moved2 = await exchange(net, cl, UDP);
              assert.deepEqual(
                (await misplaced(tshm, moved2)).slice(0, 5),
                [],
                "after the raw write",
              );
              await cli("activate", `--shm=${tshm}`, "102");
            },
          );

          await t.step(
            "fragments of offloaded tuples and ICMP PMTU errors still take the queue path",
            async () => {
              // Whole datagrams first (offloaded), then the same tuples fragmented. Without --tun a
              // fragment the queue has not seen the first fragment of is dropped: were a first
              // fragment marked by the kernel, its datagram would be lost.
              for (const src of [NET.cl4[0]]) {
                await sendAndCheck(net, cl, SVC, tshm, {
                  src,
                  size: 100,
                  order: "in-order",
                  sportBase: 30000,
                  count: 20,
                }, "IPv4 whole");
                await sendAndCheck(net, cl, SVC, tshm, {
                  src,
                  size: 3000,
                  order: "in-order",
                  sportBase: 30000,
                  count: 20,
                }, "IPv4 fragments");
              }
              await exchange(net, cl, [`udp/${NET.cl6[0]}/31000-31019`]);
              await sendAndCheck(net, cl, SVC, tshm, {
                src: NET.cl6[0],
                size: 3000,
                order: "in-order",
                sportBase: 31000,
                count: 20,
              }, "IPv6 fragments");
              await countPmtuErrors(net, targets.values());
              const names = new Map([...targets].map(([i, ns]) => [NET.tName(i), ns]));
              await checkPmtuErrors(net, cl, SVC, tshm, names, NET.cl4[0], 30000, 20);
            },
          );

          await t.step(
            "stop removes the table; so does a crash; a stale one is replaced",
            async () => {
              await stop();
              assert.equal(await tableExists(net, lb, table), false, "table gone after SIGTERM");
              assert.equal(
                status(),
                undefined,
              );
              // A table of that name left by anything else (not owned by a live process).
              await net.run(lb, ["nft", "add", "table", "inet", table]);
              await net.run(lb, ["nft", "add", "chain", "inet", table, "junk"]);
              await daemon?.kill(); // what a failed step left behind
              daemon = new Daemon(net, lb, "lb", [...common, "--sctp_encap=80"]);
              await daemon.ready();
              const listing = await net.run(lb, ["nft", "list", "table", "inet", table]);
              assert.ok(listing.includes("flags owner") && !listing.includes("junk"), listing);

              // SCTP over UDP (--sctp_encap=80: every datagram to the service): decided by the
              // SCTP ports after the UDP header (frag_client's payload starts "nfql": ports
              // 0x6e66 -> 0x716c), never cached.
              const fw = JSON.parse(
                await cli(
                  "fwmark",
                  `--shm=${tshm}`,
                  "--proto=sctp",
                  `--src=${NET.cl4[1]}:${0x6e66}`,
                  `--dst=${NET.vip4}:${0x716c}`,
                ),
              ).fwmark as number;
              const want = SVC.targets.get(fw);
              const h0 = await hits(net, lb, table);
              for (let round = 0; round < 2; round++) {
                const got = await sendFragments(net, cl, SVC, {
                  src: NET.cl4[1],
                  size: 100,
                  order: "in-order",
                  sportBase: 32000,
                  count: 20,
                });
                assert.deepEqual(
                  [...new Set(got.values())],
                  [want],
                  `round ${round}: all at ${want}`,
                );
              }
              assert.equal(await hits(net, lb, table), h0, "no kernel hits");
              assert.equal(await elements(net, lb, table), 0, "nothing cached");

              await daemon.kill();
              daemon = undefined;
              assert.equal(await tableExists(net, lb, table), false, "table gone after SIGKILL");
            },
          );

          await t.step(
            "flowlb: flow-set answers once the maps are flushed; tuples follow the new table",
            async () => {
              const tshm2 = `${tshm}2`;
              await cli("init", `--shm=${tshm2}`, "--M=997", "--N=32");
              await cli("activate", `--shm=${tshm2}`, "103", "104");
              await daemon?.kill(); // what a failed step left behind
              daemon = new Daemon(net, lb, "flowlb", [
                ...common.filter((a) => !a.startsWith("--tshm")),
              ]);
              await daemon.ready();
              const nfqlb = async (...args: string[]) => {
                const r = await net.exec(lb, [...FLOW_ENV, DENO, "run", "-A", CLI, ...args]);
                assert.equal(r.code, 0, `nfqlb ${args.join(" ")}: ${r.stdout}${r.stderr}`);
                return r.stdout;
              };
              try {
                assert.equal(
                  await nfqlb("flow-set", "--name=f", `--target=${tshm}`, "--protocols=udp"),
                  "OK\n",
                );
                const first = await exchange(net, cl, UDP);
                assert.ok(
                  await untilElements(net, lb, table, first.length) >= first.length,
                  "the flow's tuples cached",
                );
                const h0 = await hits(net, lb, table);
                assert.deepEqual(
                  (await misplaced(tshm, await exchange(net, cl, UDP))).slice(0, 5),
                  [],
                );
                assert.ok(await hits(net, lb, table) - h0 >= 400, "repeats marked by the kernel");
                assert.equal(
                  await nfqlb("flow-set", "--name=f", `--target=${tshm2}`, "--protocols=udp"),
                  "OK\n",
                );
                assert.equal(await inUse(net, lb, table), 0, "flushed before flow-set answered");
                assert.deepEqual(
                  (await misplaced(tshm2, await exchange(net, cl, UDP))).slice(0, 5),
                  [],
                  "new table",
                );
                await stop();
              } finally {
                removeShmObjects(tshm2);
              }
            },
          );

          await t.step("a full map degrades to the queue path with nothing lost", async () => {
            await daemon?.kill(); // what a failed step left behind
            daemon = new Daemon(net, lb, "lb", [...common, "--fastpath-size=8"]);
            await daemon.ready();
            for (let round = 0; round < 2; round++) {
              const r = await exchange(net, cl, UDP);
              assert.deepEqual((await misplaced(tshm, r)).slice(0, 5), [], `round ${round}`);
            }
            const st = openShm(status()!, false);
            const v = statusValues(st.buffer);
            console.log(`  map of 8: add failures ${v[F_ADD_FAILURES]}, map full ${v[F_MAP_FULL]}`);
            assert.ok(v[F_MAP_FULL] > 0 && v[F_ADD_FAILURES] > 0);
            st.close();
            assert.ok(await elements(net, lb, table) <= 32, "two sides of two maps of 8");
            await stop();
          });
        } finally {
          await daemon?.kill();
          for (const s of servers) await s.finish();
        }
      });
    } finally {
      removeShmObjects(tshm, ftshm, ...[status()].filter((n) => n !== undefined));
    }
  },
});
