/**
 * The main thread's handle on the fast-path writer (`--fastpath`,
 * ./fastpath_worker.ts): start it before the queue threads, so the table
 * exists and a start-up failure stops the daemon with a clear message; hand
 * each queue thread its offer ring and the shared channel; forward flow
 * snapshots; stop it after the queue threads.
 * @module
 */
import { LOG_NOTICE, LOG_WARNING, logLine } from "../lib/log/levels.ts";
import { closeFd } from "../ffi/socket.ts";
import type { FlowSnapshot } from "../lib/flow/store.ts";
import { CHANNEL_BYTES } from "../lib/fastpath/channel.ts";
import { F_UP, statusPid, VALUES_BYTES } from "../lib/fastpath/status.ts";
import { unlinkShmIfSame } from "../ffi/shm.ts";
import { fastPathStatusName, openStatusObject } from "./fastpath_wait.ts";
import { OfferRing } from "../lib/fastpath/offer_ring.ts";
import { DaemonError } from "./errors.ts";
import type { Io } from "./io.ts";
import type { DaemonConfig } from "./options.ts";
import type { FastPathMessage, FastPathStart } from "./fastpath_worker.ts";
import { workerUrl } from "./worker_url.ts";

/** Offers a queue thread may have waiting for the writer. */
export const RING_SLOTS = 4096;

/** What a queue thread gets to offer decisions to the fast path. */
export interface FastPathLane {
  readonly ring: SharedArrayBuffer;
  readonly channel: SharedArrayBuffer;
}

/** The fast path could not be set up. */
export class FastPathError extends DaemonError {
  constructor(message: string) {
    super(message);
    this.name = "FastPathError";
  }
}

/** The words shared by the queue threads, the writer and flowlb's control thread. */
export function newFastPathChannel(): SharedArrayBuffer {
  return new SharedArrayBuffer(CHANNEL_BYTES);
}

/** A running writer thread. */
export interface FastPathThread {
  /** The queue thread with lane `i`'s ring and the channel. */
  lane(i: number): FastPathLane;
  /** Forward a flow snapshot (the tables to compare). */
  flows(snapshot: FlowSnapshot): void;
  /** The status values the writer keeps (`F_*` of lib/fastpath/status.ts), for the metrics thread. */
  readonly values: SharedArrayBuffer;
  /** Resolves once the thread has removed the table and stopped (after `stop[0]` is set). */
  readonly stopped: Promise<void>;
}

/**
 * Start the writer when `c.fastpath` is set; resolves once the nftables table
 * exists, rejects with a {@link FastPathError} when it cannot be made.
 */
export async function startFastPath(
  io: Io,
  c: DaemonConfig,
  stop: SharedArrayBuffer,
  flows?: { applied: SharedArrayBuffer; snapshot: FlowSnapshot; version: SharedArrayBuffer },
  channel: SharedArrayBuffer = newFastPathChannel(),
): Promise<FastPathThread | undefined> {
  if (c.fastpath === undefined) return undefined;
  const lanes = c.queueLast - c.queueFirst + 1;
  const rings = Array.from({ length: lanes }, () => OfferRing.create(RING_SLOTS));
  const w = new Worker(workerUrl("fastpath_worker.ts", import.meta.url), {
    type: "module",
    name: "fastpath",
  });
  let ready!: () => void;
  let failed!: (e: Error) => void;
  let stopped!: () => void;
  const isReady = new Promise<void>((res, rej) => [ready, failed] = [res, rej]);
  const done = new Promise<void>((res) => stopped = res);
  let started = false;
  /**
   * The fd of the writer's live nf_tables socket (-1: none), which the writer keeps up to date:
   * closed here if the thread dies, so its table goes too. A word, not messages: a message
   * telling of a new socket could still be queued when the error arrives.
   */
  const fd = new Int32Array(new SharedArrayBuffer(4));
  fd[0] = -1;
  const values = new SharedArrayBuffer(VALUES_BYTES);
  w.onmessage = (e: MessageEvent<FastPathMessage>) => {
    const m = e.data;
    if (m.type === "ready") {
      started = true;
      if (!m.removesByKey) {
        io.err(
          logLine(
            LOG_NOTICE,
            "fastpath: this kernel cannot remove set elements by key without an error for " +
              "missing ones (Linux < 6.3): maps not in use are flushed whole",
          ) + "\n",
        );
      }
      ready();
    } else if (m.type === "warning") io.err(logLine(LOG_WARNING, m.message) + "\n");
    else if (m.type === "notice") io.err(logLine(LOG_NOTICE, m.message) + "\n");
    else if (m.type === "error") {
      if (!started) failed(new FastPathError(m.message));
      else {
        io.err(
          logLine(LOG_WARNING, `${m.message}; the fast path is off, all packets go to the queue`) +
            "\n",
        );
      }
    } else {
      w.terminate();
      stopped();
    }
  };
  w.onerror = (e) => {
    e.preventDefault();
    if (!started) failed(new FastPathError(`fastpath thread: ${e.message}`));
    else {
      io.err(
        logLine(LOG_WARNING, `fastpath thread: ${e.message}; the fast path is off`) + "\n",
      );
    }
    w.terminate();
    // Taken out of the word: the writer closes a socket only if it still finds it there.
    const live = Atomics.exchange(fd, 0, -1);
    if (live >= 0) closeFd(live); // the kernel removes the owned table: every packet is queued
    new Float64Array(values)[F_UP] = 0; // the metrics thread's nfqlb_fastpath_up
    removeOwnStatus(c.fastpath!.table);
    stopped();
  };
  const start: FastPathStart = {
    config: c.fastpath,
    tshm: flows === undefined ? c.tshm : undefined,
    ftShm: c.ftShm,
    rings,
    channel,
    fd: fd.buffer as SharedArrayBuffer,
    values,
    stop,
    applied: flows?.applied,
    version: flows?.version,
    lanes,
    snapshot: flows?.snapshot,
  };
  w.postMessage(start);
  try {
    await isReady;
  } catch (e) {
    w.terminate();
    throw e;
  }
  return {
    lane: (i) => ({ ring: rings[i], channel }),
    flows: (snapshot) => w.postMessage({ type: "flows", snapshot }),
    values,
    stopped: done,
  };
}

/**
 * Remove this process's fast-path status object after its writer thread died: the fast path is
 * off for the daemon's life, and an object left behind (with `up=1` and scans that never come)
 * would make `stats` show a running fast path and every table command wait for it in vain. Only
 * an object naming this process is removed, and only that very object (device and inode).
 */
function removeOwnStatus(table: string): void {
  try {
    const m = openStatusObject(fastPathStatusName(table)); // never one another user may write
    try {
      if (statusPid(m.buffer) === Deno.pid) unlinkShmIfSame(m);
    } finally {
      m.close();
    }
  } catch {
    // none (not created yet, or removed): nothing to do
  }
}
