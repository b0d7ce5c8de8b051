/**
 * The daemons as a container frontend runs them (issue "Operations", item non-root): an
 * unprivileged uid (65534) holding only CAP_NET_ADMIN (`setpriv --ambient-caps=+net_admin`), a
 * `/dev/shm` of its own (a private tmpfs in a mount namespace, as in a container), in a network
 * namespace the test creates (testkit/e2e_topology.ts). `lb` load-balances UDP exchanges to the
 * targets an identical table predicts; `flowlb` takes `flow-set` from a CLI of its own uid and
 * routes by the flow, and a CLI of another unprivileged uid refuses to talk to it.
 */
import assert from "node:assert/strict";
import { Addressing } from "../../testkit/e2e_topology.ts";
import {
  predict,
  readyTopology,
  removeShmObjects,
  type Service,
  serviceOf,
} from "../../testkit/e2e_service.ts";
import { httpGet } from "../../testkit/e2e_service.ts";
import { LineProcess } from "../../testkit/line_process.ts";
import { isRoot, type TestNet, withTestNet } from "../../testkit/netns.ts";

const ROOT = isRoot();
if (!ROOT) console.warn("nonroot_test: not running as root: non-root end-to-end test skipped");

const DENO = Deno.execPath();
const CLI = new URL("../../cli.ts", import.meta.url).pathname;
const UDP_EXCHANGE = new URL("../../testkit/fixtures/udp_exchange.py", import.meta.url).pathname;
const NET = new Addressing(211, 1, 1);
const PORT = 5001;
const SVC: Service = serviceOf(NET, PORT);
const Q = 12;
const UID = 65534;
/** The metrics server, in the test's own network namespace. */
const METRICS = "127.0.0.1:9931";
const MARKS = NET.targets.map((i) => String(NET.tMark(i))).join(" ");

/** `cmd` as uid `uid` with only CAP_NET_ADMIN (inheritable and ambient), Deno's cache in `home`. */
function unprivileged(uid: number, home: string, cmd: string): string {
  return `setpriv --reuid=${uid} --regid=${uid} --clear-groups --inh-caps=+net_admin ` +
    `--ambient-caps=+net_admin env HOME=${home} DENO_DIR=${home} NFQLB_FLOW_ADDRESS=unix:nfqlb ` +
    `sh -c '${cmd}'`;
}

/** A shell in its own mount namespace with a private /dev/shm, running `script`. */
function withOwnShm(script: string): string[] {
  return ["unshare", "-m", "sh", "-c", `mount -t tmpfs -o mode=1777 tmpfs /dev/shm && ${script}`];
}

/** The uid a process runs as, from /proc. */
function uidOf(pid: number): number {
  const m = /^Uid:\s+(\d+)/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  return Number(m?.[1]);
}

async function exchange(net: TestNet, ns: string, ports: number[]): Promise<Map<number, string>> {
  const out = await net.run(ns, [
    "/usr/bin/python3",
    UDP_EXCHANGE,
    NET.cl4[0],
    NET.vip4,
    String(PORT),
    ...ports.map(String),
  ]);
  return new Map(
    out.trim().split("\n").map((l) => {
      const [p, t] = l.split(" ");
      return [Number(p), t];
    }),
  );
}

