/**
 * Pure TypeScript codec for the nfnetlink_queue wire format (no FFI): parse
 * the packet messages the kernel sends to an NFQUEUE socket and build the
 * verdict messages sent back.
 *
 * Layouts follow the kernel UAPI headers `linux/netlink.h`,
 * `linux/netfilter/nfnetlink.h` and `linux/netfilter/nfnetlink_queue.h`:
 *
 * ```
 * nlmsghdr  (16, host order)  len u32 | type u16 | flags u16 | seq u32 | pid u32
 * nfgenmsg  (4)               family u8 | version u8 | res_id be16 (queue number)
 * nlattr    (4 + data, padded to 4)  len u16 | type u16 (host order) | data
 * ```
 *
 * Nothing here allocates per message and nothing throws on hostile bytes: a
 * malformed message is counted in {@link PacketTable.bad} and skipped.
 *
 * The hot-path functions ({@link parseDatagram}, {@link VerdictBuffer}) use
 * typed-array views; {@link putVerdict} is the plain DataView reference
 * implementation of the verdict layout.
 * @module
 */

/** Whether this machine is little-endian (netlink headers use host order). */
export const HOST_LE: boolean = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Netlink messages and attributes are aligned to 4 bytes. */
export const NLMSG_ALIGNTO = 4;
/** Round `n` up to the netlink alignment. */
export function nlAlign(n: number): number {
  return (n + NLMSG_ALIGNTO - 1) & ~(NLMSG_ALIGNTO - 1);
}

// struct nlmsghdr (16 bytes, host byte order)
/** Size of `struct nlmsghdr`. */
export const NLMSG_HDRLEN = 16;
/** Offset of `nlmsg_len` (u32: message length including the header). */
export const NLMSG_OFF_LEN = 0;
/** Offset of `nlmsg_type` (u16). */
export const NLMSG_OFF_TYPE = 4;
/** Offset of `nlmsg_flags` (u16). */
export const NLMSG_OFF_FLAGS = 6;
/** Offset of `nlmsg_seq` (u32). */
export const NLMSG_OFF_SEQ = 8;
/** Offset of `nlmsg_pid` (u32, port id of the sender; 0 = kernel). */
export const NLMSG_OFF_PID = 12;

/** Reserved message type: nothing. */
export const NLMSG_NOOP = 1;
/** Reserved message type: error or ACK (`struct nlmsgerr`). */
export const NLMSG_ERROR = 2;
/** Reserved message type: end of a multipart dump. */
export const NLMSG_DONE = 3;
/** Reserved message type: data lost. */
export const NLMSG_OVERRUN = 4;

/** Header flag: this is a request. */
export const NLM_F_REQUEST = 0x01;
/** Header flag: ask for an ACK. */
export const NLM_F_ACK = 0x04;

/** `struct nlmsgerr`: offset of the i32 error (negative errno, 0 = ACK). */
export const NLMSGERR_OFF_ERROR: number = NLMSG_HDRLEN;

// struct nfgenmsg (4 bytes) after the netlink header
/** Size of `struct nfgenmsg`. */
export const NFGENMSG_LEN = 4;
/** Offset (from the message start) of `nfgen_family` (u8). */
export const NFGEN_OFF_FAMILY: number = NLMSG_HDRLEN + 0;
/** Offset (from the message start) of `version` (u8). */
export const NFGEN_OFF_VERSION: number = NLMSG_HDRLEN + 1;
/** Offset (from the message start) of `res_id` (be16: the queue number). */
export const NFGEN_OFF_RES_ID: number = NLMSG_HDRLEN + 2;
/** nfnetlink protocol version. */
export const NFNETLINK_V0 = 0;
/** Offset of the first attribute of an nfnetlink message. */
export const NFNL_ATTR_START: number = NLMSG_HDRLEN + NFGENMSG_LEN;

