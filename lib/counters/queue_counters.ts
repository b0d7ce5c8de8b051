/**
 * Per-queue packet counters (docs/COMPATIBILITY.md#fragment-statistics-ftshm, our
 * extension): each queue thread counts into its own block of the `ftshm`
 * object (after the fragment counters), with plain stores and no atomics: a
 * block has one writer. Readers (`nfqlb stats`, the metrics server) sum the
 * blocks. Counts are float64, exact up to 2^53.
 *
 * A block holds the decision counters and a small open-addressing table of
 * fwmark → packets and bytes (the targets' fwmarks; up to {@link FW_SLOTS} of
 * them; a mark not found within 32 slots of its home, e.g. beyond that many
 * marks, is counted in `otherFwmarks`).
 *
 * | offset (from {@link COUNTERS_OFFSET}) | what                                             |
 * |---------------------------------------|--------------------------------------------------|
 * | 0                                     | u32 magic `NQCT` (0x5443514e), u32 layout 1      |
 * | 8                                     | u32 first queue, u32 queue count, u32 fwmark slots, u32 0 |
 * | 24 + q·{@link BLOCK_SIZE}             | queue q's block: 16 float64 counters, then the fwmark table |
 *
 * Three of the 16 are words, not counters: since when the queue's verdicts have not gone out
 * ({@link C_SEND_STUCK_SINCE}) and why ({@link C_SEND_STUCK_ERRNO}), and whether the queue
 * thread holds its queue bound ({@link C_BOUND}), for `/healthz`.
 *
 * @example
 * ```ts
 * import { countersSize, QueueCounters, readQueueCounters, writeCountersHeader } from "./queue_counters.ts";
 * const shm = new ArrayBuffer(countersSize(1));
 * writeCountersHeader(shm, 0, 1);
 * const q = new QueueCounters(shm, 0);
 * q.packet(101, 60); // accepted with fwmark 101, 60 bytes
 * q.packet(-1, 40); // dropped
 * readQueueCounters(shm)?.queues[0].received; // 2
 * ```
 * @module
 */
import { FTSHM_EXT_SIZE } from "../frag/stats.ts";

/** Where the counters start in the `ftshm` object (after the fragment counters, 8-aligned). */
export const COUNTERS_OFFSET = Math.ceil(FTSHM_EXT_SIZE / 8) * 8;
/** Magic of the counters header. */
export const COUNTERS_MAGIC = 0x5443514e;
/** Layout version. */
export const COUNTERS_LAYOUT = 1;
const HEADER_SIZE = 24;
/** Slots of a block's fwmark table. */
export const FW_SLOTS = 256;
/** Slots a fwmark may be looked for in before it counts as "other" (bounds the per-packet cost). */
const MAX_PROBES = 32;
/** Float64 counters at the start of a block. */
const NUM_COUNTERS = 16;

/** Counter indices in a block (the decider adds to {@link C_INVALID}, {@link C_NO_TARGET}, {@link C_NO_FLOW}). */
export const C_RECEIVED = 0;
export const C_ACCEPTED = 1;
export const C_DROPPED = 2;
/** Packets that could not be parsed (dropped). */
export const C_INVALID = 3;
/** Packets whose table had no target (`--notargets_fwmark`). */
export const C_NO_TARGET = 4;
/** flowlb: packets no flow matched (`--nolb_fwmark`). */
export const C_NO_FLOW = 5;
/** Verdicts the kernel refused (NLMSG_ERROR), as the queue reports them. */
export const C_VERDICT_ERRORS = 6;
/** Accepted packets whose fwmark found no slot in the table (more than {@link FW_SLOTS} marks). */
export const C_OTHER_FWMARKS = 7;
/** flowlb: flow tables this queue thread could not map (each then retried every 100 ms). */
export const C_TABLE_OPEN_ERRORS = 8;
/** Receives that failed transiently (EINTR, ENOMEM) and were retried. */
export const C_RECEIVE_ERRORS = 9;
/** Receives that failed with ENOBUFS: the socket overran, the kernel dropped messages. */
export const C_RECEIVE_OVERRUNS = 10;
/** Sends of verdicts that failed transiently (EINTR, ENOBUFS, ENOMEM, EAGAIN) and were retried. */
export const C_SEND_ERRORS = 11;
/**
 * Not a counter: since when (ms since the epoch, `Date.now()`) the send of the queue's current
 * verdicts has been failing, 0 while verdicts go out. `/healthz` reports a queue whose word is set.
 */
