/**
 * An NFQUEUE queue without root: {@link attach} opens `NfQueue.attach` on one end of a unix
 * datagram socketpair whose other end plays the kernel ({@link Kernel}; a worker,
 * `fixtures/fake_kernel_worker.ts`, answers the configuration requests one at a time as they
 * arrive). The messages the kernel sends ({@link answer}, {@link packet}) and a decoder of the
 * verdicts it gets ({@link verdicts}). Used by tests/ffi/nfqueue_attach_test.ts, the packet
 * loop's error tests and bench/packet_bench.ts.
 * @module
 */
import assert from "node:assert/strict";
import { SOCK_DGRAM } from "../ffi/constants.ts";
import { getLibc } from "../ffi/libc.ts";
import { NfQueue, type NfQueueOptions } from "../ffi/nfqueue.ts";
import { closeFd, MSG_DONTWAIT, socketPair } from "../ffi/socket.ts";
import {
  HOST_LE,
  NFQ_TYPE_PACKET,
  NFQ_TYPE_VERDICT,
  NFQ_TYPE_VERDICT_BATCH,
  NFQA_PACKET_HDR,
  NFQA_PAYLOAD,
  NLMSG_ERROR,
} from "../lib/nfqueue/codec.ts";

/** The queue options the fake kernel's messages are made for (queue 7). */
export const OPTS = { queue: 7, mtu: 1500, qlength: 1024, timeoutMs: 20 };

/** An NLMSG_ERROR answer (error 0 = ACK) to request `seq`. */
export function answer(seq: number, error = 0): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(36);
  const v = new DataView(b.buffer);
  v.setUint32(0, b.length, HOST_LE);
  v.setUint16(4, NLMSG_ERROR, HOST_LE);
  v.setUint32(8, seq, HOST_LE);
  v.setInt32(16, -error, HOST_LE);
  v.setUint32(20, 20, HOST_LE); // the echoed request header (length only)
  return b;
}

/** A queued-packet message for packet `id` with a 20-byte IPv4 payload (last byte: id). */
export function packet(id: number): Uint8Array<ArrayBuffer> {
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

/** One datagram holding the packet messages of `ids`, back to back. */
export function packets(...ids: number[]): Uint8Array<ArrayBuffer> {
  const parts = ids.map(packet);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** The kernel's end: write datagrams, read what the queue sent. */
export class Kernel {
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
export const pfAnswers = (e = 0): Uint8Array<ArrayBuffer>[][] =>
  [1, 2, 3, 4].map((s) => [answer(s, e)]);

const WORKER = new URL("./fixtures/fake_kernel_worker.ts", import.meta.url);

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
 * `NfQueue.attach` with a fake kernel answering by `script` (default: every request
 * acknowledged); returns the queue (or the error), the requests the kernel saw and the kernel's
 * end.
 */
export async function attach(
  script: Uint8Array<ArrayBuffer>[][] = [...pfAnswers(), [answer(5)]],
  opts: Partial<NfQueueOptions> = {},
): Promise<{ k: Kernel; q?: NfQueue; error: unknown; requests: Uint8Array[] }> {
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

/** Decoded verdicts of one datagram: [batch, verdict, id, mark]. */
export function verdicts(d: Uint8Array): [boolean, number, number, number][] {
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
