/**
 * Counters and the metrics server end to end (`--metrics`, docs/COMPATIBILITY.md#differences D52),
 * as root, in private network namespaces (testkit/e2e_topology.ts): `nfqlb lb --metrics` in the LB
 * namespace, N UDP exchanges of known 5-tuples, then a real HTTP GET of `/metrics` (from inside
 * the namespace): the exposition parses (every sample after its HELP and TYPE), the per-fwmark
 * counters moved by exactly the number of packets `nfqlb fwmark` predicts for each target, the
 * queue counters by N, the kernel's queue figures are there; `nfqlb stats` prints the same
 * counters; `/healthz` is 200, then 503 naming the table once it is deleted and while it has no
 * active target. A second daemon on
 * the same address fails at start-up with a clear message.
 *
 * With `--fastpath`: `nfqlb_fastpath_up` is 1 (and `stats` shows `up=1`), and the fast-path
 * figures come from the writer thread, not from the status object's name in /dev/shm: an object
 * another user plants there (mode 0666, made-up values, then truncated) changes nothing (before,
 * the metrics thread mapped whatever had the name: made-up values, or SIGBUS once truncated).
 */
import assert from "node:assert/strict";
import { Addressing } from "../../testkit/e2e_topology.ts";
import {
  cli,
  Daemon,
  httpGet,
  predict,
  readyTopology,
  removeShmObjects,
  type Service,
  serviceOf,
} from "../../testkit/e2e_service.ts";
import { isRoot, type TestNet, withTestNet } from "../../testkit/netns.ts";
import {
  F_ADDS,
  F_UP,
  initStatus,
  STATUS_PREFIX,
  STATUS_SIZE,
  statusValues,
} from "../../lib/fastpath/status.ts";

const ROOT = isRoot();
if (!ROOT) console.warn("metrics_test: not running as root: metrics end-to-end test skipped");

const DENO = Deno.execPath();
const CLI = new URL("../../cli.ts", import.meta.url).pathname;
const UDP_EXCHANGE = new URL("../../testkit/fixtures/udp_exchange.py", import.meta.url).pathname;
const NET = new Addressing(210, 1, 1);
const { vip4: VIP4, vip6: VIP6, cl4: [CL4], cl6: [CL6] } = NET;
const PORT = 5001;
const SVC: Service = serviceOf(NET, PORT);
const Q = 10;
const METRICS = "127.0.0.1:9910";

/** GET `path` from the metrics server inside `ns`: [status, body]. */
function get(net: TestNet, ns: string, path: string): Promise<[number, string]> {
  return httpGet(net, ns, METRICS, path);
}