export const C_SEND_STUCK_SINCE = 12;
/** Not a counter: the errno of the last failed attempt while {@link C_SEND_STUCK_SINCE} is set. */
export const C_SEND_STUCK_ERRNO = 13;
/**
 * Not a counter: the daemon's pid while its queue thread holds the queue bound (set once its
 * block is mapped, cleared when it stops, if still its own). `/healthz` judges "bound" from it when
 * the kernel's queue list cannot be read (a non-root daemon: `/proc/net/netfilter/nfnetlink_queue`
 * is root's, mode 0440), counting only its own pid: a word left by a daemon that died, or written
 * by another daemon sharing the object, does not make it healthy.
 */
export const C_BOUND = 14;

/** Bytes of one queue's block. */
export const BLOCK_SIZE = 8 * NUM_COUNTERS + 4 * FW_SLOTS + 16 * FW_SLOTS;

/** Size of an `ftshm` object with counters for `queues` queues. */
export function countersSize(queues: number): number {
  return COUNTERS_OFFSET + HEADER_SIZE + queues * BLOCK_SIZE;
}

/** Write the counters header (the blocks are zero in a new object). */
export function writeCountersHeader(shm: ArrayBufferLike, first: number, count: number): void {
  const h = new Uint32Array(shm, COUNTERS_OFFSET, HEADER_SIZE >>> 2);
  h.set([COUNTERS_MAGIC, COUNTERS_LAYOUT, first, count, FW_SLOTS, 0]);
}

/** The offset of block `i` (the i-th queue served). */
function blockOffset(i: number): number {
  return COUNTERS_OFFSET + HEADER_SIZE + i * BLOCK_SIZE;
}

/** The typed-array views of block `index`: its counters, then the fwmark table's columns. */
function blockViews(shm: ArrayBufferLike, index: number) {
  const b = blockOffset(index);
  return {
    counts: new Float64Array(shm, b, NUM_COUNTERS),
    /** fwmark + 1 per slot (0 = free). */
    keys: new Int32Array(shm, b + 8 * NUM_COUNTERS, FW_SLOTS),
    packets: new Float64Array(shm, b + 8 * NUM_COUNTERS + 4 * FW_SLOTS, FW_SLOTS),
    bytes: new Float64Array(shm, b + 8 * NUM_COUNTERS + 12 * FW_SLOTS, FW_SLOTS),
  };
}

/** Slot of fwmark `fw` in a table of {@link FW_SLOTS} (a multiplicative hash). */
function home(fw: number): number {
  return Math.imul(fw, 0x9e3779b1) >>> 24;
}

/** The writer side of one queue's block: used only by that queue's thread. */
export class QueueCounters {
  /** The block's counters; the decider adds its drop reasons here. */
  declare readonly counts: Float64Array;
  /** fwmark + 1 per slot (0 = free). */
  declare private readonly keys: Int32Array;
  declare private readonly packets: Float64Array;
  declare private readonly bytes: Float64Array;

  /** The block of the `index`-th queue served in `shm` (an object of {@link countersSize}). */
  constructor(shm: ArrayBufferLike, index: number) {
    const v = blockViews(shm, index);
    this.counts = v.counts;
    this.keys = v.keys;
    this.packets = v.packets;
    this.bytes = v.bytes;
  }

  /** Count one packet of `len` bytes with verdict value `v` (≥ 0: accepted with fwmark v). */
  packet(v: number, len: number): void {
    const c = this.counts;
    c[C_RECEIVED]++;
    if (v < 0) {
      c[C_DROPPED]++;
      return;
    }
    c[C_ACCEPTED]++;
    const keys = this.keys;
    const k = (v + 1) | 0;
    let s = home(v);
    for (let n = 0; n < MAX_PROBES; n++) {
      const have = keys[s];
      if (have === k || have === 0) {
        if (have === 0) keys[s] = k;
        this.packets[s]++;
        this.bytes[s] += len;
        return;
      }
      s = (s + 1) & (FW_SLOTS - 1);
    }
    c[C_OTHER_FWMARKS]++;
  }
}

/** One queue's counters, as read. */
export interface QueueCounts {
  queue: number;
  received: number;
  accepted: number;
  dropped: number;
  invalid: number;
  noTarget: number;
  noFlow: number;
  verdictErrors: number;
  otherFwmarks: number;
  tableOpenErrors: number;
  receiveErrors: number;
  receiveOverruns: number;
  sendErrors: number;
}

/** Packets and bytes accepted with one fwmark, summed over the queues. */
export interface FwmarkCounts {
  fwmark: number;
  packets: number;
  bytes: number;
}

