/**
 * NFQUEUE reader (SPEC 5.5): libnetfilter_queue for the control plane only,
 * a batched, allocation-free data plane in TypeScript.
 *
 * Control plane (`NfQueue.open`, `close`): `nfq_open`, `nfq_unbind_pf` /
 * `nfq_bind_pf` (AF_INET, AF_INET6; errors ignored, the calls are no-ops on
 * kernels >= 3.8), `nfq_create_queue`, `nfq_set_queue_flags` (F_GSO, and
 * F_FAIL_OPEN on request), `nfq_set_queue_maxlen`, `nfq_set_mode`
 * (COPY_PACKET, range = mtu), `nfq_fd`; on the socket NETLINK_NO_ENOBUFS,
 * SO_RCVBUF (5.5 step 5) and SO_RCVTIMEO.
 *
 * Data plane: one `recvmmsg` fetches up to `batch` datagrams into
 * preallocated `mtu + 2048` byte slots; `lib/nfnetlink.ts` parses them into
 * preallocated arrays; verdicts are written back to back into one buffer and
 * sent with one `sendmsg` per batch. Consecutive packets with the same
 * verdict and mark (a burst of one flow, or every packet when one target is
 * active) share one NFQNL_MSG_VERDICT_BATCH message; see
 * {@link NfQueue.verdict}. The library's own receive path
 * (`nfq_handle_packet`) is never used, so no C → JS callback runs per packet.
 *
 * The `nfq_create_queue` callback: libnetfilter_queue reads the socket itself
 * while it waits for the ACK of each configuration request, and hands any
 * packet message it finds there to the queue's callback (with a NULL callback
 * the library returns -ENODEV from the dispatch, the request "fails" and the
 * packet is swallowed without a verdict, i.e. stuck in the kernel). Packets
 * reach the socket as soon as the queue is bound, so under traffic that can
 * happen during the configuration calls. The callback installed here is a
 * JS `Deno.UnsafeCallback` that only records the packet id; once the
 * configuration is complete those packets get an NF_REPEAT verdict, which
 * makes the kernel run the hook again so they are queued anew with the final
 * settings (COPY_PACKET, GSO) and reach the data plane. During `close` the
 * callback ignores packets (the kernel drops what is left when the queue is
 * destroyed). It is never invoked from the data plane.
 * @module
 */

import { errno, LibcError, setErrno, strerror } from "./libc.ts";
import {
  EAGAIN,
  EBUSY,
  EINTR,
  ENOBUFS,
  EPERM,
  getIntOption,
  getSocketLib,
  initMmsghdrs,
  initSendMsghdr,
  MMSGHDR_OFF_LEN,
  MMSGHDR_SIZE,
  MSG_TRUNC,
  MSG_WAITFORONE,
  MSGHDR_OFF_FLAGS,
  MSGHDR_SIZE,
  NETLINK_NO_ENOBUFS,
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
  NF_REPEAT,
  PacketTable,
  parseDatagram,
  VerdictBuffer,
} from "../lib/nfqueue/codec.ts";

/** Address families for nfq_bind_pf. */
const AF_INET = 2;
const AF_INET6 = 10;
/** `enum nfqnl_config_mode`. */
const NFQNL_COPY_PACKET = 2;
/** NFQA_CFG_FLAGS bit: accept packets instead of dropping them when the queue is full. */
export const NFQA_CFG_F_FAIL_OPEN: number = 1 << 0;
/** NFQA_CFG_FLAGS bit: deliver GSO packets unsegmented. */
export const NFQA_CFG_F_GSO: number = 1 << 2;

/** Extra bytes per receive slot beyond the MTU (SPEC 5.5 step 6). */
export const RX_SLOT_EXTRA = 2048;
/** Default number of datagrams per `recvmmsg`. */
export const DEFAULT_BATCH = 32;
/** Default SO_RCVTIMEO: how often a blocked receive loop looks at its stop flag. */
export const DEFAULT_TIMEOUT_MS = 200;
/** Size of the verdict send buffer (flushed early when full). */
const TX_SIZE = 16384;