Deno.test({
  name: "non-root: lb and flowlb as uid 65534 with CAP_NET_ADMIN only, own /dev/shm (needs root)",
  ignore: !ROOT,
  async fn(t) {
    const token = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
    // The host-side twin of the daemon's table (same M, N, targets: the same Maglev table).
    const twin = `nfqlbnr-${Deno.pid}-${token}-t`;
    const home = Deno.makeTempDirSync({ prefix: "nfqlb-nonroot-" });
    Deno.chownSync(home, UID, UID);
    let daemon: LineProcess | null = null;
    try {
      await withTestNet(async (net) => {
        const { cl, lb, servers } = await readyTopology(net, NET, SVC, Q, twin);
        const nfqlb = (args: string) => `${DENO} run -A ${CLI} ${args}`;
        const start = async (daemonArgs: string) => {
          const script = unprivileged(
            UID,
            home,
            `${nfqlb("init --shm=t --M=997 --N=32")} >/dev/null && ` +
              `${nfqlb(`activate --shm=t ${MARKS}`)} && exec ${nfqlb(daemonArgs)}`,
          );
          // Table r is root's (mode 0600): the daemon is denied it.
          const rootTable = `${nfqlb("init --shm=r --M=997 --N=32")} >/dev/null && ` +
            "chmod 600 /dev/shm/r";
          const d = new LineProcess(
            net,
            lb,
            withOwnShm(`${rootTable} && exec ${script}`),
            "unprivileged daemon",
          );
          daemon = d;
          await d.waitLine(/^queue_length=/);
          assert.equal(uidOf(d.pid), UID, "the daemon runs as uid 65534");
          const caps = /^CapEff:\s+([0-9a-f]+)/m.exec(
            Deno.readTextFileSync(`/proc/${d.pid}/status`),
          );
          assert.equal(
            BigInt(`0x${caps![1]}`),
            1n << 12n,
            "only CAP_NET_ADMIN (bit 12) is effective",
          );
          return d;
        };
        const stop = async () => {
          const d = daemon!;
          daemon = null;
          Deno.kill(d.pid, "SIGTERM");
          const r = await d.finish();
          assert.equal(r.code, 0, r.stderr);
          return r.stderr;
        };

        await t.step("lb: UDP exchanges land where the table predicts", async () => {
          await start(`lb --tshm=t --queue=${Q}`);
          const ports = Array.from({ length: 20 }, (_, i) => 42000 + i);
          const got = await exchange(net, cl, ports);
          for (const p of ports) {
            assert.equal(got.get(p), await predict(SVC, twin, NET.cl4[0], p), `port ${p}`);
          }
          await stop();
        });

        await t.step(
          "flowlb: flow-set by its own uid works; another uid's CLI refuses the server",
          async () => {
            const d = await start(`flowlb --queue=${Q} --metrics=${METRICS}`);
            await d.waitLine(/^Metrics; /);
            // /proc/net/netfilter/nfnetlink_queue is root's (0440): the queue threads' own word
            // says the queue is bound, so the only reason left is the missing flow.
            assert.deepEqual(await httpGet(net, lb, METRICS, "/healthz"), [
              503,
              "no flows: no packet is load-balanced (nfqlb flow-set ...)\n",
            ]);
            const flowSet = (uid: number, target = "t") =>
              net.exec(lb, [
                "sh",
                "-c",
                unprivileged(
                  uid,
                  home,
                  nfqlb(`flow-set --name=u --target=${target} --protocols=udp --dports=${PORT}`),
                ),
              ]);
            // A table the daemon may not map: the note says it must be the daemon's.
            const denied = await flowSet(UID, "r");
            assert.equal(denied.stdout, "FAIL: Couldn't create load-balancer\n", denied.stderr);
            assert.equal(
              denied.stderr,
              "flow-set: table [r]: /dev/shm/r: Permission denied; owned by uid 0 (root), mode 0600: the " +
                `table must belong to the daemon's uid ${UID}: create it with nfqlb init run as ` +
                `uid ${UID} (setpriv --reuid=${UID} nfqlb init --shm=r ...), or chown ${UID} ` +
                "/dev/shm/r\n",
            );
            const ok = await flowSet(UID);
            assert.equal(ok.stdout, "OK\n", ok.stderr);
            assert.deepEqual(await httpGet(net, lb, METRICS, "/healthz"), [200, "ok\n"]);
            const [status, metrics] = await httpGet(net, lb, METRICS, "/metrics");
            assert.equal(status, 200);
            assert.match(metrics, /^nfqlb_kernel_queue_figures_available 0$/m);
            assert.doesNotMatch(metrics, /^nfqlb_kernel_queue_packets_total/m);
            const other = await flowSet(65533);
            assert.notEqual(other.code, 0);
            const [first, fix] = other.stderr.split("\n");
            assert.match(first, /^Refusing to talk to the control server: owned by uid 65534 /);
            // 65534 is "nobody" in this host's /etc/passwd (or has no name at all).
            assert.match(
              fix,
              /^ {2}if it is the flowlb you meant \(it runs as uid 65534( \(nobody\))?\), run the command as that user: sudo -u (nobody|'#65534') nfqlb \.\.\., or setpriv --reuid=65534 nfqlb \.\.\.; if not, another program holds the address$/,
            );
            const ports = Array.from({ length: 10 }, (_, i) => 43000 + i);
            const got = await exchange(net, cl, ports);
            for (const p of ports) {
              assert.equal(got.get(p), await predict(SVC, twin, NET.cl4[0], p), `port ${p}`);
            }
            const log = await stop();
            // The refused client closed without a byte: not 1.2.0's truncated-request warning.
            assert.doesNotMatch(log, /unexpected eof/);
            const notes = log.split("\n").filter((l) => l.includes("nfnetlink_queue"));
            assert.equal(
              notes.length,
              1,
              `one line about the kernel's queue list, not per scrape:\n${log}`,
            );
            assert.match(notes[0], /^warning: metrics: cannot read .*Permission denied; /);
          },
        );
        for (const s of servers) {
          await s.finish();
        }
      });
    } finally {
      const d = daemon as LineProcess | null;
      if (d !== null) {
        try {
          Deno.kill(d.pid, "SIGKILL");
        } catch {
          // gone
        }
        await d.finish();
      }
      removeShmObjects(twin);
      Deno.removeSync(home, { recursive: true });
    }
  },
});
