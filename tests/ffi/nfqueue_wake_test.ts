/**
 * The wake message (ffi/nfqueue.ts `QueueWaker`, docs/ARCHITECTURE.md): sent to a bound queue
 * socket's port id, it ends a blocking receive with no packet, no verdict and no error. Needs
 * root (NFQUEUE), in a private network namespace.
 * @module
 */
import assert from "node:assert/strict";
import { isRoot } from "../../testkit/netns.ts";
import { NfQueue, QueueWaker } from "../../ffi/nfqueue.ts";

const ROOT = isRoot();
const IN_NS = Deno.env.get("NFQLB_WAKE_TEST_NS") === "1";

if (IN_NS) {
  // Child: in the namespace, block forever (timeout 0) and get woken by another thread.
  const q = NfQueue.open({ queue: 7, mtu: 1500, qlength: 64, timeoutMs: 0 });
  const waker = new QueueWaker();
  assert.ok(q.portId !== 0, "a netlink port id");
  // Wake from a timer on this thread's event loop is impossible while blocked: use a worker.
  const w = new Worker(
    `data:application/javascript,${
      encodeURIComponent(
        `import { QueueWaker } from ${
          JSON.stringify(new URL("../../ffi/nfqueue.ts", import.meta.url).href)
        };
         self.onmessage = (e) => { setTimeout(() => { const k = new QueueWaker(); const r = k.wake(e.data); k.close(); self.postMessage(r); }, 100); };`,
      )
    }`,
    { type: "module" },
  );
  w.postMessage(q.portId);
  const n = q.receiveBatch();
  const out = {
    packets: n,
    other: q.otherMessages,
    bad: q.badMessages,
    errors: q.verdictErrors.count,
    verdicts: q.stats.verdicts,
    sends: q.stats.sends,
  };
  w.terminate();
  waker.close();
  q.close();
  console.log(JSON.stringify(out));
  Deno.exit(0);
}

Deno.test({
  name: "a wake message ends a blocking queue receive: no packet, no verdict, no error (root)",
  ignore: !ROOT,
  async fn() {
    const ns = `nfqlbt-${Deno.pid}-wake`;
    const run = (args: string[]) => new Deno.Command("ip", { args }).output();
    assert.ok((await run(["netns", "add", ns])).success);
    try {
      const r = await new Deno.Command("ip", {
        args: [
          "netns",
          "exec",
          ns,
          "timeout",
          "20",
          Deno.execPath(),
          "run",
          "--allow-all",
          new URL(import.meta.url).pathname,
        ],
        env: { NFQLB_WAKE_TEST_NS: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const err = new TextDecoder().decode(r.stderr);
      assert.equal(r.code, 0, `child failed (124 = the receive was not woken): ${err}`);
      const res = JSON.parse(new TextDecoder().decode(r.stdout).trim().split("\n").at(-1)!);
      assert.deepEqual(res, { packets: 0, other: 1, bad: 0, errors: 0, verdicts: 0, sends: 0 });
    } finally {
      await run(["netns", "del", ns]);
    }
  },
});
