/**
 * `tcp:` control addresses authorise their peers (docs/COMPATIBILITY.md#control-protocol): a
 * loopback client's uid is found in `/proc/net/tcp{,6}`, so uid 65534 is refused changes and
 * root is served; a client from another namespace (not loopback) is refused the connection
 * unless `--control-unauthenticated`, which is said in the log at start. A peer that sends a whole
 * change and closes at once — whose socket the kernel then shows as uid 0 — is not taken for
 * root: none of its changes is made.
 */
import assert from "node:assert/strict";
import { removeShm, tempShmName } from "../../testkit/cli.ts";
import { isRoot, type TestNet, withTestNet } from "../../testkit/netns.ts";
import { LineProcess } from "../../testkit/line_process.ts";

/** This file's fragment statistics object (not the default `ftshm`), removed at exit. */
const FTSHM = tempShmName("ctl-ft");
globalThis.addEventListener("unload", () => removeShm(FTSHM));

const ROOT = isRoot();
const NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
const CLI = new URL("../../cli.ts", import.meta.url).pathname;
const NFQLB = [Deno.execPath(), "run", "-A", CLI];
const CLIENTS = new URL("../../testkit/fixtures/control_clients.py", import.meta.url).pathname;

/** Run `nfqlb args` in `ns` against control `address`, optionally under `prefix`. */
function nfqlb(net: TestNet, ns: string, address: string, args: string[], prefix: string[] = []) {
  return net.exec(ns, [...prefix, "env", `NFQLB_FLOW_ADDRESS=${address}`, ...NFQLB, ...args]);
}

/** Start flowlb in `ns` on `address`; resolves once it serves. */
async function startFlowlb(
  net: TestNet,
  ns: string,
  address: string,
  extra: string[] = [],
): Promise<LineProcess> {
  const lb = new LineProcess(
    net,
    ns,
    [
      "env",
      `NFQLB_FLOW_ADDRESS=${address}`,
      ...NFQLB,
      "flowlb",
      "--queue=0",
      `--ft_shm=${FTSHM}`,
      ...extra,
    ],
    "flowlb",
  );
  await lb.waitLine(/^queue_length=/);
  return lb;
}

async function stopFlowlb(lb: LineProcess): Promise<string> {
  Deno.kill(lb.pid, "SIGTERM");
  const end = await lb.finish();
  assert.equal(end.code, 0, end.stderr.slice(-2000));
  return end.stderr;
}

/** Flow names in a `flow-list` reply. */
function names(out: string): string[] {
  return (JSON.parse(out) as { name: string }[]).map((f) => f.name).sort();
}

Deno.test({
  name: "control over tcp: loopback peers are authorised by uid, others refused by default",
  ignore: !ROOT,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const shm = `ctltcp-${Deno.pid}`;
    await withTestNet(async (net) => {
      const ns = await net.addNs("ctltcp");
      const far = await net.addNs("ctltcpf");
      await net.veth(ns, "ct0", far, "ct1");
      await net.run(ns, ["ip", "link", "set", "lo", "up"]);
      await net.run(ns, ["ip", "addr", "add", "10.77.0.1/24", "dev", "ct0"]);
      await net.run(far, ["ip", "addr", "add", "10.77.0.2/24", "dev", "ct1"]);
      const init = await net.exec(ns, [...NFQLB, "init", `--shm=${shm}`, "--M=997", "--N=8"]);
      assert.equal(init.code, 0, init.stderr);
      const set = (name: string) => ["flow-set", `--name=${name}`, `--target=${shm}`];
      try {
        // IPv6 loopback.
        const v6 = "tcp:[::1]:7391";
        let lb = await startFlowlb(net, ns, v6);
        let stderr;
        try {
          const evil = await nfqlb(net, ns, v6, set("evil6"), NOBODY);
          assert.equal(evil.stdout.trim(), "FAIL: permission denied", evil.stderr);
          const ok = await nfqlb(net, ns, v6, set("root6"));
          assert.equal(ok.stdout.trim(), "OK", ok.stderr);
          // Reading needs no privilege.
          const list = await nfqlb(net, ns, v6, ["flow-list"], NOBODY);
          assert.deepEqual(names(list.stdout), ["root6"], list.stderr);
          const del = await nfqlb(net, ns, v6, ["flow-delete", "--name=root6"], NOBODY);
          assert.equal(del.stdout.trim(), "FAIL: permission denied", del.stderr);
        } finally {
          stderr = await stopFlowlb(lb);
        }
        assert.match(stderr, /refused set from uid 65534 \(tcp \[::1\]:\d+\)/);

        // IPv4 on every address: loopback is checked, the far namespace refused outright.
        const any4 = "tcp:0.0.0.0:7392";
        lb = await startFlowlb(net, ns, any4);
        try {
          const lo = "tcp:127.0.0.1:7392";
          const evil = await nfqlb(net, ns, lo, set("evil4"), NOBODY);
          assert.equal(evil.stdout.trim(), "FAIL: permission denied", evil.stderr);
          const ok = await nfqlb(net, ns, lo, set("root4"));
          assert.equal(ok.stdout.trim(), "OK", ok.stderr);
          const remote = await nfqlb(net, far, "tcp:10.77.0.1:7392", set("far4"));
          assert.notEqual(remote.stdout.trim(), "OK", "a non-loopback peer is not served");
          const list = await nfqlb(net, ns, lo, ["flow-list"]);
          assert.deepEqual(names(list.stdout), ["root4"], list.stderr);
        } finally {
          stderr = await stopFlowlb(lb);
        }
        assert.match(stderr, /refused connection from 10\.77\.0\.2:\d+: not loopback/);
        assert.doesNotMatch(stderr, /unauthenticated/);

        // --control-unauthenticated: the far namespace may change flows, and the log says so.
        lb = await startFlowlb(net, ns, any4, ["--control-unauthenticated"]);
        try {
          const remote = await nfqlb(net, far, "tcp:10.77.0.1:7392", set("far4"));
          assert.equal(remote.stdout.trim(), "OK", remote.stderr);
          // Loopback peers are still checked.
          const lo = "tcp:127.0.0.1:7392";
          const evil = await nfqlb(net, ns, lo, set("evil4"), NOBODY);
          assert.equal(evil.stdout.trim(), "FAIL: permission denied", evil.stderr);
          // So is a local user who connects to the host's own non-loopback address: its socket
          // is found, so it is not taken for a remote, unauthenticated peer.
          const own = "tcp:10.77.0.1:7392";
          const local = await nfqlb(net, ns, own, set("evil4b"), NOBODY);
          assert.equal(local.stdout.trim(), "FAIL: permission denied", local.stderr);
          const rootLocal = await nfqlb(net, ns, own, set("root4b"));
          assert.equal(rootLocal.stdout.trim(), "OK", rootLocal.stderr);
        } finally {
          stderr = await stopFlowlb(lb);
        }
        assert.equal(stderr.match(/the control socket is unauthenticated/g)?.length, 1, stderr);
      } finally {
        await net.exec(ns, [...NFQLB, "delete", `--shm=${shm}`]).catch(() => {});
      }
    });
  },
});

