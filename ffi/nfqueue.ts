/**
 * One NFQUEUE queue on a netlink socket this module owns: the syscalls and
 * buffers only (docs/COMPATIBILITY.md#nfqueue). The messages come from
 * `lib/nfqueue/` (config requests, packet parsing, verdict coalescing);
 * the receive → decide → verdict loop is `daemon/packet_loop.ts`.
 *
 * Open ({@link NfQueue.open}):
 * 1. `socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER)`, bound
 *    with port id 0 (the kernel assigns one); NETLINK_NO_ENOBUFS, SO_RCVBUF
 *    (set only if the requested size is larger, then read back) and
 *    SO_RCVTIMEO.
 * 2. NFQNL_CFG_CMD_PF_UNBIND and PF_BIND for AF_INET and AF_INET6, one
 *    request (with NLM_F_ACK) per datagram, each answer awaited. They are
 *    no-ops since Linux 3.8 but 1.2.0 sends them, and they still need
 *    CAP_NET_ADMIN, which tells "no privilege" from "queue in use".
 * 3. One request binds the queue and sets copy mode (COPY_PACKET, range =
 *    mtu), max length and flags (F_GSO, F_FAIL_OPEN on request); the kernel
 *    handles all of it in one call.
 *
 * Every answer (NLMSG_ERROR: 0 = ACK, else −errno) is read with the data
 * plane's own `recvmmsg` and `parseDatagram`. Packets the kernel queues
 * between the bind and its ACK reach the socket before the ACK; they are
 * parsed into the packet table like any batch and stay there: the first
 * {@link NfQueue.receiveBatch} returns them without a new receive, so the
 * packet loop decides them first. Nothing is stashed or re-queued. If they
 * fill every receive slot before the ACK arrives, the bind has succeeded
 * (only a bound queue sends packets) and the ACK is read later by the data
 * plane, which counts it and moves on.
 *
 * Data plane: one `recvmmsg` fetches up to `batch` datagrams into
 * preallocated `mtu + 2048` byte slots, parsed into preallocated arrays;
 * verdicts are written back to back into one buffer (runs of equal verdicts
 * coalesced, `lib/nfqueue/verdict_runs.ts`) and sent with one `sendmsg` per
 * batch.
 *
 * Transient errors (docs/COMPATIBILITY.md#differences D42): a receive that fails with EINTR or
 * ENOMEM, or ENOBUFS (the socket overran: the kernel dropped messages), counts it and returns no
 * packet (after ENOMEM, a pause of {@link RECEIVE_RETRY_MS}), so the loop goes round again; a
 * `sendmsg` of verdicts that fails with EINTR, ENOBUFS, ENOMEM or EAGAIN is retried (pausing 1,
 * 2, 4 … up to {@link SEND_RETRY_MAX_MS} ms between attempts) until it succeeds, the stop flag
 * is set, or it has failed for {@link SEND_RETRY_LIMIT_MS}: then it is fatal (NfQueueError naming
 * the errno and how long it was retried; the daemon stops and its supervisor restarts it, as
 * before retries existed). Each failure is counted in {@link NfQueueStats} and reported to
 * `onTransientError`; a send that goes out after failures is reported to `onSendDone`. Any other
 * errno is fatal at once: LibcError. The symbols are looked up in `getLibc()` at every call,
 * which is where tests put a failing layer (`testkit/failing_libc.ts`).
 *
 * Wake: {@link QueueWaker} sends a bare NLMSG_NOOP from a netlink socket of its own to a
 * queue socket's {@link NfQueue.portId}; the blocked `recvmmsg` returns at once with no
 * packet (the codec counts the message as `other`), so the loop looks at its stop flag and
 * its flow version without waiting for the receive timeout. Nothing changes on the packet
 * path. Unicast between user sockets on NETLINK_NETFILTER needs CAP_NET_ADMIN, which the
 * queue needs anyway.
 *
 * Close: only `close(fd)`. When a netlink socket is released the kernel
 * destroys the queues bound to it (and drops the packets still queued),
 * which is what an explicit NFQNL_CFG_CMD_UNBIND would do; closing needs no
 * round trip while packets may still be arriving, and it is the same path
 * the kernel takes when the process dies.
 * @module
 */