/** nfnetlink subsystem id of nfnetlink_queue; message type = subsys << 8 | msg. */
export const NFNL_SUBSYS_QUEUE = 3;
/** `NFQNL_MSG_PACKET`: packet from the kernel. */
export const NFQNL_MSG_PACKET = 0;
/** `NFQNL_MSG_VERDICT`: verdict from user space. */
export const NFQNL_MSG_VERDICT = 1;
/** `NFQNL_MSG_CONFIG`: queue configuration. */
export const NFQNL_MSG_CONFIG = 2;
/** `NFQNL_MSG_VERDICT_BATCH`: one verdict for all ids up to a given one. */
export const NFQNL_MSG_VERDICT_BATCH = 3;
/** Full nlmsg_type of a queued packet (0x0300). */
export const NFQ_TYPE_PACKET: number = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET;
/** Full nlmsg_type of a verdict (0x0301). */
export const NFQ_TYPE_VERDICT: number = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_VERDICT;
/**
 * Full nlmsg_type of a batch verdict (0x0303): the verdict (and mark) apply to
 * every packet of the queue whose id is not after the given one.
 */
export const NFQ_TYPE_VERDICT_BATCH: number = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_VERDICT_BATCH;

/** `struct nlattr` header size (u16 nla_len, u16 nla_type, host order). */
export const NLA_HDRLEN = 4;
/** Attribute type bits without NLA_F_NESTED / NLA_F_NET_BYTEORDER. */
export const NLA_TYPE_MASK = 0x3fff;

/** Attribute: `struct nfqnl_msg_packet_hdr`. */
export const NFQA_PACKET_HDR = 1;
/** Attribute: `struct nfqnl_msg_verdict_hdr`. */
export const NFQA_VERDICT_HDR = 2;
/** Attribute: be32 packet mark. */
export const NFQA_MARK = 3;
/** Attribute: `struct nfqnl_msg_packet_timestamp`. */
export const NFQA_TIMESTAMP = 4;
/** Attribute: be32 input interface index. */
export const NFQA_IFINDEX_INDEV = 5;
/** Attribute: be32 output interface index. */
export const NFQA_IFINDEX_OUTDEV = 6;
/** Attribute: `struct nfqnl_msg_packet_hw`. */
export const NFQA_HWADDR = 9;
/** Attribute: the packet bytes from the network header on. */
export const NFQA_PAYLOAD = 10;
/** Attribute: be32 original packet length (when the copy is shorter). */
export const NFQA_CAP_LEN = 13;
/** Attribute: be32 skb flags (`NFQA_SKB_*`). */
export const NFQA_SKB_INFO = 14;

/** `struct nfqnl_msg_packet_hdr` (packed, 7 bytes): be32 packet_id, be16 hw_protocol, u8 hook. */
export const PACKET_HDR_LEN = 7;
/** `struct nfqnl_msg_verdict_hdr` (8 bytes): be32 verdict, be32 id. */
export const VERDICT_HDR_LEN = 8;

/** `NFQA_SKB_INFO` flag: the packet is a GSO super-packet. */
export const NFQA_SKB_GSO: number = 1 << 1;

/** Netfilter verdict: drop the packet. */
export const NF_DROP = 0;
/** Netfilter verdict: let the packet continue. */
export const NF_ACCEPT = 1;
/** Netfilter verdict: run the same hook again (the packet may be queued again). */
export const NF_REPEAT = 4;

/** Size of a verdict message without NFQA_MARK (32). */
export const VERDICT_MSG_LEN: number = NFNL_ATTR_START + NLA_HDRLEN + VERDICT_HDR_LEN;
/** Size of a verdict message with NFQA_MARK (40). */
export const VERDICT_MARK_MSG_LEN: number = VERDICT_MSG_LEN + NLA_HDRLEN + 4;

/** Smallest possible packet message (headers + NFQA_PACKET_HDR, padded): 32. */
export const MIN_PACKET_MSG_LEN: number = NFNL_ATTR_START + nlAlign(NLA_HDRLEN + PACKET_HDR_LEN);

