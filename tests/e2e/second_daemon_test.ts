/**
 * A second daemon that cannot start leaves the running one's counters alone (issue 18, item 3),
 * as root, in a private network namespace: `nfqlb lb` A serves queue Q with `--ft_shm=X` and
 * counts the UDP datagrams an `OUTPUT` NFQUEUE rule sends it; then `lb` B and `flowlb` B start on
 * the same queue and the same `--ft_shm`. Each must exit 1 with `queue Q is in use by another
 * process`, and the `ftshm` object must be byte for byte what it was before (it is initialised
 * only once every queue is bound); A goes on counting.
 */
import assert from "node:assert/strict";
import { readShm, removeShm, runCli, tempShmName } from "../../testkit/cli.ts";
import { readQueueCounters } from "../../lib/counters/queue_counters.ts";
import { cli, Daemon } from "../../testkit/e2e_service.ts";
import { isRoot, type TestNet, withTestNet } from "../../testkit/netns.ts";

const ROOT = isRoot();
if (!ROOT) console.warn("second_daemon_test: not running as root: test skipped");

const DENO = Deno.execPath();
const CLI = new URL("../../cli.ts", import.meta.url).pathname;
/** A destination on loopback whose datagrams go through the queue. */
const DST = "127.0.0.2";
const PORT = 9;

/** Send `n` UDP datagrams to DST:PORT from inside `ns`. */
async function send(net: TestNet, ns: string, n: number): Promise<void> {
  const py = `import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(${n}):
    s.sendto(b"x" * 20, ("${DST}", ${PORT}))`;
  await net.run(ns, ["/usr/bin/python3", "-c", py]);
}

/**
 * The whole `ftshm` object (read through /dev/shm) and the packets its first queue counted. Not
 * `nfqlb stats`: it also prints every fast path running on the host.
 */
function stats(name: string): { bytes: Uint8Array; received: number } {
  const bytes = readShm(name);
  return { bytes, received: readQueueCounters(bytes.buffer)?.queues[0]?.received ?? 0 };
}

/** Wait (up to 20 s: the machine may be busy) until the queue counted `n` packets. */
async function waitReceived(name: string, n: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  let got = 0;
  while (Date.now() < deadline) {
    got = stats(name).received;
    if (got >= n) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(got, n, "packets counted by the running daemon");
}

Deno.test({
  name: "a second lb/flowlb on a busy queue exits 1 and leaves the first one's counters (root)",
  ignore: !ROOT,
  async fn() {
    const q = 2000 + (Deno.pid % 20000);
    const tshm = tempShmName("2nd-t");
    const ftshm = tempShmName("2nd-ft");
    try {
      await cli("init", `--shm=${tshm}`, "--M=997", "--N=8");
      await cli("activate", `--shm=${tshm}`, "101");
      await withTestNet(async (net) => {
        const ns = await net.addNs("second");
        await net.run(ns, [
          "iptables",
          ..."-t mangle -A OUTPUT -d 127.0.0.2 -p udp --dport 9 -j NFQUEUE --queue-num"
            .split(" "),
          String(q),
        ]);
        const args = [`--tshm=${tshm}`, `--queue=${q}`, `--ft_shm=${ftshm}`];
        const a = new Daemon(net, ns, "lb", args);
        try {
          await a.ready();
          await send(net, ns, 20);
          await waitReceived(ftshm, 20);
          const before = stats(ftshm);

          const busy = new RegExp(`^queue ${q} is in use by another process$`, "m");
          const lb = await net.exec(ns, [DENO, "run", "-A", CLI, "lb", ...args]);
          assert.equal(lb.code, 1, lb.stderr);
          assert.match(lb.stderr, busy);
          assert.deepEqual(stats(ftshm).bytes, before.bytes, "lb B left the object alone");

          const flowlb = await net.exec(ns, [
            "env",
            `NFQLB_FLOW_ADDRESS=unix:nfqlb-2nd-${Deno.pid}`,
            DENO,
            "run",
            "-A",
            CLI,
            "flowlb",
            `--queue=${q}`,
            `--ft_shm=${ftshm}`,
          ]);
          assert.equal(flowlb.code, 1, flowlb.stderr);
          assert.match(flowlb.stderr, busy);
          assert.deepEqual(stats(ftshm).bytes, before.bytes, "flowlb B left it alone");

          // A still serves the queue and counts into the same object.
          await send(net, ns, 5);
          await waitReceived(ftshm, 25);
          const end = await a.stop();
          assert.equal(end.code, 0, end.stderr);
        } finally {
          await a.kill();
        }
      });
    } finally {
      await runCli("delete", `--shm=${tshm}`);
      removeShm(ftshm);
    }
  },
});
