/**
 * The trace thread never waits for its client (daemon/trace_worker.ts): a client that stops
 * reading is sent what its socket takes, up to 4 MiB more are kept, and then it is closed; the
 * thread goes on draining the rings and stops when asked. (It used to block in `send` for good:
 * the rings filled, and the daemon could not stop while such a client was attached.)
 */
import assert from "node:assert/strict";
import { MASK_WORD, openTraceShm } from "../../daemon/open_trace_shm.ts";
import type { TraceMessage, TraceStart } from "../../daemon/trace_worker.ts";
import { TraceRing } from "../../lib/trace/ring.ts";

/** Resolve `p`, or reject after `ms` with `what`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

Deno.test({
  name: "trace server: a client that does not read is closed once far behind; stop is not held",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const name = `nfqlb-test-${Deno.pid}-${Math.random().toString(36).slice(2)}-trace-slow`;
    const stop = new SharedArrayBuffer(4);
    const ringBuf = TraceRing.create(1 << 16);
    const ring = new TraceRing(ringBuf);
    const shm = openTraceShm();
    const saved = Atomics.load(shm.words, MASK_WORD);
    const worker = new Worker(new URL("../../daemon/trace_worker.ts", import.meta.url), {
      type: "module",
    });
    const stopped = new Promise<void>((resolve) => {
      worker.onmessage = (e: MessageEvent<TraceMessage>) => {
        if (e.data.type === "stopped") resolve();
      };
    });
    let client: Deno.UnixConn | null = null;
    try {
      const start: TraceStart = {
        address: { kind: "unix", name },
        addressText: `unix:${name}`,
        rings: [ringBuf],
        logs: [],
        stop,
      };
      worker.postMessage(start);
      for (let i = 0; i < 400; i++) {
        if (Deno.readTextFileSync("/proc/net/unix").includes(` @${name}\n`)) break;
        await new Promise((r) => setTimeout(r, 25));
      }
      client = await Deno.connect({ transport: "unix", path: `\0${name}` });
      const first = new Uint8Array(256);
      const n = await client.read(first);
      assert.match(new TextDecoder().decode(first.subarray(0, n!)), /^Trace active, mask=/);

      // The client reads no more. Lines keep coming: 8 MiB, twice what is kept for it.
      const line = "x".repeat(199);
      const total = 8 << 20;
      let written = 0;
      let idleSince = Date.now();
      while (written < total && Date.now() - idleSince < 5000) {
        if (ring.write(line)) {
          written += 200;
          idleSince = Date.now();
        } else {
          await new Promise((r) => setTimeout(r, 1)); // the ring is full: let the thread drain
        }
      }
      assert.ok(written >= total, `the trace thread stopped draining its ring at ${written} bytes`);

      // The client is closed: it reads what its socket holds, then EOF — far less than sent.
      const buf = new Uint8Array(65536);
      let got = 0;
      await within(
        (async () => {
          for (;;) {
            const r = await client!.read(buf);
            if (r === null) return;
            got += r;
          }
        })(),
        20_000,
        "EOF for the slow client",
      );
      assert.ok(got < total, `${got} of ${total} bytes`);

      Atomics.store(new Int32Array(stop), 0, 1);
      await within(stopped, 10_000, "the trace thread's stop");
    } finally {
      client?.close(); // unblocks a thread stuck in send, so that it can stop
      Atomics.store(new Int32Array(stop), 0, 1);
      await within(stopped, 10_000, "stop after the cleanup").catch(() => {});
      worker.terminate();
      Atomics.store(shm.words, MASK_WORD, saved);
      shm.close();
    }
  },
});