/**
 * Rows of `/proc/net/tcp` in `ns` of clients of local port `port` that the server has not closed
 * yet: their remote end is the port and they are not in TIME_WAIT (06) or CLOSE (07).
 */
async function clientsOf(net: TestNet, ns: string, port: number): Promise<string[]> {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const text = await net.run(ns, ["cat", "/proc/net/tcp"]);
  return text.split("\n").slice(1).filter((l) => {
    const cols = l.trim().split(/\s+/);
    return cols.length > 3 && cols[2].endsWith(hex) && !cols[1].endsWith(hex) &&
      cols[3] !== "06" && cols[3] !== "07";
  });
}

for (
  const [where, host, extra] of [
    ["loopback", "127.0.0.1", []],
    ["a host address with --control-unauthenticated", "10.78.0.1", ["--control-unauthenticated"]],
  ] as const
) {
  Deno.test({
    name:
      `control over tcp (${where}): a peer that sends a change and closes at once is not taken for root`,
    ignore: !ROOT,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      const shm = `ctltcpc-${Deno.pid}`;
      const port = 7393;
      const address = `tcp:${host}:${port}`;
      const tries = 40;
      await withTestNet(async (net) => {
        const ns = await net.addNs("ctltcpc");
        // A local user reaching one of the host's own addresses is checked like a loopback one.
        await net.run(ns, ["ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
        await net.run(ns, ["ip", "addr", "add", "10.78.0.1/24", "dev", "d0"]);
        await net.run(ns, ["ip", "link", "set", "d0", "up"]);
        const init = await net.exec(ns, [...NFQLB, "init", `--shm=${shm}`, "--M=997", "--N=8"]);
        assert.equal(init.code, 0, init.stderr);
        let stderr;
        const lb = await startFlowlb(net, ns, address, [...extra]);
        try {
          // uid 65534 connects, sends a whole flow-set and closes, without waiting for a reply:
          // by the time the server looks, the kernel shows its socket as orphaned (uid 0).
          const evil = await net.exec(ns, [
            ...NOBODY,
            "env",
            `NFQLB_FLOW_ADDRESS=${address}`,
            "/usr/bin/python3",
            CLIENTS,
            "setclose",
            String(tries),
            shm,
          ]);
          assert.equal(evil.code, 0, evil.stderr);
          assert.equal(JSON.parse(evil.stdout).sent, tries);
          // Every one of them handled: the server has closed all their connections.
          const deadline = Date.now() + 30_000;
          for (;;) {
            const left = await clientsOf(net, ns, port);
            if (left.length === 0) break;
            assert.ok(Date.now() < deadline, `connections not handled:\n${left.join("\n")}`);
            await new Promise((r) => setTimeout(r, 50));
          }
          const ok = await nfqlb(net, ns, address, ["flow-set", "--name=root", `--target=${shm}`]);
          assert.equal(ok.stdout.trim(), "OK", ok.stderr);
          const list = await nfqlb(net, ns, address, ["flow-list"]);
          assert.deepEqual(names(list.stdout), ["root"], "no change of the closing peer was made");
        } finally {
          stderr = await stopFlowlb(lb);
          await net.exec(ns, [...NFQLB, "delete", `--shm=${shm}`]).catch(() => {});
        }
        assert.match(
          stderr,
          new RegExp(`refused set from uid \\? \\(tcp ${host.replaceAll(".", "\\.")}:\\d+\\)`),
        );
      });
    },
  });
}
