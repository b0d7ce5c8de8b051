/**
 * The flow client and a unix server whose listen backlog is full (cli/flow_transport.ts): a
 * non-blocking connect then fails with EAGAIN; the client tries again for up to 2 s, so it is
 * served once the server accepts, and otherwise fails with a message that says why.
 */
import { currentNetns } from "../../daemon/socket_holder.ts";
import assert from "node:assert/strict";
import { type Command, runCommand } from "../../cli/command.ts";
import { flowCommands, TransportError } from "../../cli/flow_commands.ts";
import { BUSY_RETRY_MS, socketTransport } from "../../cli/flow_transport.ts";
import { type Connection, StreamServer } from "../../ffi/stream_server.ts";

const name = () => `nfqlbtest-${Deno.pid}-${Math.random().toString(36).slice(2)}-busy`;
const encoder = new TextEncoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A listener on `@n` with the smallest backlog, and its backlog filled with idle clients (a
 * further non-blocking connect fails with EAGAIN).
 */
async function fullServer(n: string): Promise<{ srv: StreamServer; fillers: Deno.Conn[] }> {
  const srv = StreamServer.listen({ kind: "unix", name: n }, 0);
  const fillers: Deno.Conn[] = [];
  for (let i = 0; i < 64; i++) {
    try {
      fillers.push(await Deno.connect({ transport: "unix", path: `\0${n}` }));
    } catch (e) {
      assert.ok(e instanceof Deno.errors.WouldBlock, String(e));
      return { srv, fillers };
    }
  }
  throw new Error("the backlog never filled");
}

/**
 * Accept everything pending (without waiting) until a client sends a request; answer it with
 * `reply` and close it. The other connections are returned (the caller closes them).
 */
async function serveOne(srv: StreamServer, reply: string): Promise<Connection[]> {
  const open: Connection[] = [];
  const buf = new Uint8Array(4096);
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const c = srv.acceptNow();
    if (c !== null) open.push(c);
    for (const o of open) {
      const n = o.recvNow(buf);
      if (n > 0) {
        assert.equal(o.sendNow(encoder.encode(reply)), reply.length);
        o.close();
        return open.filter((x) => x !== o);
      }
    }
    if (c === null) await sleep(5);
  }
  throw new Error("no request came");
}

for (const change of [false, true]) {
  const kind = change ? "a change (SO_PEERCRED checked)" : "a list";
  Deno.test(`full backlog: ${kind} waits, and is served once the server accepts`, async () => {
    const n = name();
    const { srv, fillers } = await fullServer(n);
    let others: Connection[] = [];
    try {
      const reply = socketTransport(
        { kind: "unix", name: n },
        encoder.encode("action:list\neoc:\n"),
        change,
      );
      reply.catch(() => {}); // awaited below; a rejection before then is not "uncaught"
      // The server accepts a little later (far within the client's 2 s).
      await sleep(100);
      const served = serveOne(srv, "OK\0");
      assert.equal(new TextDecoder().decode(await reply), "OK\0");
      others = await served;
    } finally {
      for (const c of others) c.close();
      for (const f of fillers) f.close();
      srv.close();
    }
  });
}

Deno.test("full backlog that stays full: a clear error after the bound, from the CLI too", async () => {
  const n = name();
  const { srv, fillers } = await fullServer(n);
  try {
    const t0 = Date.now();
    await assert.rejects(
      socketTransport({ kind: "unix", name: n }, encoder.encode("action:list\neoc:\n")),
      (e) =>
        e instanceof TransportError &&
        e.message === "Resource temporarily unavailable (the server's backlog of pending " +
            "connections stayed full for 2 s)",
    );
    assert.ok(Date.now() - t0 >= BUSY_RETRY_MS, "it was tried again for the whole bound");

    const cmd = flowCommands(socketTransport, () => `unix:${n}`)
      .find((c) => c.name === "flow-set") as Command;
    let out = "";
    let err = "";
    const code = await runCommand(cmd, ["--name=a", "--target=t"], {
      out: (t) => out += t,
      err: (t) => err += t,
    });
    assert.deepEqual({ code, out, err }, {
      code: 1,
      out: "",
      err: "Connect failed. Resource temporarily unavailable (the server's backlog of pending " +
        "connections stayed full for 2 s)\n" +
        // A daemon listens there: the address is said, not "start flowlb".
        `  the address: unix:${n} (NFQLB_FLOW_ADDRESS), the abstract unix socket @${n} of ` +
        `network namespace ${currentNetns()}\n`,
    });
  } finally {
    for (const f of fillers) f.close();
    srv.close();
  }
});

