/**
 * `GET /healthz` says whether a packet for a configured VIP would be forwarded (issue 18, item 5;
 * docs/COMPATIBILITY.md#differences D52), as root, in a private network namespace with loopback
 * only (the queues need no traffic to be bound): flowlb with no flow is 503 with the reason; after
 * `flow-set` with a table that has an active target, 200; with every target deactivated, 503
 * naming the flow; lb with a table without an active target is 503, 200 once one is activated,
 * and 503 naming the queue while its "send stuck since" word in `ftshm` is set.
 */
import assert from "node:assert/strict";
import { removeShm, runCli, tempShmName } from "../../testkit/cli.ts";
import { cli, Daemon, httpGet } from "../../testkit/e2e_service.ts";
import { isRoot, type TestNet, withTestNet } from "../../testkit/netns.ts";
import { LineProcess } from "../../testkit/line_process.ts";
import { openShm } from "../../ffi/shm.ts";
import { ENOMEM } from "../../ffi/constants.ts";
import { strerror } from "../../ffi/libc.ts";
import {
  C_SEND_STUCK_ERRNO,
  C_SEND_STUCK_SINCE,
  QueueCounters,
} from "../../lib/counters/queue_counters.ts";

const ROOT = isRoot();
if (!ROOT) console.warn("healthz_test: not running as root: test skipped");

const DENO = Deno.execPath();
const CLI = new URL("../../cli.ts", import.meta.url).pathname;
const METRICS = "127.0.0.1:9920";

/** GET /healthz from the metrics server inside `ns`: [status, body]. */
function healthz(net: TestNet, ns: string): Promise<[number, string]> {
  return httpGet(net, ns, METRICS, "/healthz");
}

Deno.test({
  name: "healthz: 503 with the reason while no packet would be forwarded, else 200 (root)",
  ignore: !ROOT,
  async fn(t) {
    const q = 3000 + (Deno.pid % 20000);
    const tshm = tempShmName("hz-t");
    const ftshm = tempShmName("hz-ft");
    const flowAddress = `unix:nfqlb-hz-${Deno.pid}`;
    /** The argv of `nfqlb <args>` with flowlb's control socket at `flowAddress`. */
    const nfqlb = (...args: string[]) => {
      return ["env", `NFQLB_FLOW_ADDRESS=${flowAddress}`, DENO, "run", "-A", CLI, ...args];
    };
    try {
      await cli("init", `--shm=${tshm}`, "--M=997", "--N=8");
      await withTestNet(async (net) => {
        const ns = await net.addNs("hz");
        const common = [`--queue=${q}`, `--ft_shm=${ftshm}`, `--metrics=${METRICS}`];

        await t.step("flowlb: no flow, then a flow with an active target, then none", async () => {
          await cli("activate", `--shm=${tshm}`, "101", "102");
          const flowlb = new LineProcess(
            net,
            ns,
            nfqlb("flowlb", ...common),
            "flowlb",
          );
          try {
            await flowlb.waitLine(/^queue_length=/);
            await flowlb.waitLine(/^Metrics; /);
            assert.deepEqual(await healthz(net, ns), [
              503,
              "no flows: no packet is load-balanced (nfqlb flow-set ...)\n",
            ]);
            const set = await net.exec(
              ns,
              nfqlb("flow-set", "--name=web", `--target=${tshm}`, "--protocols=tcp"),
            );
            assert.equal(set.stdout.trim(), "OK", set.stderr);
            assert.deepEqual(await healthz(net, ns), [200, "ok\n"]);
            await cli("deactivate", `--shm=${tshm}`, "101", "102");
            assert.deepEqual(await healthz(net, ns), [
              503,
              "no flow has a table with an active target: every packet gets no target\n" +
              `flow web: table ${tshm}: no active target\n`,
            ]);
            Deno.kill(flowlb.pid, "SIGTERM");
            assert.equal((await flowlb.finish()).code, 0);
          } finally {
            await killQuietly(flowlb);
          }
        });

        await t.step("lb: a table without an active target, then with one", async () => {
          const lb = new Daemon(net, ns, "lb", [`--tshm=${tshm}`, ...common]);
          try {
            await lb.ready();
            await lb.waitLine(/^Metrics; /);
            assert.deepEqual(await healthz(net, ns), [
              503,
              `table ${tshm}: no active target: every packet gets no target (nfqlb activate ...)\n`,
            ]);
            await cli("activate", `--shm=${tshm}`, "101");
            assert.deepEqual(await healthz(net, ns), [200, "ok\n"]);
            // The queue thread's "send stuck since" word (set while its verdicts cannot be sent):
            // written here as the thread would, then cleared.
            const ft = openShm(ftshm, true);
            try {
              const counts = new QueueCounters(ft.buffer, 0).counts;
              counts[C_SEND_STUCK_ERRNO] = ENOMEM;
              counts[C_SEND_STUCK_SINCE] = Date.now() - 1500;
              const [status, body] = await healthz(net, ns);
              assert.equal(status, 503, body);
              assert.match(
                body,
                new RegExp(`^queue ${q}: verdicts not sent for \\d+ ms: ${strerror(ENOMEM)}\n$`),
              );
              const ms = Number(/for (\d+) ms/.exec(body)![1]);
              assert.ok(ms >= 1500, `${ms} ms`);
              counts[C_SEND_STUCK_SINCE] = 0;
              assert.deepEqual(await healthz(net, ns), [200, "ok\n"]);
            } finally {
              ft.close();
            }
            assert.equal((await lb.stop()).code, 0);
          } finally {
            await lb.kill();
          }
        });
      });
    } finally {
      await runCli("delete", `--shm=${tshm}`);
      removeShm(ftshm);
    }
  },
});

/** SIGKILL `p` if it still runs, and wait for it. */
async function killQuietly(p: LineProcess): Promise<void> {
  try {
    Deno.kill(p.pid, "SIGKILL");
  } catch {
    // gone
  }
  await p.finish();
}
