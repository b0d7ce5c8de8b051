/**
 * `SockDiag.lookup` against the kernel (ffi/sock_diag.ts): the owner of the other end of a
 * loopback TCP connection, for a client of uid 65534 (under setpriv) that holds its socket, and
 * nothing usable once it has closed (an orphan or time-wait socket, uid 0, no inode).
 */
import assert from "node:assert/strict";
import { SockDiag } from "../../ffi/sock_diag.ts";
import { liveOwner } from "../../lib/ccompat/inet_diag.ts";
import { isRoot } from "../../testkit/netns.ts";

const ROOT = isRoot();
const LO = new Uint8Array([127, 0, 0, 1]);

Deno.test({
  name: "sock_diag: a uid 65534 client's socket is found with its uid; once closed, no owner",
  ignore: !ROOT,
  async fn() {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    // The client connects, says its port, and keeps the socket until its stdin closes.
    const py = "import socket,sys\ns=socket.create_connection(('127.0.0.1',int(sys.argv[1])))\n" +
      "print(s.getsockname()[1],flush=True)\nsys.stdin.read()\ns.close()\n";
    const client = new Deno.Command("setpriv", {
      args: [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "/usr/bin/python3",
        "-c",
        py,
        `${port}`,
      ],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    const d = SockDiag.open();
    // A client that dies before it connects must fail the test, not leave accept() waiting.
    const conn = await Promise.race([
      l.accept(),
      client.status.then((st) => {
        throw new Error(`the client exited with ${st.code} before connecting`);
      }),
    ]);
    try {
      const reader = client.stdout.getReader();
      let text = "";
      while (!text.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      reader.releaseLock();
      const cport = Number(text.trim());
      const peer = { addr: LO, port: cport };
      const us = { addr: LO, port };
      assert.equal(liveOwner(d.lookup(peer, us), peer, us), 65534, "the client's uid");
      // Our own end is ours (root).
      assert.equal(liveOwner(d.lookup(us, peer), us, peer), 0);
      await client.stdin.close();
      assert.equal((await client.status).code, 0);
      // Closed: the kernel keeps an orphan/time-wait socket of the tuple, owned by nobody.
      const after = d.lookup(peer, us);
      assert.ok("errno" in after || after.inode === 0, JSON.stringify(after));
      assert.equal(liveOwner(after, peer, us), undefined);
      assert.deepEqual(d.lookup({ addr: LO, port: 1 }, us), { errno: 2 }, "no such socket");
    } finally {
      conn.close();
      l.close();
      d.close();
      client.stdout.cancel().catch(() => {});
    }
  },
});
