/**
 * What a queue thread does with a transient error of its queue socket
 * (docs/COMPATIBILITY.md#receiving-and-verdicts): the queue (`ffi/nfqueue.ts`) retries; this
 * counts it where the packet counters live and says so in the log, a few lines at most.
 * @module
 */
import { EINTR, ENOBUFS } from "../ffi/constants.ts";
import { strerror } from "../ffi/libc.ts";
import { SEND_RETRY_LIMIT_MS, type TransientErrorHook } from "../ffi/nfqueue.ts";
import {
  C_RECEIVE_ERRORS,
  C_RECEIVE_OVERRUNS,
  C_SEND_ERRORS,
  C_SEND_STUCK_ERRNO,
  C_SEND_STUCK_SINCE,
} from "../lib/counters/queue_counters.ts";
import { LOG_WARNING } from "../lib/log/levels.ts";
import { LogRateLimiter } from "../lib/log/rate_limit.ts";
import type { TraceSink } from "../lib/trace/mask.ts";

/** Rate limit of the transient receive/send error lines, per call and errno. */
export const IO_ERROR_LOG = { burst: 5, intervalMs: 10_000 };

/**
 * The queue thread's `onTransientError` (ffi/nfqueue.ts): counts each transient receive or send
 * failure of queue `queue` into `counts()` (its block of `ftshm`, once mapped) and logs it through
 * `trace.log` at warning level, rate-limited per call and errno ({@link IO_ERROR_LOG}); EINTR (a
 * signal) is only counted. A failed send also sets the block's "send stuck since" word (the wall
 * clock `Date.now()` of the first failure; see {@link sendDone}) and its errno, which `/healthz`
 * reports. `now` is the clock of the rate limit in ms.
 */
export function transientErrors(
  queue: number,
  trace: TraceSink,
  counts: () => Float64Array | undefined,
  now: () => number = () => performance.now(),
): TransientErrorHook {
  const limiter = new LogRateLimiter(IO_ERROR_LOG);
  return (call, e) => {
    const c = counts();
    const receive = call === "recvmmsg";
    if (c !== undefined) {
      c[receive ? (e === ENOBUFS ? C_RECEIVE_OVERRUNS : C_RECEIVE_ERRORS) : C_SEND_ERRORS]++;
      if (!receive) {
        if (c[C_SEND_STUCK_SINCE] === 0) c[C_SEND_STUCK_SINCE] = Date.now();
        c[C_SEND_STUCK_ERRNO] = e;
      }
    }
    if (e === EINTR || (trace.level ?? 0) < LOG_WARNING) return;
    const what = receive
      ? e === ENOBUFS
        ? "the socket overran, the kernel dropped queued messages (packets or verdict answers); " +
          "counted, going on"
        : "retrying"
      : "the verdicts were not sent; retrying until they are (the packets wait in the queue), " +
        `for ${SEND_RETRY_LIMIT_MS} ms at most: then the daemon stops`;
    const line = `queue ${queue}: ${call}: ${strerror(e)}: ${what}`;
    for (const l of limiter.offer(`${call} ${e}`, line, now())) trace.log?.(l);
  };
}

/**
 * The queue thread's `onSendDone` (ffi/nfqueue.ts): the verdicts that failed to go out went out;
 * clears the "send stuck since" word of the queue's block in `counts()`.
 */
export function sendDone(counts: () => Float64Array | undefined): () => void {
  return () => {
    const c = counts();
    if (c === undefined) return;
    c[C_SEND_STUCK_SINCE] = 0;
    c[C_SEND_STUCK_ERRNO] = 0;
  };
}
