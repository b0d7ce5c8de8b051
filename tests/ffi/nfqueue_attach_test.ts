/**
 * ffi/nfqueue.ts without root: `NfQueue.attach` on one end of a unix
 * datagram socketpair whose other end plays the kernel (testkit/fake_kernel.ts: a worker
 * answers each request as it arrives). Checks the requests the queue sends, how it reads the answers,
 * the error texts, and that packets that arrive before the bind's ACK form
 * the first batch without another receive and then get their verdicts like
 * any other packet.
 */
import assert from "node:assert/strict";
import { NfQueueError } from "../../ffi/nfqueue.ts";
import {
  bindRequest,
  NFQ_TYPE_CONFIG,
  NFQNL_CFG_CMD_PF_BIND,
  NFQNL_CFG_CMD_PF_UNBIND,
} from "../../lib/nfqueue/config.ts";
import { HOST_LE } from "../../lib/nfqueue/codec.ts";
import { answer, attach, OPTS, packet, pfAnswers, verdicts } from "../../testkit/fake_kernel.ts";

const EPERM = 1;
const ENOENT = 2;
const EBUSY = 16;

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