/** Size of the wake message ({@link wakeMessage}): a bare netlink header. */
export const WAKE_MSG_LEN: number = NLMSG_HDRLEN;

/**
 * The message that wakes a queue thread blocked in its receive (docs/ARCHITECTURE.md): a bare
 * NLMSG_NOOP header, sent by the daemon's main thread to the queue socket's port id.
 * {@link parseDatagram} counts it in {@link PacketTable.other} and records no packet, so the
 * receive returns with no packets and nothing gets a verdict.
 */
export function wakeMessage(): Uint8Array<ArrayBuffer> {
  const m = new Uint8Array(new ArrayBuffer(WAKE_MSG_LEN));
  const v = new DataView(m.buffer);
  v.setUint32(NLMSG_OFF_LEN, WAKE_MSG_LEN, HOST_LE);
  v.setUint16(NLMSG_OFF_TYPE, NLMSG_NOOP, HOST_LE);
  return m;
}

/** `parseDatagram` result: all messages were consumed (good or counted as bad). */
export const PARSE_OK = 0;
/** `parseDatagram` result: the netlink framing itself is broken; the rest was skipped. */
export const PARSE_BAD_FRAMING: number = -1;
/** `parseDatagram` result: the table is full; the remaining packets were not recorded. */
export const PARSE_TABLE_FULL: number = -2;

/**
 * Preallocated per-batch storage for parsed packet messages (struct of
 * arrays). Entry `i < count` describes one queued packet; its payload is
 * `buf[payloadOffset[i], payloadOffset[i] + payloadLength[i])` of the buffer
 * that was parsed.
 */
export class PacketTable {
  /** Maximum number of entries. */
  readonly capacity: number;
  /** Number of valid entries (reset with {@link PacketTable.reset}). */
  count = 0;
  /** Packet id (host number, from the BE field). */
  readonly id: Uint32Array;
  /** `hw_protocol`: the L3 ethertype, e.g. 0x0800 or 0x86dd. */
  readonly hwProtocol: Uint16Array;
  /** Netfilter hook number. */
  readonly hook: Uint8Array;
  /** Queue number (`nfgenmsg.res_id`). */
  readonly queue: Uint16Array;
  /** Absolute offset of the payload in the parsed buffer. */
  readonly payloadOffset: Int32Array;
  /** Payload length (0 when the message carried no payload). */
  readonly payloadLength: Int32Array;
  /** `NFQA_CAP_LEN` (original length when the copy was truncated), else 0. */
  readonly capLen: Uint32Array;
  /** `NFQA_SKB_INFO` flags, else 0. */
  readonly skbInfo: Uint32Array;
  /** Malformed messages seen (cumulative). */
  bad = 0;
  /** NLMSG_ERROR messages with error 0 (ACKs) seen (cumulative). */
  acks = 0;
  /** NLMSG_ERROR messages with an error seen (cumulative). */
  errors = 0;
  /** errno of the last NLMSG_ERROR with an error (positive), 0 if none. */
  lastErrno = 0;
  /** Well-formed messages of other types (cumulative). */
  other = 0;

  /** Arrays for `capacity` packets. */
  constructor(capacity: number) {
    this.capacity = capacity;
    this.id = new Uint32Array(capacity);
    this.hwProtocol = new Uint16Array(capacity);
    this.hook = new Uint8Array(capacity);
    this.queue = new Uint16Array(capacity);
    this.payloadOffset = new Int32Array(capacity);
    this.payloadLength = new Int32Array(capacity);
    this.capLen = new Uint32Array(capacity);
    this.skbInfo = new Uint32Array(capacity);
  }

  /** Forget the entries of the previous batch (counters are kept). */
  reset(): void {
    this.count = 0;
  }
}

/**
 * Typed-array views of one receive buffer, for {@link parseDatagram}. Host-order
 * netlink fields are read through `u16` / `u32` (faster than a DataView and
 * independent of the host's byte order); big-endian fields byte by byte.
 * The buffer must start at a multiple of 4 (ArrayBuffers always do).
 */