import {
  AF_INET,
  AF_INET6,
  AF_NETLINK,
  EAGAIN,
  EBUSY,
  EINTR,
  ENOBUFS,
  ENOMEM,
  EPERM,
  NETLINK_NETFILTER,
} from "./constants.ts";
import { errno, getLibc, LibcError, strerror } from "./libc.ts";
import {
  closeFd,
  getIntOption,
  initMmsghdrs,
  initSendMsghdr,
  IOVEC_SIZE,
  MMSGHDR_OFF_LEN,
  MMSGHDR_SIZE,
  MSG_DONTWAIT,
  MSG_TRUNC,
  MSG_WAITFORONE,
  MSGHDR_OFF_FLAGS,
  MSGHDR_SIZE,
  NETLINK_NO_ENOBUFS,
  openNetlinkSocket,
  setIntOption,
  setReceiveTimeout,
  setSendLength,
  SO_RCVBUF,
  SOL_NETLINK,
  SOL_SOCKET,
} from "./socket.ts";
import {
  HOST_LE,
  MIN_PACKET_MSG_LEN,
  NetlinkBuffer,
  PacketTable,
  parseDatagram,
  VerdictBuffer,
  wakeMessage,
} from "../lib/nfqueue/codec.ts";
import {
  bindRequest,
  commandRequest,
  NFQNL_CFG_CMD_PF_BIND,
  NFQNL_CFG_CMD_PF_UNBIND,
} from "../lib/nfqueue/config.ts";
import { type RcvbufInfo, requestedRcvbuf } from "../lib/nfqueue/rcvbuf.ts";
import { type VerdictCounters, VerdictRuns } from "../lib/nfqueue/verdict_runs.ts";

export type { RcvbufInfo } from "../lib/nfqueue/rcvbuf.ts";

/** Extra bytes per receive slot beyond the MTU. */
export const RX_SLOT_EXTRA = 2048;
/** Default number of datagrams per `recvmmsg`. */
export const DEFAULT_BATCH = 32;
/** Default SO_RCVTIMEO: how often a blocked receive loop looks at its stop flag. */
export const DEFAULT_TIMEOUT_MS = 200;
/** Size of the verdict send buffer (flushed early when full). */
const TX_SIZE = 16384;
/** SO_RCVTIMEO while waiting for the answer to a config request. */
const CONFIG_POLL_MS = 250;
/** Longest wait for the answer to a config request (the kernel answers synchronously). */
const CONFIG_WAIT_MS = 5000;

/** Pause after a receive failed with ENOMEM (the loop then goes round again). */
export const RECEIVE_RETRY_MS = 5;
/** Longest pause between two attempts of a `sendmsg` that failed transiently. */
export const SEND_RETRY_MAX_MS = 100;
/**
 * How long the `sendmsg` of one verdict datagram is retried at most (from its first failure):
 * then the failure is fatal. Meanwhile the queue's packets wait for their verdicts, so a send
 * that never goes through must end the daemon (its supervisor restarts it) rather than stall the
 * queue for ever.
 */
export const SEND_RETRY_LIMIT_MS = 5000;

/**
 * Told of each transient failure of the data plane's `recvmmsg` or `sendmsg` (errno), which was
 * counted and is retried. Runs on the queue's thread, off the per-packet path.
 */
export type TransientErrorHook = (call: "recvmmsg" | "sendmsg", errno: number) => void;

/** Size of `struct sockaddr_nl` { u16 family, u16 pad, u32 pid, u32 groups }. */
const SOCKADDR_NL_SIZE = 12;
/** Offset of `nl_pid` (the port id) in `struct sockaddr_nl`. */
const SOCKADDR_NL_OFF_PID = 4;

/**
 * The netlink port id `fd` is bound to (`getsockname`), or 0 when `fd` is not a netlink
 * socket (e.g. a socketpair end in tests). Throws LibcError on failure.
 */
