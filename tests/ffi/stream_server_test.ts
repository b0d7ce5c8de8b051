/** ffi/stream_server.ts: abstract unix and TCP listeners, peer credentials, timeouts, no SIGPIPE. */
import assert from "node:assert/strict";
import { LibcError } from "../../ffi/libc.ts";
import { SendBuffer, sockaddrBytes, StreamServer } from "../../ffi/stream_server.ts";

const name = () => `nfqlbtest-${Deno.pid}-${Math.random().toString(36).slice(2)}`;

Deno.test("sockaddr bytes: abstract name has no trailing NUL (1.2.0's address length)", () => {
  assert.deepEqual(Array.from(sockaddrBytes({ kind: "unix", name: "ab" })), [1, 0, 0, 97, 98]);
  const v4 = sockaddrBytes({ kind: "tcp", host: "127.0.0.1", port: 0x1234, v6: false });
  assert.deepEqual(Array.from(v4.subarray(0, 8)), [2, 0, 0x12, 0x34, 127, 0, 0, 1]);
  const v6 = sockaddrBytes({ kind: "tcp", host: "::1", port: 80, v6: true });
  assert.equal(v6.length, 28);
  assert.deepEqual([v6[0], v6[2], v6[3], v6[23]], [10, 0, 80, 1]);
});

Deno.test("abstract unix server: accept, peer credentials, request and reply", async () => {
  const n = name();
  const srv = StreamServer.listen({ kind: "unix", name: n }, 128);
  try {
    assert.equal(srv.accept(50), null, "timeout without a client");
    const client = await Deno.connect({ transport: "unix", path: `\0${n}` });
    const conn = srv.accept(1000)!;
    assert.ok(conn !== null);
    assert.deepEqual(conn.peer?.pid, Deno.pid);
    assert.equal(conn.peer?.uid, Deno.uid());
    await client.write(new TextEncoder().encode("action:list\neoc:\n"));
    const buf = new Uint8Array(64);
    const got = conn.recv(buf, 1000);
    assert.equal(new TextDecoder().decode(buf.subarray(0, got)), "action:list\neoc:\n");
    assert.equal(conn.sendNow(new TextEncoder().encode("OK\0")), 3);
    conn.close();
    const reply = new Uint8Array(16);
    const r = await client.read(reply);
    assert.equal(new TextDecoder().decode(reply.subarray(0, r!)), "OK\0");
    assert.equal(await client.read(reply), null, "EOF after the reply");
    client.close();
  } finally {
    srv.close();
  }
});

Deno.test("bind errors: the address in use is reported with strerror", () => {
  const n = name();
  const a = StreamServer.listen({ kind: "unix", name: n }, 1);
  try {
    assert.throws(
      () => StreamServer.listen({ kind: "unix", name: n }, 1),
      (e) => e instanceof LibcError && e.call === "bind" && e.message === "Address already in use",
    );
  } finally {
    a.close();
  }
});

Deno.test("a client that vanished before the reply does not kill the server (no SIGPIPE)", async () => {
  const port = 40000 + (Deno.pid % 20000);
  const srv = StreamServer.listen({ kind: "tcp", host: "127.0.0.1", port, v6: false }, 4);
  try {
    const client = await Deno.connect({ hostname: "127.0.0.1", port });
    const conn = srv.accept(1000)!;
    assert.equal(conn.peer, undefined);
    client.close();
    await new Promise((r) => setTimeout(r, 20));
    const big = new Uint8Array(1 << 20);
    let r = 0;
    for (let i = 0; i < 4 && r >= 0; i++) r = conn.sendNow(big);
    assert.equal(r, -2, "the send fails instead of raising SIGPIPE");
    conn.close();
  } finally {
    srv.close();
  }
});

Deno.test("sendNow: takes what the socket holds without waiting, from an offset, −1 when full", async () => {
  const n = name();
  const srv = StreamServer.listen({ kind: "unix", name: n }, 4);
  const client = await Deno.connect({ transport: "unix", path: `\0${n}` });
  const conn = srv.accept(1000)!;
  try {
    const big = new Uint8Array(4 << 20);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 255;
    // The whole 4 MiB do not fit: the first call takes part, a later one reports a full socket.
    let sent = 0;
    let r = 0;
    while ((r = conn.sendNow(big, sent)) > 0) sent += r;
    assert.equal(r, -1, "a full socket buffer, not an error");
    assert.ok(sent > 0 && sent < big.length, `${sent} bytes taken`);
    // The client reads exactly the bytes sent, in order (the offset is honoured).
    const got = new Uint8Array(sent);
    let at = 0;
    while (at < sent) at += (await client.read(got.subarray(at)))!;
    assert.deepEqual(got, big.subarray(0, sent));
    // From an offset: the rest of a small buffer.
    assert.equal(conn.sendNow(big, big.length - 3), 3);
    const tail = new Uint8Array(3);
    assert.equal(await client.read(tail), 3);
    assert.deepEqual(tail, big.subarray(big.length - 3));
    // The peer gone: −2 (no SIGPIPE).
    client.close();
    assert.equal(conn.sendNow(big, 0), -2);
  } finally {
    conn.close();
    srv.close();
  }
});

Deno.test("SendBuffer: keeps at most max unsent bytes, sends them in order without waiting", async () => {
  const n = name();
  const srv = StreamServer.listen({ kind: "unix", name: n }, 4);
  const client = await Deno.connect({ transport: "unix", path: `\0${n}` });
  const conn = srv.accept(1000)!;
  try {
    const max = 3 << 20;
    const out = new SendBuffer(max);
    // Lines of varied length, numbered, until the buffer refuses one (the socket takes part).
    const all: number[] = [];
    let i = 0;
    for (;;) {
      const line = new TextEncoder().encode(`${i} ${"y".repeat(i % 300)}\n`);
      if (!out.push(line)) break;
      all.push(...line);
      i++;
      if (i % 100 === 0) assert.equal(out.flush(conn), true);
      assert.ok(out.pending <= max);
    }
    assert.ok(out.pending > max - 400, `refused only when nearly full (${out.pending})`);
    // The client reads everything while the buffer is flushed: the same bytes, in order.
    const got: number[] = [];
    const buf = new Uint8Array(65536);
    while (got.length < all.length) {
      assert.equal(out.flush(conn), true);
      const r = await client.read(buf);
      got.push(...buf.subarray(0, r!));
    }
    assert.equal(out.pending, 0);
    assert.deepEqual(got, all);
    client.close();
    assert.equal(out.push(new Uint8Array(10)), true);
    assert.equal(out.flush(conn), false, "the peer is gone");
  } finally {
    conn.close();
    srv.close();
  }
});
