/**
 * The trace server serves only root and the daemon's uid (SO_PEERCRED on unix addresses, the
 * live socket's row of /proc/net/tcp for loopback tcp peers, like the control socket;
 * docs/COMPATIBILITY.md#trace-and-log): uid 65534 gets `Trace refused: ...` and is
 * closed with the mask left alone; root gets the trace. `nfqlb trace` refused by a server
 * prints that line, exits 1 and puts the mask back.
 */
import assert from "node:assert/strict";
import { MASK_WORD, openTraceShm } from "../../daemon/open_trace_shm.ts";
import type { TraceMessage, TraceStart } from "../../daemon/trace_worker.ts";
import { runCli } from "../../testkit/cli.ts";
import { isRoot } from "../../testkit/netns.ts";
import type { SocketAddress } from "../../lib/ccompat/sockaddr.ts";

const ROOT = isRoot();
const NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];

/** Connect to `addr` (as uid 65534 when `nobody`), return what the server sent. */
async function rawClient(addr: SocketAddress, nobody: boolean): Promise<string> {
  const connect = addr.kind === "unix"
    ? "s=socket.socket(socket.AF_UNIX)\ns.connect('\\0'+sys.argv[1])\n"
    : "s=socket.create_connection((sys.argv[1],int(sys.argv[2])))\n";
  const py = "import socket,sys\n" + connect + "s.settimeout(3)\n" +
    "sys.stdout.write(s.recv(4096).decode())\ns.close()\n";
  const args = addr.kind === "unix" ? [addr.name] : [addr.host, String(addr.port)];
  const argv = [...(nobody ? NOBODY : []), "/usr/bin/python3", "-c", py, ...args];
  const r = await new Deno.Command(argv[0], { args: argv.slice(1), stderr: "piped" }).output();
  assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
  return new TextDecoder().decode(r.stdout);
}

/** Whether something listens on `addr` (read without connecting: a client changes the mask). */
function listening(addr: SocketAddress): boolean {
  if (addr.kind === "unix") {
    return Deno.readTextFileSync("/proc/net/unix").includes(` @${addr.name}\n`);
  }
  const port = `:${addr.port.toString(16).toUpperCase().padStart(4, "0")} 00000000:0000 0A `;
  return Deno.readTextFileSync("/proc/net/tcp").includes(port);
}

/** A loopback tcp port nobody uses now. */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

for (const kind of ["unix", "tcp"] as const) {
  Deno.test({
    name:
      `trace server on a ${kind} address: uid 65534 is refused with a line, the mask is untouched; root is served`,
    ignore: !ROOT,
    async fn() {
      const addr: SocketAddress = kind === "unix"
        ? { kind, name: `nfqlb-test-${Deno.pid}-trace-auth` }
        : { kind, host: "127.0.0.1", port: freePort(), v6: false };
      const stop = new SharedArrayBuffer(4);
      const shm = openTraceShm();
      const saved = Atomics.load(shm.words, MASK_WORD);
      const warnings: string[] = [];
      const worker = new Worker(new URL("../../daemon/trace_worker.ts", import.meta.url), {
        type: "module",
      });
      const stopped = new Promise<void>((resolve) => {
        worker.onmessage = (e: MessageEvent<TraceMessage>) => {
          if (e.data.type === "warning") warnings.push(e.data.text);
          else resolve();
        };
      });
      try {
        Atomics.store(shm.words, MASK_WORD, 0x30);
        const start: TraceStart = {
          address: addr,
          addressText: kind === "unix" ? `unix:${(addr as { name: string }).name}` : "tcp",
          rings: [],
          logs: [],
          stop,
        };
        worker.postMessage(start);
        for (let i = 0; i < 200 && !listening(addr); i++) {
          await new Promise((r) => setTimeout(r, 25));
        }
        const who = kind === "unix"
          ? "uid 65534 \\(pid \\d+\\)"
          : "uid 65534 \\(tcp 127\\.0\\.0\\.1:\\d+\\)";
        const refused = await rawClient(addr, true);
        assert.match(refused, new RegExp(`^Trace refused: ${who} is not root or uid 0\\n$`));
        assert.equal(Atomics.load(shm.words, MASK_WORD), 0x30, "mask untouched by the refusal");
        for (let i = 0; i < 3; i++) {
          assert.match(await rawClient(addr, true), /^Trace refused: uid 65534 /, `refusal ${i}`);
        }
        const served = await rawClient(addr, false);
        assert.equal(served, "Trace active, mask=0x00000030\n");
        assert.deepEqual(warnings, []);
      } finally {
        Atomics.store(new Int32Array(stop), 0, 1);
        await stopped;
        worker.terminate();
        Atomics.store(shm.words, MASK_WORD, saved);
        shm.close();
      }
    },
  });
}

Deno.test("nfqlb trace refused by the server: the line on stderr, exit 1, the mask put back", async () => {
  const name = `nfqlb-test-${Deno.pid}-trace-refuser`;
  const line = "Trace refused: uid 1000 (pid 1) is not root or uid 0\n";
  const server = Deno.listen({ transport: "unix", path: `\0${name}` });
  const serving = (async () => {
    const c = await server.accept();
    await c.write(new TextEncoder().encode(line));
    c.close();
  })();
  const shm = openTraceShm();
  const saved = Atomics.load(shm.words, MASK_WORD);
  try {
    Atomics.store(shm.words, MASK_WORD, 0x5);
    const r = await runCli("trace", "--mask=0xff", `--trace_address=unix:${name}`);
    await serving;
    assert.deepEqual(r, { code: 1, out: "Mask=0x000000ff\n", err: line });
    assert.equal(Atomics.load(shm.words, MASK_WORD), 0x5, "mask put back");
  } finally {
    server.close();
    Atomics.store(shm.words, MASK_WORD, saved);
    shm.close();
  }
});