export function netlinkPortId(fd: number): number {
  const sa = new Uint8Array(SOCKADDR_NL_SIZE);
  const len = new Uint32Array([SOCKADDR_NL_SIZE]);
  if (getLibc().getsockname(fd, sa, new Uint8Array(len.buffer)) !== 0) {
    throw new LibcError("getsockname", errno());
  }
  const v = new DataView(sa.buffer);
  if (v.getUint16(0, HOST_LE) !== AF_NETLINK) return 0;
  return v.getUint32(SOCKADDR_NL_OFF_PID, HOST_LE);
}

/**
 * Wakes queue threads blocked in their receive (see the module comment): one netlink socket
 * of its own, one 16-byte message per wake. Used off the packet path (the main thread).
 */
export class QueueWaker {
  readonly #fd: number;
  readonly #msg = wakeMessage();
  readonly #addr = new Uint8Array(SOCKADDR_NL_SIZE);
  readonly #addrView = new DataView(this.#addr.buffer);
  #closed = false;

  /** Open the socket. Throws LibcError. */
  constructor() {
    this.#fd = openNetlinkSocket(NETLINK_NETFILTER);
    this.#addrView.setUint16(0, AF_NETLINK, HOST_LE);
  }

  /**
   * Send the wake message to port id `portId` (0 is the kernel: ignored). Returns the errno
   * of a failed send (e.g. ECONNREFUSED when the socket has closed), 0 on success.
   */
  wake(portId: number): number {
    if (this.#closed || portId === 0) return 0;
    this.#addrView.setUint32(SOCKADDR_NL_OFF_PID, portId >>> 0, HOST_LE);
    const m = this.#msg;
    for (;;) {
      const r = getLibc().sendto(
        this.#fd,
        m,
        BigInt(m.length),
        MSG_DONTWAIT,
        this.#addr,
        SOCKADDR_NL_SIZE,
      );
      if (r >= 0) return 0;
      const e = errno();
      if (e !== EINTR) return e;
    }
  }

  /** Close the socket. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeFd(this.#fd);
  }
}

/** A failure to set up or run a queue; `message` is one line, `errno` 0 if none. */
export class NfQueueError extends Error {
  /** errno behind the failure, 0 if not applicable. */
  readonly errno: number;
  /** A failure described by `message`, caused by errno `e` (0 if none). */
  constructor(message: string, e: number) {
    super(message);
    this.name = "NfQueueError";
    this.errno = e;
  }
}

/** Options of {@link NfQueue.open}. */
export interface NfQueueOptions {
  /** Queue number, 0..65535. */
  queue: number;
  /** Copy range and receive-slot size basis (slot = mtu + 2048). */
  mtu: number;
  /** Kernel queue max length (`--qlength`). */
  qlength: number;
  /** Set NFQA_CFG_F_FAIL_OPEN: accept packets instead of dropping them when the queue is full. */
  failOpen?: boolean;
  /** Datagrams per `recvmmsg` (default 32). */
  batch?: number;
  /** SO_RCVTIMEO in ms (default 200, 0 = block): the longest `receiveBatch` blocks. */
  timeoutMs?: number;
  /**
   * Send one batch verdict for a run of consecutive packets with the same
   * verdict and mark (default true); false sends one message per packet.
   */
  batchVerdicts?: boolean;
  /** `[0]` ≠ 0 ends the retries of a failing `sendmsg` (the daemon stops); default: never. */
  stop?: Int32Array;
  /** Told of each transient receive or send failure (counted, retried); default: nothing. */
  onTransientError?: TransientErrorHook;
  /** Told when a send of verdicts that failed transiently has gone out; default: nothing. */
  onSendDone?: () => void;
  /**
   * How long a failing send of verdicts is retried before it is fatal, in ms (default
   * {@link SEND_RETRY_LIMIT_MS}; tests use less).
   */
  sendRetryLimitMs?: number;
}

/** Cumulative counters of one queue. */
export interface NfQueueStats extends VerdictCounters {
  /** recvmmsg calls that returned data (plus the batch received while opening). */
  batches: number;
  /** Datagrams received. */
  datagrams: number;
  /** Packet messages parsed. */
  packets: number;
  /** Largest number of datagrams returned by one recvmmsg. */
  maxBatch: number;
  /** sendmsg calls (one datagram each). */
  sends: number;
  /** Datagrams truncated by the kernel (MSG_TRUNC). */
  truncated: number;
  /** ENOBUFS from recvmmsg (the socket overran: the kernel dropped messages). */
  enobufs: number;
  /** recvmmsg failures retried: EINTR, ENOMEM. */
  receiveErrors: number;
  /** sendmsg failures retried: EINTR, ENOBUFS, ENOMEM, EAGAIN. */
  sendErrors: number;
  /** Verdict datagrams given up because the stop flag was set while their send was retried. */
  sendsAbandoned: number;
  /** Packets that arrived before the bind's ACK (the first batch). */
  openPackets: number;
}

function checkInt(name: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`${name} must be an integer in ${min}..${max}, got ${v}`);
  }
}

