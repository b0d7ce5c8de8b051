/**
 * ffi/nfqueue.ts without root: `NfQueue.attach` on one end of a unix
 * datagram socketpair whose other end plays the kernel (a worker,
 * testkit/fixtures/fake_kernel_worker.ts, answers each request as it
 * arrives). Checks the requests the queue sends, how it reads the answers,
 * the error texts, and that packets that arrive before the bind's ACK form
 * the first batch without another receive and then get their verdicts like
 * any other packet.
 */
import assert from "node:assert/strict";
import { SOCK_DGRAM } from "../../ffi/constants.ts";
import { getLibc } from "../../ffi/libc.ts";
import { NfQueue, NfQueueError } from "../../ffi/nfqueue.ts";
import { closeFd, MSG_DONTWAIT, socketPair } from "../../ffi/socket.ts";
import {
  HOST_LE,
  NFQ_TYPE_PACKET,
  NFQ_TYPE_VERDICT,
  NFQ_TYPE_VERDICT_BATCH,
  NFQA_PACKET_HDR,
  NFQA_PAYLOAD,
  NLMSG_ERROR,
} from "../../lib/nfqueue/codec.ts";
import {
  bindRequest,
  NFQ_TYPE_CONFIG,
  NFQNL_CFG_CMD_PF_BIND,
  NFQNL_CFG_CMD_PF_UNBIND,
} from "../../lib/nfqueue/config.ts";

const EPERM = 1;
const ENOENT = 2;
const EBUSY = 16;
const OPTS = { queue: 7, mtu: 1500, qlength: 1024, timeoutMs: 20 };

/** An NLMSG_ERROR answer (error 0 = ACK) to request `seq`. */
function answer(seq: number, error = 0): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(36);
  const v = new DataView(b.buffer);
  v.setUint32(0, b.length, HOST_LE);
  v.setUint16(4, NLMSG_ERROR, HOST_LE);
  v.setUint32(8, seq, HOST_LE);
  v.setInt32(16, -error, HOST_LE);
  v.setUint32(20, 20, HOST_LE); // the echoed request header (length only)
  return b;
}

/** A queued-packet message for packet `id` with a 20-byte IPv4 payload. */
function packet(id: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(20 + 12 + 24);
  const v = new DataView(b.buffer);
  v.setUint32(0, b.length, HOST_LE);
  v.setUint16(4, NFQ_TYPE_PACKET, HOST_LE);
  v.setUint16(18, OPTS.queue, false);
  v.setUint16(20, 4 + 7, HOST_LE);
  v.setUint16(22, NFQA_PACKET_HDR, HOST_LE);
  v.setUint32(24, id, false);
  v.setUint16(28, 0x0800, false);
  v.setUint16(32, 4 + 20, HOST_LE);
  v.setUint16(34, NFQA_PAYLOAD, HOST_LE);
  b[36] = 0x45;
  b[36 + 19] = id & 0xff;
  return b;
}

/** The kernel's end: write datagrams, read what the queue sent. */
class Kernel {
  readonly fd: number;
  readonly queueFd: number;
  constructor() {
    [this.queueFd, this.fd] = socketPair(SOCK_DGRAM);
  }
  /** Send datagrams to the queue. */
  write(...datagrams: Uint8Array<ArrayBuffer>[]): void {
    for (const d of datagrams) {
      assert.equal(Number(getLibc().send(this.fd, d, BigInt(d.length), 0)), d.length);
    }
  }
  /** Every datagram the queue has sent so far. */
  read(): Uint8Array[] {
    const out: Uint8Array[] = [];
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = Number(getLibc().recv(this.fd, buf, BigInt(buf.length), MSG_DONTWAIT));
      if (n < 0) return out;
      out.push(buf.slice(0, n));
    }
  }
  close(): void {
    closeFd(this.fd);
  }
}

/** Answers to the four legacy requests (seq 1..4), each with error `e`. */
const pfAnswers = (e = 0) => [1, 2, 3, 4].map((s) => [answer(s, e)]);

const WORKER = new URL("../../testkit/fixtures/fake_kernel_worker.ts", import.meta.url);

/** The next message of type `type` from `w`. */
function next<T>(w: Worker, type: string): Promise<T> {
  return new Promise((resolve) => {
    const on = (e: MessageEvent) => {
      if (e.data.type !== type) return;
      w.removeEventListener("message", on);
      resolve(e.data);
    };
    w.addEventListener("message", on);
  });
}

/**
 * `NfQueue.attach` with a fake kernel answering by `script`; returns the
 * queue (or the error), the requests the kernel saw and the kernel's end.
 */
async function attach(script: Uint8Array<ArrayBuffer>[][], opts = {}) {
  const k = new Kernel();
  const w = new Worker(WORKER, { type: "module" });
  const ready = next(w, "ready");
  w.postMessage({ fd: k.fd, script });
  await ready;
  const done = next<{ requests: Uint8Array[] }>(w, "done");
  let q: NfQueue | undefined;
  let error: unknown;
  try {
    q = NfQueue.attach(k.queueFd, { ...OPTS, ...opts });
  } catch (e) {
    error = e;
  }
  const { requests } = await done;
  w.terminate();
  return { k, q, error, requests };
}

/** nlmsg type, seq and (for config) the command byte and pf of a request. */
function describe(d: Uint8Array) {
  const v = new DataView(d.buffer, d.byteOffset, d.byteLength);
  return {
    type: v.getUint16(4, HOST_LE),
    seq: v.getUint32(8, HOST_LE),
    cmd: d[24],
    pf: v.getUint16(26),
  };
}