const NFQ_SYMBOLS = {
  nfq_open: { parameters: [], result: "pointer" },
  nfq_close: { parameters: ["pointer"], result: "i32" },
  nfq_bind_pf: { parameters: ["pointer", "u16"], result: "i32" },
  nfq_unbind_pf: { parameters: ["pointer", "u16"], result: "i32" },
  nfq_create_queue: { parameters: ["pointer", "u16", "function", "pointer"], result: "pointer" },
  nfq_destroy_queue: { parameters: ["pointer"], result: "i32" },
  nfq_set_mode: { parameters: ["pointer", "u8", "u32"], result: "i32" },
  nfq_set_queue_flags: { parameters: ["pointer", "u32", "u32"], result: "i32" },
  nfq_set_queue_maxlen: { parameters: ["pointer", "u32"], result: "i32" },
  nfq_fd: { parameters: ["pointer"], result: "i32" },
  nfq_get_msg_packet_hdr: { parameters: ["pointer"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** int nfq_callback(struct nfq_q_handle *, struct nfgenmsg *, struct nfq_data *, void *) */
const NFQ_CALLBACK = {
  parameters: ["pointer", "pointer", "pointer", "pointer"],
  result: "i32",
} as const satisfies Deno.UnsafeCallbackDefinition;

type NfqLib = Deno.DynamicLibrary<typeof NFQ_SYMBOLS>["symbols"];

let nfqLib: NfqLib | undefined;

/** libnetfilter_queue, opened on first use; a clear error if it is not installed. */
function getNfqLib(): NfqLib {
  if (nfqLib === undefined) {
    try {
      nfqLib = Deno.dlopen("libnetfilter_queue.so.1", NFQ_SYMBOLS).symbols;
    } catch (e) {
      if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
        throw e;
      }
      throw new NfQueueError("libnetfilter_queue.so.1 not found; install libnetfilter-queue1", 0);
    }
  }
  return nfqLib;
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
  /** SO_RCVTIMEO in ms (default 200): the longest `receiveBatch` blocks. */
  timeoutMs?: number;
  /**
   * Send one batch verdict for a run of consecutive packets with the same
   * verdict and mark (default true); false sends one message per packet.
   */
  batchVerdicts?: boolean;
}

/** SO_RCVBUF as applied at open (SPEC 5.5 step 5). */
export interface RcvbufInfo {
  /** Value read back after setting (Linux doubles it and caps it at rmem_max). */
  actual: number;
  /** floor(qlength * mtu / 2) in u32, rounded down to a multiple of 4096. */
  requested: number;
}

/** Cumulative counters of one queue. */
export interface NfQueueStats {
  /** recvmmsg calls that returned data. */
  batches: number;
  /** Datagrams received. */
  datagrams: number;
  /** Packet messages parsed. */
  packets: number;
  /** Largest number of datagrams returned by one recvmmsg. */
  maxBatch: number;
  /** Packets given a verdict. */
  verdicts: number;
  /** Verdict messages written (a batch verdict covers several packets). */
  verdictMessages: number;
  /** Of those, NFQNL_MSG_VERDICT_BATCH messages. */
  batchVerdicts: number;
  /** sendmsg calls (one datagram each). */
  sends: number;
  /** Datagrams truncated by the kernel (MSG_TRUNC). */
  truncated: number;
  /** ENOBUFS from recvmmsg (messages were lost). */
  enobufs: number;
  /** Packets seen by the library during configuration and re-queued with NF_REPEAT. */
  repeated: number;
}

/** `floor(qlength * mtu / 2)` in u32 arithmetic, rounded down to a multiple of 4096. */
export function requestedRcvbuf(qlength: number, mtu: number): number {
  const product = Number((BigInt(qlength >>> 0) * BigInt(mtu >>> 0)) & 0xffffffffn);
  return (Math.floor(product / 2) & ~4095) >>> 0;
}

/** The daemon's start-up line for a queue (SPEC 1.8 step 7). */
export function startupLine(qlength: number, mtu: number, rcvbuf: RcvbufInfo): string {
  return `queue_length=${qlength >>> 0}, mtu=${mtu >>> 0}, SO_RCVBUF=${rcvbuf.actual >>> 0} (${
    rcvbuf.requested >>> 0
  })`;
}

function checkInt(name: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`${name} must be an integer in ${min}..${max}, got ${v}`);
  }
}