/** The options with their defaults; RangeError for invalid values. */
function checkOptions(opts: NfQueueOptions): Required<NfQueueOptions> {
  const o: Required<NfQueueOptions> = {
    queue: opts.queue,
    mtu: opts.mtu,
    qlength: opts.qlength,
    failOpen: opts.failOpen ?? false,
    batch: opts.batch ?? DEFAULT_BATCH,
    timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    batchVerdicts: opts.batchVerdicts ?? true,
    stop: opts.stop ?? new Int32Array(1),
    onTransientError: opts.onTransientError ?? (() => {}),
    onSendDone: opts.onSendDone ?? (() => {}),
    sendRetryLimitMs: opts.sendRetryLimitMs ?? SEND_RETRY_LIMIT_MS,
  };
  checkInt("queue", o.queue, 0, 65535);
  checkInt("mtu", o.mtu, 1, 65535);
  checkInt("qlength", o.qlength, 1, 0xffffffff);
  checkInt("batch", o.batch, 1, 1024);
  checkInt("timeoutMs", o.timeoutMs, 0, 3600_000);
  checkInt("sendRetryLimitMs", o.sendRetryLimitMs, 0, 3600_000);
  return o;
}

/** A failure of a socket call as NfQueueError (`queue N: <call>: <strerror>`); others as they are. */
function queueError(queue: number, e: unknown): unknown {
  if (e instanceof LibcError) {
    return new NfQueueError(`queue ${queue}: ${e.call}: ${e.message}`, e.errno);
  }
  return e;
}

/** One bound NFQUEUE queue with its netlink socket and batch buffers. */
export class NfQueue {
  /** Queue number. */
  readonly queue: number;
  /** MTU (copy range). */
  readonly mtu: number;
  /** Kernel queue max length. */
  readonly qlength: number;
  /** Datagrams per receive call. */
  readonly batch: number;
  /** SO_RCVBUF actual and requested values. */
  readonly rcvbuf: RcvbufInfo;
  /** The netlink socket. */
  readonly fd: number;
  /** The socket's netlink port id, the address {@link QueueWaker.wake} sends to (0: none). */
  readonly portId: number;
  /** Cumulative counters. */
  readonly stats: NfQueueStats = {
    batches: 0,
    datagrams: 0,
    packets: 0,
    maxBatch: 0,
    verdicts: 0,
    verdictMessages: 0,
    batchVerdicts: 0,
    sends: 0,
    truncated: 0,
    enobufs: 0,
    receiveErrors: 0,
    sendErrors: 0,
    sendsAbandoned: 0,
    openPackets: 0,
  };
  /** Receive buffer: `batch` slots of `mtu + 2048` bytes; payload offsets index it. */
  readonly buffer: Uint8Array;

