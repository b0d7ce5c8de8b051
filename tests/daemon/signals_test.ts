/**
 * SIGHUP, SIGUSR1 and SIGUSR2 do not stop `nfqlb lb` (daemon/threads.ts `ignoreSignals`);
 * SIGTERM still does, with exit status 0. Needs root (NFQUEUE), in a private namespace.
 * @module
 */
import assert from "node:assert/strict";
import { removeShm, runCli, tempShmName } from "../../testkit/cli.ts";
import { LineProcess } from "../../testkit/line_process.ts";
import { isRoot, withTestNet } from "../../testkit/netns.ts";

const CLI = new URL("../../cli.ts", import.meta.url).pathname;

Deno.test({
  name: "lb survives SIGHUP, SIGUSR1, SIGUSR2 and exits 0 on SIGTERM (root)",
  ignore: !isRoot(),
  async fn() {
    const table = tempShmName("sig-t");
    const ft = tempShmName("sig-ft");
    try {
      assert.equal((await runCli("init", `--shm=${table}`, "--M=997", "--N=4")).code, 0);
      await withTestNet(async (net) => {
        const ns = await net.addNs("sig");
        const lb = new LineProcess(net, ns, [
          Deno.execPath(),
          "run",
          "--allow-all",
          CLI,
          "lb",
          `--tshm=${table}`,
          `--ft_shm=${ft}`,
          "--queue=0:1",
        ], "nfqlb lb");
        await lb.waitLines(/^queue_length=/, 2);
        let exited = false;
        lb.child.status.then(() => exited = true);
        for (const s of ["SIGHUP", "SIGUSR1", "SIGUSR2"] as const) {
          Deno.kill(lb.pid, s);
          await new Promise((r) => setTimeout(r, 300));
          assert.equal(exited, false, `lb died on ${s}`);
        }
        // Still serving: the queues are bound.
        const q = await net.run(ns, ["cat", "/proc/net/netfilter/nfnetlink_queue"]);
        assert.equal(q.trim().split("\n").length, 2, `both queues bound:\n${q}`);
        Deno.kill(lb.pid, "SIGTERM");
        const r = await lb.finish();
        assert.equal(r.code, 0, r.stderr);
      });
    } finally {
      removeShm(table);
      removeShm(ft);
    }
  },
});