export class NetlinkBuffer {
  /** The bytes. Payload offsets in a {@link PacketTable} index this array. */
  readonly u8: Uint8Array;
  /** The same bytes as host-order u16 (index = byte offset / 2). */
  readonly u16: Uint16Array;
  /** The same bytes as host-order u32 (index = byte offset / 4). */
  readonly u32: Uint32Array;

  /** Views of `bytes` (must start at a multiple of 4). */
  constructor(bytes: Uint8Array) {
    if (bytes.byteOffset % 4 !== 0) throw new RangeError("netlink buffer must be 4-byte aligned");
    this.u8 = bytes;
    this.u16 = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 1);
    this.u32 = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
  }
}

/**
 * Parse one netlink datagram `nb.u8[start, start + length)` (one or more
 * netlink messages back to back, as received) and append every
 * queued-packet message to `table`. `start` must be a multiple of 4 (netlink
 * alignment), otherwise the datagram is rejected. Never throws, never reads
 * outside the range.
 */
export function parseDatagram(
  nb: NetlinkBuffer,
  start: number,
  length: number,
  table: PacketTable,
): number {
  if (
    start < 0 || length < 0 || (start & 3) !== 0 || start + length > nb.u8.length ||
    !Number.isInteger(start) || !Number.isInteger(length)
  ) {
    return PARSE_BAD_FRAMING;
  }
  const u16 = nb.u16;
  const u32 = nb.u32;
  let off = start;
  let rem = length;
  while (rem >= NLMSG_HDRLEN) {
    const len = u32[off >>> 2];
    if (len < NLMSG_HDRLEN || len > rem) {
      table.bad++;
      return PARSE_BAD_FRAMING;
    }
    const type = u16[(off + NLMSG_OFF_TYPE) >>> 1];
    if (type === NFQ_TYPE_PACKET) {
      if (table.count >= table.capacity) return PARSE_TABLE_FULL;
      if (!parsePacketMessage(nb, off, len, table)) table.bad++;
    } else if (type === NLMSG_ERROR) {
      if (len < NLMSG_HDRLEN + 4) {
        table.bad++;
      } else {
        const err = u32[(off + NLMSGERR_OFF_ERROR) >>> 2] | 0;
        if (err === 0) {
          table.acks++;
        } else {
          table.errors++;
          table.lastErrno = err < 0 ? -err : err;
        }
      }
    } else {
      table.other++;
    }
    const step = nlAlign(len);
    if (step >= rem) return PARSE_OK;
    off += step;
    rem -= step;
  }
  if (rem !== 0) {
    table.bad++;
    return PARSE_BAD_FRAMING;
  }
  return PARSE_OK;
}

/** Big-endian u32 at byte offset `p`. */
function be32At(u8: Uint8Array, p: number): number {
  return ((u8[p] << 24) | (u8[p + 1] << 16) | (u8[p + 2] << 8) | u8[p + 3]) >>> 0;
}

/**
 * Parse one NFQNL_MSG_PACKET message of `len` bytes at `off` (4-aligned) into
 * the next table entry. Returns false (entry not added) if the message is
 * malformed or lacks NFQA_PACKET_HDR.
 */