  private readonly slot: number;
  private readonly rx: NetlinkBuffer;
  /** The iovecs `vec` points to (kept referenced: the kernel reads them on every receive). */
  private readonly iov: Uint8Array;
  private readonly vec: Uint8Array;
  private readonly vecView: DataView;
  private readonly table: PacketTable;
  private readonly tx: VerdictBuffer;
  private readonly runs: VerdictRuns;
  private readonly txMsg: Uint8Array;
  private readonly txIovView: DataView;
  /** `[0]` ≠ 0: give up retrying a send. */
  private readonly stop: Int32Array;
  private readonly onTransientError: TransientErrorHook;
  private readonly onSendDone: () => void;
  private readonly sendRetryLimitMs: number;
  /** Waited on (never notified) for the pauses between retries. */
  private readonly pause = new Int32Array(new SharedArrayBuffer(4));
  /** Datagrams received while opening and not yet returned as a batch (0: none). */
  private pending = 0;
  private closed = false;

  private constructor(opts: Required<NfQueueOptions>, fd: number, rcvbuf: RcvbufInfo) {
    this.queue = opts.queue;
    this.mtu = opts.mtu;
    this.qlength = opts.qlength;
    this.batch = opts.batch;
    this.fd = fd;
    this.stop = opts.stop;
    this.onTransientError = opts.onTransientError;
    this.onSendDone = opts.onSendDone;
    this.sendRetryLimitMs = opts.sendRetryLimitMs;
    this.portId = netlinkPortId(fd);
    this.rcvbuf = rcvbuf;
    // mtu + 2048 bytes per datagram, rounded up to 8 so that every slot is aligned.
    this.slot = (opts.mtu + RX_SLOT_EXTRA + 7) & ~7;
    // Explicit ArrayBuffers: off-heap backing stores whose addresses never change,
    // as required for the pointers stored in the iovec / mmsghdr arrays.
    this.buffer = new Uint8Array(new ArrayBuffer(this.slot * this.batch));
    this.rx = new NetlinkBuffer(this.buffer);
    this.iov = new Uint8Array(new ArrayBuffer(IOVEC_SIZE * this.batch));
    this.vec = new Uint8Array(new ArrayBuffer(MMSGHDR_SIZE * this.batch));
    this.vecView = new DataView(this.vec.buffer);
    initMmsghdrs(this.vec, this.iov, this.buffer, this.slot, this.batch);
    // Enough entries for the densest possible datagrams: never PARSE_TABLE_FULL.
    this.table = new PacketTable(this.batch * Math.floor(this.slot / MIN_PACKET_MSG_LEN));
    this.tx = new VerdictBuffer(TX_SIZE, this.queue);
    this.runs = new VerdictRuns(this.tx, opts.batchVerdicts, this.stats, () => this.send());
    this.txMsg = new Uint8Array(new ArrayBuffer(MSGHDR_SIZE));
    // The DataView keeps the iovec's buffer referenced.
    const txIov = new Uint8Array(new ArrayBuffer(IOVEC_SIZE));
    this.txIovView = new DataView(txIov.buffer);
    initSendMsghdr(this.txMsg, txIov, this.tx.bytes);
  }

  /**
   * Open a netlink socket, bind queue `opts.queue` to it and configure it.
   * Throws RangeError for invalid options, NfQueueError with a one-line
   * message otherwise: no privilege, queue owned by another process, or a
   * failing socket call or request (`queue N: <call>: <strerror>`).
   */
  static open(opts: NfQueueOptions): NfQueue {
    const o = checkOptions(opts);
    let fd = -1;
    try {
      fd = openNetlinkSocket(NETLINK_NETFILTER);
      setIntOption(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, 1);
      const requested = requestedRcvbuf(o.qlength, o.mtu);
      if (requested > getIntOption(fd, SOL_SOCKET, SO_RCVBUF)) {
        setIntOption(fd, SOL_SOCKET, SO_RCVBUF, requested);
      }
      const rcvbuf = { actual: getIntOption(fd, SOL_SOCKET, SO_RCVBUF) >>> 0, requested };
      return NfQueue.start(fd, o, rcvbuf);
    } catch (e) {
      if (fd >= 0) closeFd(fd);
      throw queueError(o.queue, e);
    }
  }