/** One bound NFQUEUE queue with its netlink socket and batch buffers. */
export class NfQueue {
  /** Queue number. */
  readonly queue: number;
  /** MTU (copy range). */
  readonly mtu: number;
  /** Kernel queue max length (as last set). */
  get qlength(): number {
    return this.maxlen;
  }
  /** Datagrams per receive call. */
  readonly batch: number;
  /** SO_RCVBUF actual and requested values. */
  readonly rcvbuf: RcvbufInfo;
  /** The netlink socket (owned by libnetfilter_queue). */
  readonly fd: number;
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
    repeated: 0,
  };
  /** Receive buffer: `batch` slots of `mtu + 2048` bytes; payload offsets index it. */
  readonly buffer: Uint8Array;

  private readonly h: Deno.PointerObject;
  private qh: Deno.PointerValue;
  private readonly callback: Deno.UnsafeCallback<typeof NFQ_CALLBACK>;
  private readonly state: { closing: boolean; stashed: number[] };
  private readonly slot: number;
  private readonly rx: NetlinkBuffer;
  private readonly rxBuffer: ArrayBuffer;
  private readonly iov: Uint8Array;
  private readonly vec: Uint8Array;
  private readonly vecView: DataView;
  private readonly table: PacketTable;
  private readonly tx: VerdictBuffer;
  private readonly txMsg: Uint8Array;
  private readonly txIovView: DataView;
  private readonly coalesce: boolean;
  /** The pending run of verdicts: packets up to `runId`, all with handler verdict `runMark`. */
  private runLength = 0;
  private runId = 0;
  private runMark = 0;
  private closed = false;
  private maxlen: number;

  private constructor(
    opts: Required<NfQueueOptions>,
    h: Deno.PointerObject,
    qh: Deno.PointerObject,
    fd: number,
    rcvbuf: RcvbufInfo,
    callback: Deno.UnsafeCallback<typeof NFQ_CALLBACK>,
    state: { closing: boolean; stashed: number[] },
  ) {
    this.queue = opts.queue;
    this.mtu = opts.mtu;
    this.maxlen = opts.qlength;
    this.batch = opts.batch;
    this.coalesce = opts.batchVerdicts;
    this.h = h;
    this.qh = qh;
    this.fd = fd;
    this.rcvbuf = rcvbuf;
    this.callback = callback;
    this.state = state;
    // mtu + 2048 bytes per datagram, rounded up to 8 so that every slot is aligned.
    this.slot = (opts.mtu + RX_SLOT_EXTRA + 7) & ~7;
    // Explicit ArrayBuffers: off-heap backing stores whose addresses never change,
    // as required for the pointers stored in the iovec / mmsghdr arrays.
    this.rxBuffer = new ArrayBuffer(this.slot * this.batch);
    this.buffer = new Uint8Array(this.rxBuffer);
    this.rx = new NetlinkBuffer(this.buffer);
    this.iov = new Uint8Array(new ArrayBuffer(16 * this.batch));
    this.vec = new Uint8Array(new ArrayBuffer(MMSGHDR_SIZE * this.batch));
    this.vecView = new DataView(this.vec.buffer);
    initMmsghdrs(this.vec, this.iov, this.buffer, this.slot, this.batch);
    // Enough entries for the densest possible datagrams: never PARSE_TABLE_FULL.
    this.table = new PacketTable(this.batch * Math.floor(this.slot / MIN_PACKET_MSG_LEN));
    this.tx = new VerdictBuffer(TX_SIZE, this.queue);
    this.txMsg = new Uint8Array(new ArrayBuffer(MSGHDR_SIZE));
    const txIov = new Uint8Array(new ArrayBuffer(16));
    this.txIovView = new DataView(txIov.buffer);
    initSendMsghdr(this.txMsg, txIov, this.tx.bytes);
  }

  /**
   * Bind queue `opts.queue` and configure it (SPEC 5.5). Throws NfQueueError
   * with a one-line message: library missing, no privilege, queue owned by
   * another process, or a failing library / socket call.
   */
  static open(opts: NfQueueOptions): NfQueue {
    const o: Required<NfQueueOptions> = {
      queue: opts.queue,
      mtu: opts.mtu,
      qlength: opts.qlength,
      failOpen: opts.failOpen ?? false,
      batch: opts.batch ?? DEFAULT_BATCH,
      timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      batchVerdicts: opts.batchVerdicts ?? true,
    };
    checkInt("queue", o.queue, 0, 65535);
    checkInt("mtu", o.mtu, 1, 65535);
    checkInt("qlength", o.qlength, 1, 0xffffffff);
    checkInt("batch", o.batch, 1, 1024);
    checkInt("timeoutMs", o.timeoutMs, 0, 3600_000);
    const lib = getNfqLib();
    // A packet can race with the ACK of the BIND request itself (before the
    // library knows the queue): nfq_create_queue then fails without errno.
    // The socket is closed, which unbinds the queue, and the open is retried.
    for (let attempt = 1;; attempt++) {
      const q = NfQueue.tryOpen(lib, o);
      if (q !== null) return q;
      if (attempt >= 3) {
        throw new NfQueueError(`queue ${o.queue}: nfq_create_queue failed repeatedly`, 0);
      }
    }
  }

  /** One open attempt; null if it raced with a packet (see {@link NfQueue.open}). */
  private static tryOpen(lib: NfqLib, o: Required<NfQueueOptions>): NfQueue | null {
    setErrno(0);
    const h = lib.nfq_open();
    if (h === null) {
      const e = errno();
      throw new NfQueueError(`nfq_open: ${e === 0 ? "failed" : strerror(e)}`, e);
    }
    const state = { closing: false, stashed: [] as number[] };
    const callback = new Deno.UnsafeCallback(NFQ_CALLBACK, (_qh, _nfmsg, nfad) => {
      if (!state.closing && nfad !== null) {
        const hdr = lib.nfq_get_msg_packet_hdr(nfad);
        if (hdr !== null) {
          const v = new Deno.UnsafePointerView(hdr);
          state.stashed.push(
            ((v.getUint8(0) << 24) | (v.getUint8(1) << 16) | (v.getUint8(2) << 8) |
              v.getUint8(3)) >>> 0,
          );
        }
      }
      return 1; // NFNL_CB_CONTINUE: keep reading until the ACK
    });
    let qh: Deno.PointerValue = null;
    let done = false;
    try {
      const fd = lib.nfq_fd(h);
      // Socket options first, so that the configuration phase already has them.
      setIntOption(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, 1);
      const requested = requestedRcvbuf(o.qlength, o.mtu);
      if (requested > getIntOption(fd, SOL_SOCKET, SO_RCVBUF)) {
        setIntOption(fd, SOL_SOCKET, SO_RCVBUF, requested);
      }
      const rcvbuf = { actual: getIntOption(fd, SOL_SOCKET, SO_RCVBUF) >>> 0, requested };

      // Legacy per-family handler binding: no-ops since Linux 3.8, but they still
      // need CAP_NET_ADMIN, which tells a privilege problem from a busy queue.
      let pfErrno = 0;
      for (const pf of [AF_INET, AF_INET6]) {
        if (lib.nfq_unbind_pf(h, pf) < 0 && pfErrno === 0) pfErrno = errno();
        if (lib.nfq_bind_pf(h, pf) < 0 && pfErrno === 0) pfErrno = errno();
      }

      setErrno(0);
      qh = lib.nfq_create_queue(h, o.queue, callback.pointer, null);
      if (qh === null) {
        const e = errno();
        if (e === 0) return null; // raced with a packet, see open()
        if (e === EPERM && pfErrno === EPERM) {
          throw new NfQueueError(
            `queue ${o.queue}: permission denied (NFQUEUE needs root or CAP_NET_ADMIN)`,
            e,
          );
        }
        if (e === EPERM || e === EBUSY) {
          throw new NfQueueError(`queue ${o.queue} is in use by another process`, e);
        }
        throw new NfQueueError(`queue ${o.queue}: nfq_create_queue: ${strerror(e)}`, e);
      }
      const mask = NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN;
      const flags = NFQA_CFG_F_GSO | (o.failOpen ? NFQA_CFG_F_FAIL_OPEN : 0);
      if (lib.nfq_set_queue_flags(qh, mask, flags) < 0) {
        throw NfQueue.callError(o.queue, "nfq_set_queue_flags");
      }
      if (lib.nfq_set_queue_maxlen(qh, o.qlength) < 0) {
        throw NfQueue.callError(o.queue, "nfq_set_queue_maxlen");
      }
      // Copy mode last: until it is set, packets the library may see carry no payload.
      if (lib.nfq_set_mode(qh, NFQNL_COPY_PACKET, o.mtu) < 0) {
        throw NfQueue.callError(o.queue, "nfq_set_mode");
      }
      if (o.timeoutMs > 0) setReceiveTimeout(fd, o.timeoutMs);

      const q = new NfQueue(o, h, qh, fd, rcvbuf, callback, state);
      q.repeatStashed();
      done = true;
      return q;
    } catch (e) {
      if (e instanceof LibcError) {
        throw new NfQueueError(`queue ${o.queue}: ${e.call}: ${e.message}`, e.errno);
      }
      throw e;
    } finally {
      if (!done) {
        state.closing = true;
        if (qh !== null) lib.nfq_destroy_queue(qh);
        lib.nfq_close(h);
        callback.close();
      }
    }
  }

  /** NfQueueError for a failed library call, from errno. */
  private static callError(queue: number, call: string): NfQueueError {
    const e = errno();
    return new NfQueueError(`queue ${queue}: ${call}: ${e === 0 ? "failed" : strerror(e)}`, e);
  }

  /**
   * Change the kernel queue max length at run time (control plane; the
   * data plane must not run concurrently on this queue). Packets the library
   * reads from the socket while it waits for the ACK are re-queued with
   * NF_REPEAT. Throws NfQueueError on failure.
   */
  setQueueMaxlen(qlength: number): void {
    checkInt("qlength", qlength, 1, 0xffffffff);
    if (this.qh === null) throw new NfQueueError(`queue ${this.queue} is closed`, 0);
    this.flush();
    const failed = getNfqLib().nfq_set_queue_maxlen(this.qh, qlength) < 0;
    const err = failed ? NfQueue.callError(this.queue, "nfq_set_queue_maxlen") : null;
    if (!failed) this.maxlen = qlength;
    this.repeatStashed();
    if (err !== null) throw err;
  }

  /** Give the packets the library consumed during configuration back to the kernel hook. */
  private repeatStashed(): void {
    const ids = this.state.stashed;
    if (this.runLength > 0) this.writeRun();
    for (let k = 0; k < ids.length; k++) {
      if (this.tx.full) this.send();
      this.tx.addVerdict(ids[k], NF_REPEAT, -1);
      this.stats.verdictMessages++;
    }
    this.stats.repeated += ids.length;
    ids.length = 0;
    this.flush();
  }

  /**
   * Receive one batch: block up to the receive timeout for the first datagram,
   * then take whatever else is queued (up to `batch` datagrams) with the same
   * `recvmmsg` call, and parse it. Returns the number of packets (0 on timeout
   * or if the batch held only ACK/error messages). Entries are valid until the
   * next call. Throws LibcError on a fatal receive error.
   */
  receiveBatch(): number {
    const t = this.table;
    t.reset();
    const n = getSocketLib().recvmmsg(this.fd, this.vec, this.batch, MSG_WAITFORONE, null);
    if (n <= 0) {
      if (n === 0) return 0;
      const e = errno();
      if (e === EAGAIN || e === EINTR) return 0;
      if (e === ENOBUFS) {
        this.stats.enobufs++;
        return 0;
      }
      throw new LibcError("recvmmsg", e);
    }
    const vv = this.vecView;
    for (let k = 0; k < n; k++) {
      const m = k * MMSGHDR_SIZE;
      let len = vv.getUint32(m + MMSGHDR_OFF_LEN, HOST_LE);
      if ((vv.getInt32(m + MSGHDR_OFF_FLAGS, HOST_LE) & MSG_TRUNC) !== 0) this.stats.truncated++;
      if (len > this.slot) len = this.slot;
      parseDatagram(this.rx, k * this.slot, len, t);
    }
    const s = this.stats;
    s.batches++;
    s.datagrams += n;
    s.packets += t.count;
    if (n > s.maxBatch) s.maxBatch = n;
    return t.count;
  }

  /** Packet `i` of the current batch as a view (no copy) starting at the IP header. */
  packet(i: number): Uint8Array {
    // The constructor form is cheaper than subarray(); both only create a view.
    return new Uint8Array(this.rxBuffer, this.table.payloadOffset[i], this.table.payloadLength[i]);
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
   * Queue the verdict for packet `i` (SPEC 5.1): `mark >= 0` accepts with
   * that fwmark (u32), `mark < 0` drops. Sent by {@link NfQueue.flush}.
   *
   * Verdicts must be given in receive order, for every packet received
   * (packets stay queued in the kernel until they get one). A run of
   * consecutive packets with the same verdict and mark becomes one batch
   * verdict for the run's last id: the kernel applies it to every queued
   * packet up to that id, which are exactly the run's packets because all
   * earlier ones got their verdicts in earlier messages.
   */
  verdict(i: number, mark: number): void {
    const id = this.table.id[i];
    const v = mark < 0 ? -1 : mark;
    this.stats.verdicts++;
    if (this.runLength > 0) {
      if (v === this.runMark && this.coalesce) {
        this.runId = id;
        this.runLength++;
        return;
      }
      this.writeRun();
    }
    this.runId = id;
    this.runMark = v;
    this.runLength = 1;
  }

  /** Write the pending run as one verdict message (sending the buffer first if it is full). */
  private writeRun(): void {
    if (this.tx.full) this.send();
    const batch = this.runLength > 1;
    this.tx.add(this.runId, this.runMark, batch);
    this.runLength = 0;
    this.stats.verdictMessages++;
    if (batch) this.stats.batchVerdicts++;
  }

  /** Send all pending verdicts with one `sendmsg` (one datagram). Throws LibcError on failure. */
  flush(): void {
    if (this.runLength > 0) this.writeRun();
    this.send();
  }

  /** Send the verdict buffer as one datagram, if it holds anything. */
  private send(): void {
    const len = this.tx.length;
    if (len === 0) return;
    this.tx.clear();
    setSendLength(this.txIovView, len);
    const sendmsg = getSocketLib().sendmsg;
    for (;;) {
      const r = sendmsg(this.fd, this.txMsg, 0);
      if (r >= 0) break;
      const e = errno();
      if (e !== EINTR) throw new LibcError("sendmsg", e);
    }
    this.stats.sends++;
  }

  /** Kernel-reported errors to our verdicts so far (NLMSG_ERROR), and the last errno. */
  get verdictErrors(): { count: number; lastErrno: number } {
    return { count: this.table.errors, lastErrno: this.table.lastErrno };
  }

  /** Malformed messages skipped so far. */
  get badMessages(): number {
    return this.table.bad;
  }

  /** Send pending verdicts, unbind the queue and close the socket. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.flush();
    } catch {
      // closing anyway: the kernel drops what is still queued
    }
    this.state.closing = true;
    const lib = getNfqLib();
    if (this.qh !== null) lib.nfq_destroy_queue(this.qh);
    this.qh = null;
    lib.nfq_close(this.h);
    this.callback.close();
  }
}

/** Packet handler: returns the verdict value of SPEC 5.1 (>= 0 accept with mark, < 0 drop). */
export type PacketHandler = (pkt: Uint8Array, l3proto: number) => number;

/**
 * Serve `q` until `stop[0]` becomes non-zero (checked between batches, at
 * least every receive timeout): receive a batch, call `decide` for every
 * packet, send all verdicts with one `sendmsg`. Throws on fatal socket errors
 * or if `decide` throws (after sending the verdicts decided so far).
 */
export function runQueue(q: NfQueue, decide: PacketHandler, stop: Int32Array): void {
  while (Atomics.load(stop, 0) === 0) {
    const n = q.receiveBatch();
    if (n === 0) continue;
    try {
      for (let i = 0; i < n; i++) q.verdict(i, decide(q.packet(i), q.l3proto(i)));
    } finally {
      q.flush();
    }
  }
}