function parsePacketMessage(
  nb: NetlinkBuffer,
  off: number,
  len: number,
  table: PacketTable,
): boolean {
  if (len < NFNL_ATTR_START) return false;
  const u8 = nb.u8;
  const u16 = nb.u16;
  const i = table.count;
  const end = off + len;
  let a = off + NFNL_ATTR_START; // stays 4-aligned
  let haveHdr = false;
  let payOff = 0;
  let payLen = 0;
  let capLen = 0;
  let skbInfo = 0;
  while (end - a >= NLA_HDRLEN) {
    const alen = u16[a >>> 1];
    const atype = u16[(a >>> 1) + 1] & NLA_TYPE_MASK;
    if (alen < NLA_HDRLEN || alen > end - a) return false;
    const data = a + NLA_HDRLEN;
    const dlen = alen - NLA_HDRLEN;
    switch (atype) {
      case NFQA_PACKET_HDR:
        if (dlen < PACKET_HDR_LEN) return false;
        table.id[i] = be32At(u8, data);
        table.hwProtocol[i] = (u8[data + 4] << 8) | u8[data + 5];
        table.hook[i] = u8[data + 6];
        haveHdr = true;
        break;
      case NFQA_PAYLOAD:
        payOff = data;
        payLen = dlen;
        break;
      case NFQA_CAP_LEN:
        if (dlen >= 4) capLen = be32At(u8, data);
        break;
      case NFQA_SKB_INFO:
        if (dlen >= 4) skbInfo = be32At(u8, data);
        break;
    }
    a += nlAlign(alen);
  }
  if (!haveHdr) return false;
  table.queue[i] = (u8[off + NFGEN_OFF_RES_ID] << 8) | u8[off + NFGEN_OFF_RES_ID + 1];
  table.payloadOffset[i] = payOff;
  table.payloadLength[i] = payLen;
  table.capLen[i] = capLen;
  table.skbInfo[i] = skbInfo;
  table.count = i + 1;
  return true;
}

/**
 * Write an NFQNL_MSG_VERDICT message at `off` and return the offset after it
 * (the caller guarantees room for {@link VERDICT_MARK_MSG_LEN} bytes).
 * `mark >= 0` adds NFQA_MARK with `mark` as u32; `mark < 0` omits it.
 * `seq` defaults to 0 (error replies then carry seq 0). With `batch`, the
 * message is an NFQNL_MSG_VERDICT_BATCH: the same layout, applied by the
 * kernel to every queued packet with an id up to `id`.
 */
export function putVerdict(
  view: DataView,
  off: number,
  queue: number,
  id: number,
  verdict: number,
  mark: number,
  seq = 0,
  batch = false,
): number {
  const len = mark >= 0 ? VERDICT_MARK_MSG_LEN : VERDICT_MSG_LEN;
  view.setUint32(off + NLMSG_OFF_LEN, len, HOST_LE);
  view.setUint16(off + NLMSG_OFF_TYPE, batch ? NFQ_TYPE_VERDICT_BATCH : NFQ_TYPE_VERDICT, HOST_LE);
  view.setUint16(off + NLMSG_OFF_FLAGS, NLM_F_REQUEST, HOST_LE);
  view.setUint32(off + NLMSG_OFF_SEQ, seq >>> 0, HOST_LE);
  view.setUint32(off + NLMSG_OFF_PID, 0, HOST_LE);
  view.setUint8(off + NFGEN_OFF_FAMILY, 0); // AF_UNSPEC
  view.setUint8(off + NFGEN_OFF_VERSION, NFNETLINK_V0);
  view.setUint16(off + NFGEN_OFF_RES_ID, queue & 0xffff, false);
  let a = off + NFNL_ATTR_START;
  view.setUint16(a, NLA_HDRLEN + VERDICT_HDR_LEN, HOST_LE);
  view.setUint16(a + 2, NFQA_VERDICT_HDR, HOST_LE);
  view.setUint32(a + 4, verdict >>> 0, false);
  view.setUint32(a + 8, id >>> 0, false);
  a += NLA_HDRLEN + VERDICT_HDR_LEN;
  if (mark >= 0) {
    view.setUint16(a, NLA_HDRLEN + 4, HOST_LE);
    view.setUint16(a + 2, NFQA_MARK, HOST_LE);
    view.setUint32(a + 4, mark >>> 0, false);
  }
  return off + len;
}

/**
 * Write the verdict for a packet handler result `v` (docs/COMPATIBILITY.md#packet-decisions): `v >= 0` is
 * NF_ACCEPT with mark `v` (u32), `v < 0` is NF_DROP without a mark.
 */
