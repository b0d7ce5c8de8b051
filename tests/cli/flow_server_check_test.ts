/**
 * The flow client checks who serves the control socket before it sends a change
 * (docs/COMPATIBILITY.md#control-protocol): uid 65534 binds `@nfqlb` in a namespace and answers
 * `OK` to everything; a root `flow-set` / `flow-delete` is refused with a clear error, exit 1,
 * and the impostor receives nothing. A server run by root is trusted.
 */
import { untrustedServerHint } from "../../lib/hints/sockets.ts";
import { userNameOf } from "../../daemon/user_names.ts";
import assert from "node:assert/strict";
import { isRoot, withTestNet } from "../../testkit/netns.ts";
import { nfqlbIn, NOBODY } from "../../testkit/control_load.ts";

const ROOT = isRoot();

/** A server on `@nfqlb`: prints `listening`, then per client the bytes received, answers OK. */
const IMPOSTOR = `
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind('\\0nfqlb')
s.listen(8)
print('listening', flush=True)
while True:
    c, _ = s.accept()
    c.settimeout(1)
    try:
        data = c.recv(65536)
    except Exception:
        data = b''
    print('got', len(data), flush=True)
    try:
        c.sendall(b'OK\\0')
    except Exception:
        pass
    c.close()
`;

Deno.test({
  name: "flow-set/flow-delete refuse an impostor on @nfqlb (uid 65534); a root server is used",
  ignore: !ROOT,
  async fn() {
    await withTestNet(async (net) => {
      for (const [who, prefix] of [["impostor", NOBODY], ["root", []]] as const) {
        const ns = await net.addNs(`fsc-${who}`);
        const server = net.spawn(ns, [...prefix, "/usr/bin/python3", "-c", IMPOSTOR]);
        const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
        let pending = "";
        const nextLine = async (): Promise<string> => {
          while (!pending.includes("\n")) {
            const r = await reader.read();
            if (r.done) return pending;
            pending += r.value;
          }
          const i = pending.indexOf("\n") + 1;
          const line = pending.slice(0, i);
          pending = pending.slice(i);
          return line;
        };
        assert.equal(await nextLine(), "listening\n");
        const cli = (...args: string[]) => nfqlbIn(net, ns, ...args);
        const set = await cli("flow-set", "--name=f", "--target=t");
        const del = await cli("flow-delete", "--name=f");
        if (who === "impostor") {
          const pid = /\(pid (\d+)\)/.exec(set.stderr)?.[1];
          for (const r of [set, del]) {
            assert.equal(r.code, 1, r.stderr);
            assert.equal(r.stdout, "");
            assert.equal(
              r.stderr,
              `Refusing to talk to the control server: owned by uid 65534 (pid ${pid}), ` +
                "expected root or uid 0\n" + untrustedServerHint(65534, userNameOf(65534)) + "\n",
            );
          }
          // A read-only request is not checked (nothing to steer); it is answered as before.
          const list = await cli("flow-list");
          assert.equal(list.code, 255);
          // The refused changes sent nothing (the impostor saw two empty connections).
          assert.deepEqual([await nextLine(), await nextLine()], ["got 0\n", "got 0\n"]);
          assert.match(await nextLine(), /^got [1-9]\d*\n$/, "the list request came");
        } else {
          assert.deepEqual([set.code, set.stdout], [0, "OK\n"], set.stderr);
          assert.deepEqual([del.code, del.stdout], [0, "OK\n"], del.stderr);
          for (const _ of [set, del]) assert.match(await nextLine(), /^got [1-9]\d*\n$/);
        }
        reader.releaseLock();
      }
    });
  },
});