  /**
   * Steps 2 and 3 of {@link NfQueue.open} over `fd`, a connected datagram
   * socket whose peer answers like the kernel (tests use one end of a
   * socketpair); the socket options of step 1 other than SO_RCVTIMEO are
   * left alone and `rcvbuf` is reported as 0 (0). Takes ownership of `fd`
   * (closed on failure). Throws as {@link NfQueue.open}.
   */
  static attach(fd: number, opts: NfQueueOptions): NfQueue {
    const o = checkOptions(opts);
    try {
      return NfQueue.start(fd, o, { actual: 0, requested: 0 });
    } catch (e) {
      closeFd(fd);
      throw queueError(o.queue, e);
    }
  }

  /** Configure the queue on `fd` with a short receive timeout, then set the final one. */
  private static start(fd: number, o: Required<NfQueueOptions>, rcvbuf: RcvbufInfo): NfQueue {
    setReceiveTimeout(fd, CONFIG_POLL_MS);
    const q = new NfQueue(o, fd, rcvbuf);
    q.configure(o);
    setReceiveTimeout(fd, o.timeoutMs);
    return q;
  }

  /** Steps 2 and 3 of the open (see the module comment). */
  private configure(o: Required<NfQueueOptions>): void {
    // Legacy per-family handler binding, queue 0 as 1.2.0 sends it: answers only
    // tell a privilege problem (EPERM) from a busy queue.
    let seq = 0;
    let pfErrno = 0;
    const legacy: [number, string][] = [
      [NFQNL_CFG_CMD_PF_UNBIND, "NFQNL_CFG_CMD_PF_UNBIND"],
      [NFQNL_CFG_CMD_PF_BIND, "NFQNL_CFG_CMD_PF_BIND"],
    ];
    for (const pf of [AF_INET, AF_INET6]) {
      for (const [cmd, call] of legacy) {
        const e = this.request(commandRequest(0, cmd, pf, ++seq), call);
        if (e !== 0 && pfErrno === 0) pfErrno = e;
      }
    }
    const e = this.request(bindRequest(o, ++seq), "NFQNL_CFG_CMD_BIND");
    if (e !== 0) {
      if (e === EPERM && pfErrno === EPERM) {
        throw new NfQueueError(
          `queue ${o.queue}: permission denied (NFQUEUE needs root or CAP_NET_ADMIN)`,
          e,
        );
      }
      if (e === EPERM || e === EBUSY) {
        throw new NfQueueError(`queue ${o.queue} is in use by another process`, e);
      }
      throw new NfQueueError(`queue ${o.queue}: NFQNL_CFG_CMD_BIND: ${strerror(e)}`, e);
    }
    // The answers are not verdict errors.
    this.table.errors = 0;
    this.table.lastErrno = 0;
    this.stats.openPackets = this.table.count;
    // Only the ACK arrived: nothing for the first batch.
    if (this.table.count === 0) this.pending = 0;
  }

  /**
   * Send one config request and read datagrams into the free receive slots
   * until its answer arrives; returns the answer's errno (0 = ACK).
   */
  private request(msg: Uint8Array<ArrayBuffer>, call: string): number {
    const t = this.table;
    // Slots that hold no packet may be reused (before the bind, all of them).
    if (t.count === 0) this.pending = 0;
    for (;;) {
      const r = Number(getLibc().send(this.fd, msg, BigInt(msg.length), 0));
      if (r >= 0) break;
      const e = errno();
      if (e !== EINTR) throw new LibcError("send", e);
    }
    const acks = t.acks;
    const errors = t.errors;
    const deadline = Date.now() + CONFIG_WAIT_MS;
    for (;;) {
      // Packets fill every slot: only a bound queue sends them, so the bind succeeded.
      if (this.pending >= this.batch && t.count > 0) return 0;
      // Slots full of datagrams without packets (stray answers): nothing to keep, reuse them.
      if (this.pending >= this.batch) this.pending = 0;
      const n = this.receiveInto(this.pending);
      this.pending += n;
      if (t.errors > errors) return t.lastErrno;
      if (t.acks > acks) return 0;
      if (n === 0 && Date.now() > deadline) {
        throw new NfQueueError(`queue ${this.queue}: ${call}: no answer from the kernel`, 0);
      }
    }
  }

