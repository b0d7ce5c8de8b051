/**
 * A second daemon that cannot start leaves the running one's counters alone (issue 18, item 3),
 * as root, in a private network namespace: `nfqlb lb` A serves queue Q with `--ft_shm=X` and
 * counts the UDP datagrams an `OUTPUT` NFQUEUE rule sends it; then `lb` B and `flowlb` B start on
 * the same queue and the same `--ft_shm`. Each must exit 1 with `queue Q is in use by another
 * process`, and the `ftshm` object must be byte for byte what it was before (it is initialised
 * only once every queue is bound); A goes on counting. Likewise its `--flow-state`: `flowlb` A
 * runs with a state file holding a pending flow; `flowlb` B on the same queue and file, asked for
 * a change on its own control socket while it starts, exits 1 and leaves the file as it was (its
 * control thread saves, activates and serves nothing before every queue is bound).
 */
import assert from "node:assert/strict";
import { readShm, removeShm, runCli, tempShmName } from "../../testkit/cli.ts";
import { readQueueCounters } from "../../lib/counters/queue_counters.ts";
import { cli, Daemon } from "../../testkit/e2e_service.ts";
import { isRoot, type TestNet, withTestNet } from "../../testkit/netns.ts";
import { LineProcess } from "../../testkit/line_process.ts";
import { writeFlowStateFile } from "../../daemon/flow_state_file.ts";
import { encodeFlowState } from "../../lib/flow/state_file.ts";
import { FlowStore } from "../../lib/flow/store.ts";

const ROOT = isRoot();
if (!ROOT) console.warn("second_daemon_test: not running as root: test skipped");

const DENO = Deno.execPath();
const CLI = new URL("../../cli.ts", import.meta.url).pathname;
/** A destination on loopback whose datagrams go through the queue. */
const DST = "127.0.0.2";
const PORT = 9;

/** The argv of `nfqlb flowlb <args>` with its control socket at `@name`. */
const flowlbArgv = (name: string, ...args: string[]) => [
  "env",
  `NFQLB_FLOW_ADDRESS=unix:${name}`,
  DENO,
  "run",
  "-A",
  CLI,
  "flowlb",
  ...args,
];

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

          const flowlb = await net.exec(
            ns,
            flowlbArgv(`nfqlb-2nd-${Deno.pid}`, `--queue=${q}`, `--ft_shm=${ftshm}`),
          );
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

/**
 * A client that connects to `@NAME` (argv 1) as soon as it listens and asks for `flow-set
 * --name=b --target=TABLE` (argv 2); it gives up once the file argv 3 exists. Prints `reply
 * <bytes>`, `error <why>` or `gave up`.
 */
const EAGER_CLIENT = `
import os, socket, sys, time
addr, table, done = "\\0" + sys.argv[1], sys.argv[2], sys.argv[3]
deadline = time.monotonic() + 120
while not os.path.exists(done) and time.monotonic() < deadline:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(addr)
    except OSError:
        s.close()
        time.sleep(0.002)
        continue
    try:
        s.sendall(("action:set\\nname:b\\ntarget:%s\\neoc:\\n" % table).encode())
        data = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            data += b
        print("reply", repr(data))
    except OSError as e:
        print("error", e)
    sys.exit(0)
print("gave up")
`;

Deno.test({
  name: "a second flowlb on a busy queue exits 1 and leaves the first one's --flow-state (root)",
  ignore: !ROOT,
  async fn() {
    const q = 2000 + ((Deno.pid + 7) % 20000);
    const missing = tempShmName("2nd-missing");
    const other = tempShmName("2nd-other");
    const ftshm = tempShmName("2nd-fs-ft");
    const dir = await Deno.makeTempDir({ prefix: "nfqlb-2nd-" });
    const file = `${dir}/flows.json`;
    try {
      // A's state: flow `later` on a table that does not exist (pending, D58).
      const before = new FlowStore({ acquire: () => true, release: () => {} });
      assert.equal(before.set({ name: "later", target: missing, protocols: "udp" }), "OK");
      writeFlowStateFile(file, encodeFlowState(before.flows.snapshot.flows, []));
      // B is asked to add a flow on a table that exists (it would be saved at once).
      await cli("init", `--shm=${other}`, "--M=997", "--N=4");
      await withTestNet(async (net) => {
        const ns = await net.addNs("secondfs");
        const flowlb = (name: string) =>
          flowlbArgv(name, `--queue=${q}`, `--ft_shm=${ftshm}`, `--flow-state=${file}`);
        const a = new LineProcess(net, ns, flowlb(`nfqlb-2nd-a-${Deno.pid}`), "flowlb A");
        try {
          await a.waitLine(/^queue_length=/);
          const bytes = await Deno.readFile(file);
          const inode = (await Deno.stat(file)).ino;

          const bName = `nfqlb-2nd-b-${Deno.pid}`;
          const done = `${dir}/b-done`;
          const [b, client] = await Promise.all([
            net.exec(ns, flowlb(bName)).finally(() => Deno.writeTextFile(done, "")),
            net.exec(ns, ["/usr/bin/python3", "-c", EAGER_CLIENT, bName, other, done]),
          ]);
          assert.equal(b.code, 1, b.stderr);
          assert.match(b.stderr, new RegExp(`^queue ${q} is in use by another process$`, "m"));
          assert.deepEqual(await Deno.readFile(file), bytes, "B left the file as it was");
          assert.equal((await Deno.stat(file)).ino, inode, "not replaced either");
          assert.equal(client.code, 0, client.stderr);
          assert.doesNotMatch(client.stdout, /OK/, `B accepted no change: ${client.stdout}`);
          // Nothing else was left in the directory (no temporary file of B's).
          const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
          assert.deepEqual(names, ["b-done", "flows.json"]);
        } finally {
          try {
            Deno.kill(a.pid, "SIGTERM");
          } catch { /* gone: its status says why */ }
          const end = await a.finish();
          assert.equal(end.code, 0, end.stderr);
        }
      });
    } finally {
      await runCli("delete", `--shm=${other}`);
      removeShm(ftshm);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
