/**
 * What the kernel answers to nf_tables requests: the acknowledgements and
 * errors of a batch (`NLMSG_ERROR` messages, error 0 = ack), and the
 * values of a counter object (`NFT_MSG_NEWOBJ` in reply to `GETOBJ`).
 * Pure: bytes in, values out; malformed input gives no result rather than
 * an exception.
 *
 * @example
 * ```ts
 * import { readAcks } from "./replies.ts";
 * // one NLMSG_ERROR message: error -2 (ENOENT) for request seq 7
 * const m = new Uint8Array(36);
 * const v = new DataView(m.buffer);
 * v.setUint32(0, 36, true); v.setUint16(4, 2, true); v.setInt32(16, -2, true); v.setUint32(28, 7, true);
 * const acks: [number, number][] = [];
 * readAcks(m, m.length, (seq, errno) => acks.push([seq, errno]));
 * acks; // [[7, 2]]
 * ```
 * @module
 */
import {
  HOST_LE,
  NFNL_ATTR_START,
  NLA_HDRLEN,
  NLA_TYPE_MASK,
  nlAlign,
  NLMSG_ERROR,
  NLMSG_HDRLEN,
  NLMSG_OFF_LEN,
  NLMSG_OFF_SEQ,
  NLMSG_OFF_TYPE,
} from "../nfqueue/codec.ts";
import { NFNL_SUBSYS_NFTABLES, NFT_MSG_NEWOBJ, NFT_MSG_NEWRULE } from "./nf_tables.ts";

/**
 * Call `ack(seq, errno)` for every NLMSG_ERROR message in `buf[0, len)`:
 * `seq` is the request's sequence number (from the quoted request header),
 * `errno` 0 for an acknowledgement. Returns the number of messages seen.
 */
export function readAcks(
  buf: Uint8Array,
  len: number,
  ack: (seq: number, errno: number) => void,
): number {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 0;
  let n = 0;
  while (off + NLMSG_HDRLEN <= len) {
    const mlen = v.getUint32(off + NLMSG_OFF_LEN, HOST_LE);
    if (mlen < NLMSG_HDRLEN || off + mlen > len) break;
    n++;
    if (v.getUint16(off + NLMSG_OFF_TYPE, HOST_LE) === NLMSG_ERROR && mlen >= NLMSG_HDRLEN + 20) {
      const error = v.getInt32(off + NLMSG_HDRLEN, HOST_LE);
      const seq = v.getUint32(off + NLMSG_HDRLEN + 4 + NLMSG_OFF_SEQ, HOST_LE);
      ack(seq, error === 0 ? 0 : -error);
    }
    off += nlAlign(mlen);
  }
  return n;
}

/**
 * Call `rule(seq, handle)` for every `NFT_MSG_NEWRULE` message in `buf[0, len)` (the echo
 * of a rule sent with NLM_F_ECHO): the request's sequence number and the rule's handle.
 */
export function readRuleHandles(
  buf: Uint8Array,
  len: number,
  rule: (seq: number, handle: number) => void,
): void {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 0;
  while (off + NLMSG_HDRLEN <= len) {
    const mlen = v.getUint32(off + NLMSG_OFF_LEN, HOST_LE);
    if (mlen < NLMSG_HDRLEN || off + mlen > len) return;
    if (
      v.getUint16(off + NLMSG_OFF_TYPE, HOST_LE) === ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE)
    ) {
      const h = findAttr(v, off + NFNL_ATTR_START, off + mlen, 3); // NFTA_RULE_HANDLE
      if (h !== undefined && h.to - h.from === 8) {
        rule(v.getUint32(off + NLMSG_OFF_SEQ, HOST_LE), be64(v, h.from));
      }
    }
    off += nlAlign(mlen);
  }
}

/** Packets and bytes of a counter. */
export interface CounterValues {
  readonly packets: number;
  readonly bytes: number;
}

/** The values in an `NFT_MSG_NEWOBJ` reply for a counter object in `buf[0, len)`, if there is one. */
export function parseCounterObject(buf: Uint8Array, len: number): CounterValues | undefined {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 0;
  while (off + NLMSG_HDRLEN <= len) {
    const mlen = v.getUint32(off + NLMSG_OFF_LEN, HOST_LE);
    if (mlen < NLMSG_HDRLEN || off + mlen > len) return undefined;
    if (
      v.getUint16(off + NLMSG_OFF_TYPE, HOST_LE) === ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWOBJ)
    ) {
      const data = findAttr(v, off + NFNL_ATTR_START, off + mlen, 4); // NFTA_OBJ_DATA
      if (data === undefined) return undefined;
      const bytes = findAttr(v, data.from, data.to, 1); // NFTA_COUNTER_BYTES
      const packets = findAttr(v, data.from, data.to, 2); // NFTA_COUNTER_PACKETS
      if (bytes === undefined || packets === undefined) return undefined;
      return { packets: be64(v, packets.from), bytes: be64(v, bytes.from) };
    }
    off += nlAlign(mlen);
  }
  return undefined;
}

function be64(v: DataView, at: number): number {
  return v.getUint32(at, false) * 2 ** 32 + v.getUint32(at + 4, false);
}

/** The payload range of the first attribute of `type` in `[from, to)`. */
function findAttr(
  v: DataView,
  from: number,
  to: number,
  type: number,
): { from: number; to: number } | undefined {
  let off = from;
  while (off + NLA_HDRLEN <= to) {
    const alen = v.getUint16(off, HOST_LE);
    if (alen < NLA_HDRLEN || off + alen > to) return undefined;
    if ((v.getUint16(off + 2, HOST_LE) & NLA_TYPE_MASK) === type) {
      return { from: off + NLA_HDRLEN, to: off + alen };
    }
    off += nlAlign(alen);
  }
  return undefined;
}