  /**
   * One `recvmmsg` into slots `first..batch-1`, blocking up to the receive
   * timeout for the first datagram; parses what arrived into the packet
   * table (appending). Returns the number of datagrams, 0 on timeout or a
   * transient error (counted; see the module comment). Throws LibcError on a
   * fatal receive error.
   */
  private receiveInto(first: number, flags = MSG_WAITFORONE): number {
    const vec = first === 0 ? this.vec : this.vec.subarray(first * MMSGHDR_SIZE);
    const n = getLibc().recvmmsg(this.fd, vec, this.batch - first, flags, null);
    if (n <= 0) return n === 0 ? 0 : this.receiveFailed(errno());
    const vv = this.vecView;
    const s = this.stats;
    for (let k = first; k < first + n; k++) {
      const m = k * MMSGHDR_SIZE;
      let len = vv.getUint32(m + MMSGHDR_OFF_LEN, HOST_LE);
      if ((vv.getInt32(m + MSGHDR_OFF_FLAGS, HOST_LE) & MSG_TRUNC) !== 0) s.truncated++;
      if (len > this.slot) len = this.slot;
      parseDatagram(this.rx, k * this.slot, len, this.table);
    }
    s.datagrams += n;
    return n;
  }

  /** A failed receive: 0 after a timeout or a transient error (counted), else LibcError. */
  private receiveFailed(e: number): number {
    if (e === EAGAIN) return 0; // the receive timeout
    if (e === ENOBUFS) this.stats.enobufs++;
    else if (e === EINTR || e === ENOMEM) this.stats.receiveErrors++;
    else throw new LibcError("recvmmsg", e);
    this.onTransientError("recvmmsg", e);
    // Out of memory: do not spin; the loop looks at its stop flag and comes back.
    if (e === ENOMEM) Atomics.wait(this.pause, 0, 0, RECEIVE_RETRY_MS);
    return 0;
  }

  /**
   * Receive one batch: block up to the receive timeout for the first
   * datagram, then take whatever else is queued (up to `batch` datagrams)
   * with the same `recvmmsg` call, and parse it. The first call after
   * {@link NfQueue.open} returns the packets that arrived during the open,
   * if any, without receiving. Returns the number of packets (0 on timeout
   * or if the batch held only ACK/error messages). Entries are valid until
   * the next call. Throws LibcError on a fatal receive error.
   */
  receiveBatch(): number {
    return this.receiveWith(MSG_WAITFORONE);
  }

  /**
   * Like {@link NfQueue.receiveBatch}, but without waiting: what is queued now, up to `batch`
   * datagrams (0 when nothing is). For a thread that serves several queues and waits for all of
   * them with one `poll` (daemon/packet_loops.ts).
   */
  receiveNow(): number {
    return this.receiveWith(MSG_WAITFORONE | MSG_DONTWAIT);
  }

  /** {@link NfQueue.receiveBatch} with the given `recvmmsg` flags. */
  private receiveWith(flags: number): number {
    const t = this.table;
    let n = this.pending;
    if (n > 0) {
      this.pending = 0;
    } else {
      t.reset();
      n = this.receiveInto(0, flags);
      if (n === 0) return 0;
    }
    const s = this.stats;
    s.batches++;
    s.packets += t.count;
    if (n > s.maxBatch) s.maxBatch = n;
    return t.count;
  }

  /** Offset of packet `i` in {@link NfQueue.buffer} (allocation-free access). */
  payloadOffset(i: number): number {
    return this.table.payloadOffset[i];
  }

  /** Length of packet `i` (the copied length, at most `mtu`). */
  payloadLength(i: number): number {
    return this.table.payloadLength[i];
  }