/** Decoded verdicts of one datagram: [batch, verdict, id, mark]. */
function verdicts(d: Uint8Array): [boolean, number, number, number][] {
  const v = new DataView(d.buffer, d.byteOffset, d.byteLength);
  const out: [boolean, number, number, number][] = [];
  for (let off = 0; off < d.length;) {
    const len = v.getUint32(off, HOST_LE);
    const type = v.getUint16(off + 4, HOST_LE);
    assert.ok(type === NFQ_TYPE_VERDICT || type === NFQ_TYPE_VERDICT_BATCH);
    out.push([
      type === NFQ_TYPE_VERDICT_BATCH,
      v.getUint32(off + 24),
      v.getUint32(off + 28),
      len === 40 ? v.getUint32(off + 36) : -1,
    ]);
    off += len;
  }
  return out;
}

Deno.test("attach: the requests in order, one answer awaited for each", async () => {
  const { k, q, requests } = await attach([...pfAnswers(), [answer(5)]], { failOpen: true });
  try {
    assert.ok(q !== undefined);
    assert.equal(requests.length, 5);
    assert.deepEqual(requests.slice(0, 4).map(describe), [
      { type: NFQ_TYPE_CONFIG, seq: 1, cmd: NFQNL_CFG_CMD_PF_UNBIND, pf: 2 },
      { type: NFQ_TYPE_CONFIG, seq: 2, cmd: NFQNL_CFG_CMD_PF_BIND, pf: 2 },
      { type: NFQ_TYPE_CONFIG, seq: 3, cmd: NFQNL_CFG_CMD_PF_UNBIND, pf: 10 },
      { type: NFQ_TYPE_CONFIG, seq: 4, cmd: NFQNL_CFG_CMD_PF_BIND, pf: 10 },
    ]);
    assert.deepEqual(requests[4], bindRequest({ ...OPTS, failOpen: true }, 5));
    assert.equal(q.stats.openPackets, 0);
    assert.equal(q.receiveBatch(), 0, "nothing pending, nothing received");
    assert.equal(q.verdictErrors.count, 0);
    assert.deepEqual(k.read(), [], "nothing else sent");
  } finally {
    q?.close();
    k.close();
  }
});

Deno.test("packets before the bind's ACK are the first batch, returned without a receive", async () => {
  const { k, q } = await attach([...pfAnswers(), [packet(1), packet(2), answer(5)]]);
  try {
    assert.ok(q !== undefined);
    assert.equal(q.stats.openPackets, 2);
    k.write(packet(3));
    assert.equal(q.receiveBatch(), 2, "the pending batch only: packet 3 is not received yet");
    assert.deepEqual([0, 1].map((i) => q.id(i)), [1, 2]);
    assert.deepEqual([0, 1].map((i) => q.buffer[q.payloadOffset(i) + 19]), [1, 2]);
    assert.deepEqual([0, 1].map((i) => [q.l3proto(i), q.payloadLength(i)]), [
      [0x0800, 20],
      [0x0800, 20],
    ]);
    q.verdict(0, 77);
    q.verdict(1, 77);
    q.flush();
    assert.equal(q.receiveBatch(), 1);
    assert.equal(q.id(0), 3);
    q.verdict(0, -1);
    q.flush();
    assert.deepEqual(k.read().map(verdicts), [[[true, 1, 2, 77]], [[false, 0, 3, -1]]]);
    assert.equal(q.stats.packets, 3);
    assert.equal(q.stats.batches, 2);
    assert.equal(q.verdictErrors.count, 0);
  } finally {
    q?.close();
    k.close();
  }
});

Deno.test("packets fill every receive slot before the ACK: bound; the late ACK is just counted", async () => {
  const { k, q } = await attach(
    [...pfAnswers(), [packet(1), packet(2), packet(3), answer(5)]],
    { batch: 2 },
  );
  try {
    assert.ok(q !== undefined);
    assert.equal(q.stats.openPackets, 2);
    assert.equal(q.receiveBatch(), 2);
    assert.deepEqual([q.id(0), q.id(1)], [1, 2]);
    q.verdict(0, 5);
    q.verdict(1, 5);
    q.flush();
    const rest: number[] = [];
    for (let k = 0; k < 3; k++) {
      const n = q.receiveBatch();
      for (let i = 0; i < n; i++) {
        rest.push(q.id(i));
        q.verdict(i, 5);
      }
      q.flush();
    }
    assert.deepEqual(rest, [3]);
    assert.equal(q.verdictErrors.count, 0, "an ACK is not an error");
    assert.deepEqual(k.read().map(verdicts), [[[true, 1, 2, 5]], [[false, 1, 3, 5]]]);
  } finally {
    q?.close();
    k.close();
  }
});

Deno.test("answers with errors: the daemon's messages", async () => {
  const cases: [number, number, string][] = [
    [EPERM, EPERM, "queue 7: permission denied (NFQUEUE needs root or CAP_NET_ADMIN)"],
    [0, EPERM, "queue 7 is in use by another process"],
    [0, EBUSY, "queue 7 is in use by another process"],
    [EPERM, ENOENT, "queue 7: NFQNL_CFG_CMD_BIND: No such file or directory"],
  ];
  for (const [pf, bind, message] of cases) {
    const { k, q, error } = await attach([...pfAnswers(pf), [answer(5, bind)]]);
    q?.close();
    k.close();
    assert.ok(error instanceof NfQueueError, String(error));
    assert.equal(error.message, message);
    assert.equal(error.errno, bind);
  }
});
