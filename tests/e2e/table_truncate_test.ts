/**
 * A target table truncated under a running `nfqlb lb` or `nfqlb flowlb` (issue 12, item 6; as
 * root, in private network namespaces `cl` -> veth -> `lb`): before, UDP packets queued in mangle
 * PREROUTING are accepted with the target's fwmark; after another process truncates
 * `/dev/shm/<table>` to 0 bytes, the daemon is still alive (no SIGBUS), the next packets get the
 * "no target" verdict (`--notargets_fwmark` default −1: dropped, they never reach mangle INPUT),
 * and stderr names the table; a table created again under the same name is used again. Packets
 * are counted by iptables rules in mangle INPUT.
 */
import assert from "node:assert/strict";
import { removeShm, tempShmName } from "../../testkit/cli.ts";
import { cli, Daemon, FLOW_ENV, markedUdpNet } from "../../testkit/e2e_service.ts";
import { isRoot, type TestNet, withTestNet } from "../../testkit/netns.ts";

const ROOT = isRoot();
const DENO = Deno.execPath();
const CLI = new URL("../../cli.ts", import.meta.url).pathname;
const LB4 = "10.214.0.1";
const CL4 = "10.214.0.2";
const PORT = 5214;
const Q = 14;
const MARK = 114;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Build the namespaces, start the daemon (`start`, after the table exists), and check:
 * marked before the truncation, dropped after, marked again once the table is re-created.
 */
async function truncateUnder(
  start: (net: TestNet, lb: string, table: string, ftshm: string) => Promise<Daemon>,
): Promise<void> {
  const table = tempShmName("trunc-t");
  const ftshm = tempShmName("trunc-ft");
  try {
    await withTestNet(async (net) => {
      const u = await markedUdpNet(net, { lb4: LB4, cl4: CL4, port: PORT, queue: Q, mark: MARK });
      const { lb, send } = u;
      await cli("init", `--shm=${table}`, "--M=997", "--N=4");
      await cli("activate", `--shm=${table}`, `${MARK}`);
      const daemon = await start(net, lb, table, ftshm);
      const marked = async (want: number) => {
        const deadline = Date.now() + 3000;
        while ((await u.counter("marked")) < want && Date.now() < deadline) await sleep(50);
        return await u.counter("marked");
      };

      await send(20);
      assert.equal(await marked(20), 20, "accepted with the target's mark");
      assert.equal(await u.counter("all"), 20);

      Deno.truncateSync(`/dev/shm/${table}`, 0);
      await sleep(400); // more than two checks (every 100 ms, at least every receive timeout)
      await send(20);
      await sleep(500);
      assert.equal(await u.counter("all"), 20, "no packet passed after the truncation");
      assert.equal(await u.counter("marked"), 20);

      // A table created again under the same name is used again.
      await cli("init", `--shm=${table}`, "--M=997", "--N=4");
      await cli("activate", `--shm=${table}`, `${MARK}`);
      await sleep(400);
      await send(20);
      assert.equal(await marked(40), 40, "the re-created table is used");

      try {
        Deno.kill(daemon.pid, "SIGTERM");
      } catch {
        const gone = await daemon.finish();
        assert.fail(`daemon died (exit ${gone.code}) after the truncation: ${gone.stderr}`);
      }
      const r = await daemon.finish();
      assert.equal(r.code, 0, `exit ${r.code} (alive until SIGTERM): ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`table ${table} was truncated`));
    });
  } finally {
    removeShm(table);
    removeShm(ftshm);
  }
}

Deno.test({
  name: "lb survives a target table truncated under it and answers 'no target' (needs root)",
  ignore: !ROOT,
  fn: () =>
    truncateUnder(async (net, lb, table, ftshm) => {
      const d = new Daemon(net, lb, "lb", [`--tshm=${table}`, `--ft_shm=${ftshm}`, `--queue=${Q}`]);
      await d.waitLines(/^queue_length=\d+/);
      return d;
    }),
});

Deno.test({
  name: "flowlb survives a flow's table truncated under it: the flow gets no target (needs root)",
  ignore: !ROOT,
  fn: () =>
    truncateUnder(async (net, lb, table, ftshm) => {
      const d = new Daemon(net, lb, "flowlb", [`--ft_shm=${ftshm}`, `--queue=${Q}`]);
      await d.waitLines(/^queue_length=\d+/);
      const r = await net.exec(lb, [
        ...FLOW_ENV,
        DENO,
        "run",
        "--allow-all",
        CLI,
        "flow-set",
        "--name=udp",
        `--target=${table}`,
        "--protocols=udp",
        `--dports=${PORT}`,
      ]);
      assert.equal(r.stdout, "OK\n", `flow-set: ${r.stdout}${r.stderr}`);
      return d;
    }),
});