  /** L3 protocol of packet `i` (`hw_protocol`: 0x0800 IPv4, 0x86DD IPv6). */
  l3proto(i: number): number {
    return this.table.hwProtocol[i];
  }

  /** Kernel packet id of packet `i`. */
  id(i: number): number {
    return this.table.id[i];
  }

  /** Original packet length of packet `i` if the copy was truncated, else 0. */
  capLen(i: number): number {
    return this.table.capLen[i];
  }

  /**
   * Queue the verdict for packet `i`: `mark >= 0` accepts with that fwmark
   * (u32), `mark < 0` drops. Verdicts must be given in receive order, for
   * every packet received (packets stay queued in the kernel until they get
   * one); runs of equal verdicts share one message (`VerdictRuns`). Sent by
   * {@link NfQueue.flush}.
   */
  verdict(i: number, mark: number): void {
    this.runs.add(this.table.id[i], mark);
  }

  /** Send all pending verdicts with one `sendmsg` (one datagram). Throws LibcError on failure. */
  flush(): void {
    this.runs.finish();
    this.send();
  }

  /** Send the verdict buffer as one datagram, if it holds anything. */
  private send(): void {
    const len = this.tx.length;
    if (len === 0) return;
    this.tx.clear();
    setSendLength(this.txIovView, len);
    if (getLibc().sendmsg(this.fd, this.txMsg, 0) < 0) {
      if (!this.sendAgain(errno())) return;
    }
    this.stats.sends++;
  }

  /**
   * The send of the verdict datagram failed with `e`: retry it while the error is transient
   * (pausing between attempts), until it succeeds (true) or the stop flag is set (false: the
   * verdicts are given up; the queue is about to close). Throws LibcError on a fatal error, and
   * NfQueueError once it has failed for `sendRetryLimitMs` (the queue would stall for ever).
   */
  private sendAgain(e: number): boolean {
    const since = performance.now();
    let pauseMs = 1;
    let attempts = 1;
    for (;;) {
      if (e !== EINTR && e !== ENOBUFS && e !== ENOMEM && e !== EAGAIN) {
        throw new LibcError("sendmsg", e);
      }
      this.stats.sendErrors++;
      this.onTransientError("sendmsg", e);
      if (Atomics.load(this.stop, 0) !== 0) {
        this.stats.sendsAbandoned++;
        return false;
      }
      const elapsed = performance.now() - since;
      if (elapsed >= this.sendRetryLimitMs) {
        this.stats.sendsAbandoned++;
        throw new NfQueueError(
          `queue ${this.queue}: sendmsg: ${strerror(e)}: verdicts not sent for ` +
            `${Math.round(elapsed)} ms (${attempts} attempts); giving up: the daemon stops`,
          e,
        );
      }
      if (e !== EINTR) {
        Atomics.wait(this.pause, 0, 0, pauseMs);
        pauseMs = Math.min(2 * pauseMs, SEND_RETRY_MAX_MS);
      }
      attempts++;
      if (getLibc().sendmsg(this.fd, this.txMsg, 0) >= 0) {
        this.onSendDone();
        return true;
      }
      e = errno();
    }
  }

  /** Kernel-reported errors to our verdicts so far (NLMSG_ERROR); no allocation. */
  get verdictErrorCount(): number {
    return this.table.errors;
  }

  /** Kernel-reported errors to our verdicts so far (NLMSG_ERROR), and the last errno. */
  get verdictErrors(): { count: number; lastErrno: number } {
    return { count: this.table.errors, lastErrno: this.table.lastErrno };
  }

  /** Malformed messages skipped so far. */
  get badMessages(): number {
    return this.table.bad;
  }

  /** Well-formed messages that were neither packets nor answers (e.g. wake messages) so far. */
  get otherMessages(): number {
    return this.table.other;
  }

  /**
   * Send pending verdicts and close the socket, which unbinds the queue
   * (see the module comment). Idempotent.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.flush();
    } catch {
      // closing anyway: the kernel drops what is still queued
    }
    closeFd(this.fd);
  }
}