/** Every queue's counters and the per-fwmark sums, or undefined if the object has none. */
export function readQueueCounters(
  shm: ArrayBufferLike,
): { queues: QueueCounts[]; fwmarks: FwmarkCounts[] } | undefined {
  if (shm.byteLength < COUNTERS_OFFSET + HEADER_SIZE) return undefined;
  const h = new Uint32Array(shm, COUNTERS_OFFSET, HEADER_SIZE >>> 2);
  if (h[0] !== COUNTERS_MAGIC || h[1] !== COUNTERS_LAYOUT || h[4] !== FW_SLOTS) return undefined;
  const first = h[2];
  const count = Math.min(h[3], Math.floor((shm.byteLength - blockOffset(0)) / BLOCK_SIZE));
  const queues: QueueCounts[] = [];
  const marks = new Map<number, FwmarkCounts>();
  for (let i = 0; i < count; i++) {
    const { counts: c, keys, packets, bytes } = blockViews(shm, i);
    queues.push({
      queue: first + i,
      received: c[C_RECEIVED],
      accepted: c[C_ACCEPTED],
      dropped: c[C_DROPPED],
      invalid: c[C_INVALID],
      noTarget: c[C_NO_TARGET],
      noFlow: c[C_NO_FLOW],
      verdictErrors: c[C_VERDICT_ERRORS],
      otherFwmarks: c[C_OTHER_FWMARKS],
      tableOpenErrors: c[C_TABLE_OPEN_ERRORS],
      receiveErrors: c[C_RECEIVE_ERRORS],
      receiveOverruns: c[C_RECEIVE_OVERRUNS],
      sendErrors: c[C_SEND_ERRORS],
    });
    for (let s = 0; s < FW_SLOTS; s++) {
      if (keys[s] === 0) continue;
      const fw = (keys[s] - 1) | 0; // the key of 2^31 − 1 wrapped to −2^31
      const m = marks.get(fw) ?? { fwmark: fw, packets: 0, bytes: 0 };
      m.packets += packets[s];
      m.bytes += bytes[s];
      marks.set(fw, m);
    }
  }
  const fwmarks = [...marks.values()].sort((a, b) => a.fwmark - b.fwmark);
  return { queues, fwmarks };
}

/** A queue whose verdicts have not gone out since `sinceMs` (ms since the epoch). */
export interface SendStuck {
  readonly queue: number;
  readonly sinceMs: number;
  /** The errno of the last failed attempt. */
  readonly errno: number;
}

/**
 * The queues whose send of verdicts is failing now ({@link C_SEND_STUCK_SINCE} set), in queue
 * order; empty when the object has no counters.
 */
export function readSendStuck(shm: ArrayBufferLike): SendStuck[] {
  if (shm.byteLength < COUNTERS_OFFSET + HEADER_SIZE) return [];
  const h = new Uint32Array(shm, COUNTERS_OFFSET, HEADER_SIZE >>> 2);
  if (h[0] !== COUNTERS_MAGIC || h[1] !== COUNTERS_LAYOUT || h[4] !== FW_SLOTS) return [];
  const count = Math.min(h[3], Math.floor((shm.byteLength - blockOffset(0)) / BLOCK_SIZE));
  const out: SendStuck[] = [];
  for (let i = 0; i < count; i++) {
    const c = new Float64Array(shm, blockOffset(i), NUM_COUNTERS);
    const sinceMs = c[C_SEND_STUCK_SINCE];
    if (sinceMs > 0) out.push({ queue: h[2] + i, sinceMs, errno: c[C_SEND_STUCK_ERRNO] });
  }
  return out;
}

/**
 * The queues whose thread in process `pid` says it holds its queue bound ({@link C_BOUND} is
 * `pid`), or undefined when the object has no counters.
 */
export function readBoundQueues(shm: ArrayBufferLike, pid: number): Set<number> | undefined {
  if (shm.byteLength < COUNTERS_OFFSET + HEADER_SIZE) return undefined;
  const h = new Uint32Array(shm, COUNTERS_OFFSET, HEADER_SIZE >>> 2);
  if (h[0] !== COUNTERS_MAGIC || h[1] !== COUNTERS_LAYOUT || h[4] !== FW_SLOTS) return undefined;
  const count = Math.min(h[3], Math.floor((shm.byteLength - blockOffset(0)) / BLOCK_SIZE));
  const out = new Set<number>();
  for (let i = 0; i < count; i++) {
    if (new Float64Array(shm, blockOffset(i), NUM_COUNTERS)[C_BOUND] === pid) out.add(h[2] + i);
  }
  return out;
}

/**
 * The `"queues"` and `"fwmarks"` members `nfqlb stats` prints after the
 * fragment counters (two-space indent, one object per line).
 */
export function formatQueueCounters(c: { queues: QueueCounts[]; fwmarks: FwmarkCounts[] }): string {
  const list = (items: object[]) =>
    items.length === 0
      ? "[]"
      : `[\n${items.map((o) => `    ${JSON.stringify(o)}`).join(",\n")}\n  ]`;
  return `  "queues": ${list(c.queues)},\n  "fwmarks": ${list(c.fwmarks)}`;
}