/** Parse the text exposition: sample name{labels} -> value; checks HELP/TYPE come first. */
function parseExposition(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const declared = new Set<string>();
  const typed = new Set<string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    let m = /^# HELP ([a-z_:][a-z0-9_:]*) .+$/.exec(line);
    if (m !== null) {
      declared.add(m[1]);
      continue;
    }
    m = /^# TYPE ([a-z_:][a-z0-9_:]*) (counter|gauge)$/.exec(line);
    if (m !== null) {
      assert.ok(declared.has(m[1]), `TYPE before HELP: ${line}`);
      typed.add(m[1]);
      continue;
    }
    m = /^([a-z_:][a-z0-9_:]*)(\{(?:[a-z_]+="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+]+)$/.exec(line);
    assert.ok(m !== null, `not a sample line: ${line}`);
    assert.ok(typed.has(m[1]), `sample before its TYPE: ${line}`);
    samples.set(m[1] + (m[2] ?? ""), Number(m[3]));
  }
  return samples;
}

Deno.test({
  name: "metrics: /metrics counts every packet per fwmark as predicted; /healthz (needs root)",
  ignore: !ROOT,
  async fn(t) {
    const token = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
    const tshm = `nfqlbmx-${Deno.pid}-${token}-t`;
    const ftshm = `nfqlbmx-${Deno.pid}-${token}-ft`;
    let daemon: Daemon | null = null;
    try {
      await withTestNet(async (net) => {
        const { cl, lb, servers } = await readyTopology(net, NET, SVC, Q, tshm);
        const args = [
          `--tshm=${tshm}`,
          `--queue=${Q}`,
          `--ft_shm=${ftshm}`,
          `--metrics=${METRICS}`,
        ];
        daemon = new Daemon(net, lb, "lb", args);
        await daemon.ready();
        await daemon.waitLine(new RegExp(`^Metrics; http://${METRICS}/metrics$`));

        const sports = Array.from({ length: 40 }, (_, i) => 41000 + i);
        const want = new Map<number, number>();
        for (const [src, ports] of [[CL4, sports.slice(0, 30)], [CL6, sports.slice(30)]] as const) {
          for (const p of ports) {
            const target = await predict(SVC, tshm, src, p);
            const fw = NET.tMark(Number(target!.slice(1)));
            want.set(fw, (want.get(fw) ?? 0) + 1);
          }
        }
        const before = parseExposition((await get(net, lb, "/metrics"))[1]);

        await t.step(
          "40 UDP exchanges: per-fwmark and per-queue counters move by exactly that",
          async () => {
            for (
              const [src, dst, ports] of [[CL4, VIP4, sports.slice(0, 30)], [
                CL6,
                VIP6,
                sports.slice(30),
              ]] as const
            ) {
              const out = await net.run(cl, [
                "/usr/bin/python3",
                UDP_EXCHANGE,
                src,
                dst,
                String(PORT),
                ...ports.map(String),
              ]);
              assert.doesNotMatch(out, /-timeout-/);
            }
            const [status, body] = await get(net, lb, "/metrics");
            assert.equal(status, 200);
            const m = parseExposition(body);
            const delta = (k: string) => (m.get(k) ?? 0) - (before.get(k) ?? 0);
            for (const [fw, n] of want) {
              assert.equal(delta(`nfqlb_target_packets_total{fwmark="${fw}"}`), n, `fwmark ${fw}`);
              assert.ok(delta(`nfqlb_target_bytes_total{fwmark="${fw}"}`) >= 33 * n);
            }
            assert.equal(delta(`nfqlb_queue_packets_received_total{queue="${Q}"}`), 40);
            assert.equal(delta(`nfqlb_queue_packets_accepted_total{queue="${Q}"}`), 40);
            assert.equal(delta(`nfqlb_queue_packets_dropped_total{queue="${Q}"}`), 0);
            assert.equal(delta(`nfqlb_kernel_queue_packets_total{queue="${Q}"}`), 40);
            assert.equal(m.get(`nfqlb_kernel_queue_dropped_total{queue="${Q}"}`), 0);
            assert.equal(m.get("nfqlb_tables"), 1);
            assert.ok(
              [...m.keys()].some((k) => /^nfqlb_build_info\{version="1\.2\.0",deno="/.test(k)),
            );
            assert.equal(m.get('nfqlb_fragments_dropped_total{reason="ttl"}'), 0);
            console.log(
              `  /metrics sample:\n${
                body.split("\n").filter((l) => /target_packets|queue_packets_received/.test(l))
                  .join(
                    "\n",
                  )
              }`,
            );

            // nfqlb stats reads the same counters (one more process, the same object).
            const stats = JSON.parse(await cli("stats", `--ft_shm=${ftshm}`));
            assert.equal(stats.queues[0].queue, Q);
            assert.equal(
              stats.queues[0].received,
              m.get(`nfqlb_queue_packets_received_total{queue="${Q}"}`),
            );
            for (const f of stats.fwmarks) {
              assert.equal(f.packets, m.get(`nfqlb_target_packets_total{fwmark="${f.fwmark}"}`));
            }
          },
        );

        await t.step(
          "/healthz: 200 while bound and mapped, 503 naming the table once deleted or without targets",
          async () => {
            assert.deepEqual(await get(net, lb, "/healthz"), [200, "ok\n"]);
            assert.equal((await get(net, lb, "/nope"))[0], 404);
            await cli("delete", `--shm=${tshm}`);
            const [status, body] = await get(net, lb, "/healthz");
            assert.equal(status, 503);
            // Why, and the fix (D52).
            assert.match(
              body,
              new RegExp(
                `^table ${tshm}: /dev/shm/${tshm}: No such file or directory; create it with: ` +
                  `nfqlb init --shm=${tshm} `,
              ),
            );
            // Back, but without an active target: still no packet would be forwarded.
            await cli("init", `--shm=${tshm}`, "--M=997", "--N=32");
            assert.deepEqual(await get(net, lb, "/healthz"), [
              503,
              `table ${tshm}: no active target: every packet gets no target (nfqlb activate ...)\n`,
            ]);
            await cli("activate", `--shm=${tshm}`, ...NET.targets.map((i) => String(NET.tMark(i))));
            assert.equal((await get(net, lb, "/healthz"))[0], 200);
          },
        );

        await t.step(
          "a second daemon on the same metrics address fails at start-up, exit 1",
          async () => {
            const r = await net.exec(lb, [
              DENO,
              "run",
              "-A",
              CLI,
              "lb",
              `--tshm=${tshm}`,
              `--queue=${Q + 1}`,
              `--ft_shm=${ftshm}-2`,
              `--metrics=${METRICS}`,
            ]);
            assert.equal(r.code, 1);
            assert.match(r.stderr, /^Metrics server bind: .*(in use|AddrInUse)/m);
            try {
              Deno.removeSync(`/dev/shm/${ftshm}-2`);
            } catch {
              // not made
            }
            const bad = await net.exec(lb, [DENO, "run", "-A", CLI, "lb", "--metrics=9100"]);
            assert.equal(bad.code, 1);
            assert.equal(
              bad.stderr,
              "Invalid --metrics=9100; expected ADDR:PORT, e.g. 127.0.0.1:9100 or [::1]:9100\n",
            );
          },
        );

        const r = await daemon.stop();
        daemon = null;
        assert.equal(r.code, 0, r.stderr);
        for (const s of servers) await s.finish();
      });
    } finally {
      await (daemon as Daemon | null)?.kill();
      removeShmObjects(tshm, ftshm);
    }
  },
});

Deno.test({
  name:
    "metrics --fastpath: nfqlb_fastpath_up; the values are the writer's, not a planted object's (needs root)",
  ignore: !ROOT,
  async fn() {
    const token = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
    const tshm = `nfqlbmf-${Deno.pid}-${token}-t`;
    const ftshm = `nfqlbmf-${Deno.pid}-${token}-ft`;
    const table = `nfqlbmf${token}`;
    let status = "";
    let daemon: Daemon | null = null;
    try {
      await cli("init", `--shm=${tshm}`, "--M=997", "--N=4");
      await withTestNet(async (net) => {
        const lb = await net.addNs("mf");
        const inode = /\[(\d+)\]/.exec(await net.run(lb, ["readlink", "/proc/self/ns/net"]))![1];
        status = `${STATUS_PREFIX}${inode}.${table}`;
        const path = `/dev/shm/${status}`;
        daemon = new Daemon(net, lb, "lb", [
          `--tshm=${tshm}`,
          `--ft_shm=${ftshm}`,
          `--queue=${Q}`,
          `--metrics=${METRICS}`,
          "--fastpath",
          `--fastpath-table=${table}`,
        ]);
        await daemon.ready();
        await daemon.waitLine(new RegExp(`^Metrics; http://${METRICS}/metrics$`));
        const scrape = async () => {
          const [code, body] = await get(net, lb, "/metrics");
          assert.equal(code, 200, body);
          return parseExposition(body);
        };
        const own = await scrape();
        assert.equal(own.get("nfqlb_fastpath_up"), 1);
        assert.equal(own.get("nfqlb_fastpath_adds_total"), 0);
        assert.match(
          await cli("stats", `--ft_shm=${ftshm}`),
          new RegExp(`\nFastpath ${table}: up=1, `),
        );

        // Another user takes the name over: a regular file anyone may write, made-up values.
        Deno.removeSync(path);
        const mem = new ArrayBuffer(STATUS_SIZE);
        initStatus(mem, daemon.pid, ftshm);
        statusValues(mem)[F_ADDS] = 12345;
        statusValues(mem)[F_UP] = 0;
        Deno.writeFileSync(path, new Uint8Array(mem), { mode: 0o666 });
        Deno.chmodSync(path, 0o666);
        Deno.chownSync(path, 65534, 65534);
        const planted = await scrape();
        assert.deepEqual(
          [planted.get("nfqlb_fastpath_adds_total"), planted.get("nfqlb_fastpath_up")],
          [0, 1],
          "the writer's values",
        );
        // Truncated: nothing maps it, the daemon keeps serving.
        Deno.truncateSync(path, 0);
        assert.equal((await scrape()).get("nfqlb_fastpath_up"), 1);

        const r = await daemon.stop();
        daemon = null;
        assert.equal(r.code, 0, r.stderr);
        assert.equal(Deno.statSync(path).size, 0, "another's object is left at stop");
      });
    } finally {
      await (daemon as Daemon | null)?.kill();
      removeShmObjects(tshm, ftshm, ...(status === "" ? [] : [status]));
    }
  },
});
