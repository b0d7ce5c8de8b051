/**
 * Replies of the flow control server (daemon/control_worker.ts, docs/COMPATIBILITY.md D47) are
 * sent whole or not at all: an unprivileged reply that would take the unsent replies beyond the
 * cap gets a short `FAIL:` text instead, never a prefix of the list (root still gets the whole
 * list); a reply not taken by its deadline is given up with a reset, so that a tcp client reads
 * an error, not an orderly end after a prefix. The control thread runs in this process with
 * small test bounds (`limits`); the clients are Python processes, uid 65534 where it matters.
 * Root: `setpriv`, and /dev/shm tables owned by root.
 */
import assert from "node:assert/strict";
import { ControlThread } from "../../daemon/control_thread.ts";
import type { ControlStart } from "../../daemon/control_worker.ts";
import type { SocketAddress } from "../../lib/ccompat/sockaddr.ts";
import { longFlowState } from "../../testkit/control_load.ts";
import { removeShm, runCli, tempShmName } from "../../testkit/cli.ts";
import { isRoot } from "../../testkit/netns.ts";

const ROOT = isRoot();
const NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
/** Flows in the state file: a `flow-list` of about 380 kB, more than a unix socket takes. */
const FLOWS = 1500;
/**
 * For tcp: a list longer than the largest send buffer loopback tcp grows to (the `tcp_wmem`
 * maximum), at about 250 bytes a flow, so that a client that reads nothing leaves some unsent.
 */
function tcpFlows(): number {
  const max = Number(Deno.readTextFileSync("/proc/sys/net/ipv4/tcp_wmem").trim().split(/\s+/)[2]);
  return Math.ceil((1.5 * max) / 250);
}

/**
 * Ask for `flow-list` on argv 1 (`unix:NAME` or `tcp:HOST:PORT`); with argv 2 `wait`, read
 * nothing until the server ends the connection (a small receive buffer). Then read to the end:
 * prints `{"got": bytes, "end": "eof" | "reset" | "timeout", "text": the reply if short, else ""}`.
 */
const CLIENT = `
import json, select, socket, sys, time
addr, mode = sys.argv[1], sys.argv[2]
if addr.startswith("unix:"):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    target = "\\0" + addr[5:]
else:
    host, port = addr[4:].rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    target = (host, int(port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(target)
s.sendall(b"action:list\\neoc:\\n")
end = None
if mode == "wait":
    p = select.poll()
    p.register(s, select.POLLRDHUP)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ev = p.poll(100)
        if ev and ev[0][1] & (select.POLLRDHUP | select.POLLHUP | select.POLLERR):
            break
    else:
        end = "timeout"
data = b""
while True:
    try:
        b = s.recv(65536)
    except ConnectionResetError:
        end = end or "reset"
        break
    if not b:
        end = end or "eof"
        break
    data += b
text = data.decode(errors="replace") if len(data) < 1000 else ""
print(json.dumps({"got": len(data), "end": end, "text": text}))
`;

/** Run the client (as uid 65534 with `nobody`); its JSON line. */
async function client(
  address: string,
  mode: "read" | "wait",
  nobody: boolean,
): Promise<{ got: number; end: string; text: string }> {
  const argv = [...(nobody ? NOBODY : []), "/usr/bin/python3", "-c", CLIENT, address, mode];
  const r = await new Deno.Command(argv[0], { args: argv.slice(1), stderr: "piped" }).output();
  assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
  return JSON.parse(new TextDecoder().decode(r.stdout));
}

/** A loopback tcp port nobody uses now. */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * Run `fn` with a started control thread on `address` serving {@link FLOWS} flows (restored from
 * a state file), with `limits`; `err` gets its log lines.
 */
async function withControl(
  address: SocketAddress,
  limits: ControlStart["limits"],
  fn: (err: () => string) => Promise<void>,
  flows = FLOWS,
): Promise<void> {
  const table = tempShmName("reply-t");
  const dir = await Deno.makeTempDir({ prefix: "nfqlb-reply-" });
  const stop = new SharedArrayBuffer(4);
  const started = new Int32Array(new SharedArrayBuffer(4));
  started[0] = 1;
  let control: ControlThread | undefined;
  try {
    const init = await runCli("init", `--shm=${table}`, "--M=997", "--N=4");
    assert.equal(init.code, 0, init.err);
    Deno.writeTextFileSync(`${dir}/flows.json`, longFlowState(flows, table), { mode: 0o600 });
    let err = "";
    control = new ControlThread({ out: () => {}, err: (t) => err += t }, {
      address,
      flowState: `${dir}/flows.json`,
      lanes: 1,
      stop,
      started: started.buffer as SharedArrayBuffer,
      applied: new SharedArrayBuffer(8),
      limits,
    });
    const ready = await control.ready;
    assert.equal(ready.restored, flows);
    await fn(() => err);
  } finally {
    Atomics.store(new Int32Array(stop), 0, 1);
    if (control !== undefined) {
      await control.stopped;
      control.terminate();
    }
    removeShm(table);
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "control: an unprivileged reply over the cap is a short FAIL, never a prefix (root)",
  ignore: !ROOT,
  async fn() {
    const name = `nfqlbtest-${Deno.pid}-replycap`;
    // Smaller than the list, and than what a unix socket takes at once (so a server that sent
    // first and checked after would have sent a prefix).
    const max = 100_000;
    await withControl({ kind: "unix", name }, { unprivilegedOutputMax: max }, async (err) => {
      const nobody = await client(`unix:${name}`, "read", true);
      const fail = `FAIL: reply of \\d+ bytes not sent: the replies waiting for unprivileged ` +
        `clients would exceed ${max} bytes; try again later`;
      assert.match(nobody.text, new RegExp(`^${fail}\0$`), JSON.stringify(nobody));
      assert.equal(nobody.end, "eof");
      const root = await client(`unix:${name}`, "read", false);
      assert.ok(root.got > 300_000, `root gets the whole list: ${root.got} bytes`);
      assert.equal(root.end, "eof");
      assert.match(err(), /control: refused the reply to uid 65534 \(pid \d+\): \d+ bytes/);
    });
  },
});

Deno.test({
  name: "control: a reply not taken by its deadline ends with a reset on tcp (root)",
  ignore: !ROOT,
  async fn() {
    const port = freePort();
    const address: SocketAddress = { kind: "tcp", host: "127.0.0.1", port, v6: false };
    await withControl(address, { replyTimeoutMs: 300 }, async (err) => {
      const r = await client(`tcp:127.0.0.1:${port}`, "wait", false);
      assert.equal(r.end, "reset", JSON.stringify(r));
      assert.ok(r.got > 0, `part of the list: ${r.got} bytes`);
      assert.match(err(), /control: closed uid 0 .*: reply not taken within 300 ms/);
    }, tcpFlows());
  },
});
