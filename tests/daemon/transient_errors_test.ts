/**
 * daemon/transient_errors.ts: a queue thread's transient receive/send errors are counted in its
 * block of `ftshm` (as `nfqlb stats` and the metrics read them) and logged rate-limited; EINTR is
 * counted only.
 */
import assert from "node:assert/strict";
import { EINTR, ENOBUFS, ENOMEM } from "../../ffi/constants.ts";
import { strerror } from "../../ffi/libc.ts";
import {
  countersSize,
  QueueCounters,
  readQueueCounters,
  readSendStuck,
  writeCountersHeader,
} from "../../lib/counters/queue_counters.ts";
import { LOG_NOTICE, LOG_WARNING } from "../../lib/log/levels.ts";
import type { TraceSink } from "../../lib/trace/mask.ts";
import { IO_ERROR_LOG, sendDone, transientErrors } from "../../daemon/transient_errors.ts";
import { SEND_RETRY_LIMIT_MS } from "../../ffi/nfqueue.ts";

function setup(level = LOG_NOTICE) {
  const shm = new ArrayBuffer(countersSize(1));
  writeCountersHeader(shm, 4, 1);
  const counters = new QueueCounters(shm, 0);
  const logs: string[] = [];
  const trace: TraceSink = { mask: 0, level, line: () => {}, log: (t) => logs.push(t) };
  let now = 1000;
  const hook = transientErrors(4, trace, () => counters.counts, () => now);
  const sent = sendDone(() => counters.counts);
  return { shm, logs, hook, sent, advance: (ms: number) => now += ms };
}

Deno.test("transient errors: counted per kind in the queue's block, as stats reads them", () => {
  const { shm, hook } = setup();
  hook("recvmmsg", EINTR);
  hook("recvmmsg", ENOMEM);
  hook("recvmmsg", ENOBUFS);
  hook("recvmmsg", ENOBUFS);
  hook("sendmsg", ENOBUFS);
  hook("sendmsg", EINTR);
  hook("sendmsg", ENOMEM);
  const q = readQueueCounters(shm)!.queues[0];
  assert.deepEqual(
    [q.queue, q.receiveErrors, q.receiveOverruns, q.sendErrors, q.received],
    [4, 2, 2, 3, 0],
  );
});

Deno.test("transient errors: logged at most IO_ERROR_LOG.burst times per call and errno, EINTR not", () => {
  const { logs, hook, advance } = setup();
  hook("recvmmsg", EINTR);
  hook("sendmsg", EINTR);
  assert.deepEqual(logs, [], "a signal is no news");
  const send = `queue 4: sendmsg: ${strerror(ENOMEM)}: the verdicts were not sent; retrying ` +
    `until they are (the packets wait in the queue), for ${SEND_RETRY_LIMIT_MS} ms at most: ` +
    "then the daemon stops";
  for (let i = 0; i < IO_ERROR_LOG.burst + 2; i++) hook("sendmsg", ENOMEM);
  hook("recvmmsg", ENOBUFS);
  assert.deepEqual(logs, [
    ...Array(IO_ERROR_LOG.burst).fill(send),
    `queue 4: recvmmsg: ${strerror(ENOBUFS)}: the socket overran, the kernel dropped queued ` +
    "messages (packets or verdict answers); counted, going on",
  ]);
  logs.length = 0;
  advance(IO_ERROR_LOG.intervalMs);
  hook("sendmsg", ENOMEM);
  assert.deepEqual(logs, [`${send} ... repeated 2 times`, send]);
});

Deno.test("transient errors: below warning level nothing is logged, all is counted", () => {
  // The level is a verbosity: warnings show at LOG_WARNING and above (the default is notice).
  const { shm, logs, hook } = setup(LOG_WARNING - 1);
  hook("recvmmsg", ENOMEM);
  assert.deepEqual(logs, []);
  assert.equal(readQueueCounters(shm)!.queues[0].receiveErrors, 1);
});

Deno.test("transient errors: a failing send marks the queue stuck since its first failure", () => {
  const { shm, hook, sent } = setup();
  hook("recvmmsg", ENOMEM);
  assert.deepEqual(readSendStuck(shm), [], "a receive error is not a stuck send");
  const before = Date.now();
  hook("sendmsg", ENOBUFS);
  const [s] = readSendStuck(shm);
  assert.ok(s.sinceMs >= before && s.sinceMs <= Date.now());
  assert.deepEqual(s, { queue: 4, sinceMs: s.sinceMs, errno: ENOBUFS });
  hook("sendmsg", ENOMEM);
  assert.deepEqual(readSendStuck(shm), [{ queue: 4, sinceMs: s.sinceMs, errno: ENOMEM }]);
  sent();
  assert.deepEqual(readSendStuck(shm), []);
  assert.equal(readQueueCounters(shm)!.queues[0].sendErrors, 2, "still counted");
});