// A reply cut short (issue: the client could not tell): a fake server that takes the request,
// sends `reply` and ends the connection with a plain close or a reset.

/** A loopback tcp port nobody uses now. */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * Run `command args` against a server on `address` (`unix:NAME` or `tcp:127.0.0.1:PORT`) that
 * answers one request with `reply`, then closes (`reset`: with SO_LINGER 0).
 */
async function against(
  kind: "unix" | "tcp",
  reply: string,
  reset: boolean,
  command: string,
  args: string[] = [],
): Promise<{ code: number; out: string; err: string }> {
  const addr = kind === "unix"
    ? { kind, name: name() } as const
    : { kind, host: "127.0.0.1", port: freePort(), v6: false } as const;
  const srv = StreamServer.listen(addr, 4);
  const served = (async () => {
    const deadline = Date.now() + 30_000;
    const buf = new Uint8Array(4096);
    while (Date.now() < deadline) {
      const c = srv.acceptNow();
      if (c === null) {
        await sleep(5);
        continue;
      }
      let request = "";
      while (!request.includes("eoc:\n") && Date.now() < deadline) {
        const n = c.recvNow(buf);
        if (n > 0) request += new TextDecoder().decode(buf.subarray(0, n));
        else await sleep(5);
      }
      assert.equal(c.sendNow(encoder.encode(reply)), reply.length);
      if (reset) c.reset();
      else c.close();
      return;
    }
    throw new Error("no client came");
  })();
  try {
    const text = kind === "unix" ? `unix:${addr.name}` : `tcp:127.0.0.1:${addr.port}`;
    const cmd = flowCommands(socketTransport, () => text).find((c) => c.name === command)!;
    let out = "";
    let err = "";
    const code = await runCommand(cmd, args, { out: (t) => out += t, err: (t) => err += t });
    await served;
    return { code, out, err };
  } finally {
    srv.close();
  }
}

const LIST = '[{\n  "name": "a",\n  "priority": 0,\n  "matches_count": 0,\n  "user_ref": "t"\n}]\n';

for (const kind of ["unix", "tcp"] as const) {
  Deno.test(`${kind}: a whole list is printed as it came; a text reply then a reset stands`, async () => {
    assert.deepEqual(await against(kind, LIST, false, "flow-list"), {
      code: 0,
      out: LIST,
      err: "",
    });
    assert.deepEqual(await against(kind, "", false, "flow-list", ["--name=x"]), {
      code: 0,
      out: "",
      err: "",
    }, "no reply: nothing, exit 0 (1.2.0)");
    assert.deepEqual(await against(kind, "OK\0", true, "flow-delete", ["--name=a"]), {
      code: 0,
      out: "OK\n",
      err: "",
    });
  });

  Deno.test(`${kind}: a 1.2.0 list with an unescaped name (D4) is whole: printed`, async () => {
    const unescaped = LIST.replace('"name": "a"', '"name": "a"b"');
    assert.deepEqual(await against(kind, unescaped, false, "flow-list"), {
      code: 0,
      out: unescaped,
      err: "",
    });
  });

  Deno.test(`${kind}: a list cut short is not printed: an error, exit 1`, async () => {
    const cut = LIST.slice(0, 30);
    const r = await against(kind, cut, false, "flow-list");
    assert.deepEqual(r, {
      code: 1,
      out: "",
      err: "Reply incomplete: the server closed the connection after 30 bytes, before the end " +
        "of the list (nothing printed)\n",
    });
    // Cut right after an element's closing brace: still not the list's end.
    const atBrace = LIST.slice(0, LIST.lastIndexOf("}") + 1);
    assert.equal((await against(kind, atBrace, false, "flow-list")).code, 1);
  });
}

Deno.test("tcp: a reset after part of a list is an error, not the end of the reply", async () => {
  const r = await against("tcp", LIST.slice(0, 30), true, "flow-list");
  assert.equal(r.code, 1, r.err);
  assert.equal(r.out, "");
  assert.match(
    r.err,
    /^Reply failed\. Connection reset by peer \(after \d+ bytes; nothing printed\)\n$/,
  );
});
