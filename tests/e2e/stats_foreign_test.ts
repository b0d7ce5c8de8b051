/**
 * `nfqlb stats` in a network namespace whose daemon is not the object's: `/dev/shm` is the
 * host's, so `stats` there prints another namespace's (or a stopped daemon's) counters. stdout
 * and the exit status stay 1.2.0's; stderr gets one note when the object's queues have no
 * listener in the namespace `stats` runs in (needs root: namespaces).
 */
import assert from "node:assert/strict";
import { removeShm, runCli, tempShmName } from "../../testkit/cli.ts";
import { isRoot, withTestNet } from "../../testkit/netns.ts";
import { LineProcess } from "../../testkit/line_process.ts";

const DENO = Deno.execPath();
const CLI = new URL("../../cli.ts", import.meta.url).pathname;
const Q = 17;

Deno.test({
  name: "stats: a note on stderr where the object's queues have no listener, none where they have",
  ignore: !isRoot(),
  async fn() {
    const tshm = tempShmName("sfq");
    const ftshm = tempShmName("sfqft");
    const note = `nfqlb: ${ftshm} is not of a daemon in this network namespace (its queues ` +
      `${Q}:${Q + 1} have no listener here; /dev/shm is shared by the host's namespaces): these ` +
      "may be another namespace's or a stopped daemon's counters\n";
    try {
      assert.equal((await runCli("init", `--shm=${tshm}`, "--M=97", "--N=4")).code, 0);
      await withTestNet(async (net) => {
        const here = await net.addNs("sfa");
        const other = await net.addNs("sfb");
        const stats = (ns: string) =>
          net.exec(ns, [DENO, "run", "-A", CLI, "stats", `--ft_shm=${ftshm}`]);
        const lb = new LineProcess(net, here, [
          DENO,
          "run",
          "-A",
          CLI,
          "lb",
          `--tshm=${tshm}`,
          `--queue=${Q}:${Q + 1}`,
          `--ft_shm=${ftshm}`,
        ], "lb");
        let stopped = false;
        try {
          // One line per queue, each as its queue is bound: both, before "its own namespace".
          await lb.waitLines(/^queue_length=/, 2);
          const own = await stats(here);
          assert.equal(own.code, 0, own.stderr);
          assert.equal(own.stderr, "", "the daemon listens here: nothing to say");
          assert.match(own.stdout, /"queues": \[/);
          const away = await stats(other);
          assert.deepEqual(
            { code: away.code, out: away.stdout, err: away.stderr },
            { code: 0, out: own.stdout, err: note },
            "another namespace: the same stdout and status, and the note",
          );
          Deno.kill(lb.pid, "SIGTERM");
          stopped = true;
          await lb.finish();
          const after = await stats(here);
          assert.equal(after.code, 0);
          assert.equal(after.stderr, note, "a stopped daemon's object");
        } finally {
          if (!stopped) Deno.kill(lb.pid, "SIGTERM");
          if (!stopped) await lb.finish();
        }
      });
    } finally {
      removeShm(tshm);
      removeShm(ftshm);
    }
  },
});