export function putHandlerVerdict(
  view: DataView,
  off: number,
  queue: number,
  id: number,
  v: number,
): number {
  return v >= 0
    ? putVerdict(view, off, queue, id, NF_ACCEPT, v)
    : putVerdict(view, off, queue, id, NF_DROP, -1);
}

function bswap32(x: number): number {
  return (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0;
}

/** The host-order u32 whose memory bytes are the big-endian encoding of `x`. */
function beWord(x: number): number {
  return HOST_LE ? bswap32(x >>> 0) : x >>> 0;
}

/**
 * A preallocated send buffer of verdict messages for one queue, written
 * back to back with u32 stores (same bytes as {@link putVerdict}, about
 * 7x faster). Send `bytes[0, length)` as one datagram, then {@link clear}.
 */
export class VerdictBuffer {
  /** The message bytes (4-byte aligned, never reallocated). */
  readonly bytes: Uint8Array;
  /** Bytes used. */
  length = 0;
  /** Number of messages in the buffer. */
  messages = 0;
  private readonly words: Uint32Array;
  private readonly limit: number;
  private readonly typeFlags: number;
  private readonly batchTypeFlags: number;
  private readonly nfgen: number;
  private readonly verdictAttr: number;
  private readonly markAttr: number;

  /** `size` bytes (at least one message); verdicts carry `queue` in res_id. */
  constructor(size: number, queue: number) {
    const words = Math.floor(size / 4);
    if (words * 4 < VERDICT_MARK_MSG_LEN) throw new RangeError("verdict buffer too small");
    this.words = new Uint32Array(new ArrayBuffer(words * 4));
    this.bytes = new Uint8Array(this.words.buffer);
    this.limit = words * 4 - VERDICT_MARK_MSG_LEN;
    // Host-order words of the constant fields, taken from the reference encoder.
    const t = new Uint32Array(VERDICT_MARK_MSG_LEN / 4);
    putVerdict(new DataView(t.buffer), 0, queue, 0, 0, 0);
    this.typeFlags = t[1];
    putVerdict(new DataView(t.buffer), 0, queue, 0, 0, 0, 0, true);
    this.batchTypeFlags = t[1];
    this.nfgen = t[4];
    this.verdictAttr = t[5];
    this.markAttr = t[8];
  }

  /** Whether another message may not fit (flush first). */
  get full(): boolean {
    return this.length > this.limit;
  }

  /**
   * Append the verdict for a handler result (docs/COMPATIBILITY.md#packet-decisions): `v >= 0` NF_ACCEPT with
   * mark `v` (u32), else NF_DROP without mark. With `batch`, for every queued
   * packet up to `id` (see {@link putVerdict}). Returns false (nothing
   * written) when {@link full}.
   */
  add(id: number, v: number, batch = false): boolean {
    return v >= 0
      ? this.addVerdict(id, NF_ACCEPT, v, batch)
      : this.addVerdict(id, NF_DROP, -1, batch);
  }

  /**
   * Append a verdict (a batch verdict with `batch`); `mark < 0` omits
   * NFQA_MARK. Returns false when full.
   */
  addVerdict(id: number, verdict: number, mark: number, batch = false): boolean {
    if (this.length > this.limit) return false;
    const w = this.words;
    const i = this.length >>> 2;
    let len = VERDICT_MSG_LEN;
    if (mark >= 0) {
      len = VERDICT_MARK_MSG_LEN;
      w[i + 8] = this.markAttr;
      w[i + 9] = beWord(mark);
    }
    w[i] = len;
    w[i + 1] = batch ? this.batchTypeFlags : this.typeFlags;
    w[i + 2] = 0;
    w[i + 3] = 0;
    w[i + 4] = this.nfgen;
    w[i + 5] = this.verdictAttr;
    w[i + 6] = beWord(verdict);
    w[i + 7] = beWord(id);
    this.length += len;
    this.messages++;
    return true;
  }

  /** Empty the buffer. */
  clear(): void {
    this.length = 0;
    this.messages = 0;
  }
}
