/**
 * NFQNL_MSG_CONFIG requests (queue configuration) as bytes: pure, no FFI. The layouts and numbers come from the kernel
 * UAPI header `linux/netfilter/nfnetlink_queue.h` (`enum nfqnl_msg_config_cmds`,
 * `struct nfqnl_msg_config_cmd`, `enum nfqnl_config_mode`,
 * `struct nfqnl_msg_config_params`, `enum nfqnl_attr_config`, the
 * `NFQA_CFG_F_*` flags); the headers as in `./codec.ts`. See
 * docs/COMPATIBILITY.md#nfqueue for how a queue is opened.
 *
 * ```
 * nlmsghdr | nfgenmsg {AF_UNSPEC, 0, be16 queue} | attributes:
 *   NFQA_CFG_CMD           {u8 command, u8 pad, be16 pf}
 *   NFQA_CFG_PARAMS        {be32 copy_range, u8 copy_mode} (5 bytes, padded)
 *   NFQA_CFG_QUEUE_MAXLEN  be32
 *   NFQA_CFG_MASK          be32 (which flags to change)
 *   NFQA_CFG_FLAGS         be32
 * ```
 *
 * The kernel (`nfqnl_recv_config`) handles the command of a message first
 * and then, in the same call, its other attributes: one {@link bindRequest}
 * creates the queue and gives it its copy mode, length and flags, so packets
 * are copied whole from (almost) the first one on.
 *
 * @example
 * ```ts
 * import { bindRequest } from "./config.ts";
 * const msg = bindRequest({ queue: 2, mtu: 1500, qlength: 1024, failOpen: false }, 1);
 * msg.length; // 64
 * ```
 * @module
 */
import {
  HOST_LE,
  NFGEN_OFF_FAMILY,
  NFGEN_OFF_RES_ID,
  NFGEN_OFF_VERSION,
  NFNETLINK_V0,
  NFNL_ATTR_START,
  NFNL_SUBSYS_QUEUE,
  NFQNL_MSG_CONFIG,
  NLA_HDRLEN,
  nlAlign,
  NLM_F_ACK,
  NLM_F_REQUEST,
  NLMSG_OFF_FLAGS,
  NLMSG_OFF_LEN,
  NLMSG_OFF_PID,
  NLMSG_OFF_SEQ,
  NLMSG_OFF_TYPE,
} from "./codec.ts";

/** Full nlmsg_type of a configuration request (0x0302). */
export const NFQ_TYPE_CONFIG: number = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_CONFIG;

/** `enum nfqnl_msg_config_cmds`: bind the queue to this socket. */
export const NFQNL_CFG_CMD_BIND = 1;
/** `enum nfqnl_msg_config_cmds`: unbind the queue. */
export const NFQNL_CFG_CMD_UNBIND = 2;
/** `enum nfqnl_msg_config_cmds`: legacy per-family handler bind (a no-op since Linux 3.8). */
export const NFQNL_CFG_CMD_PF_BIND = 3;
/** `enum nfqnl_msg_config_cmds`: legacy per-family handler unbind (a no-op since Linux 3.8). */
export const NFQNL_CFG_CMD_PF_UNBIND = 4;

/** `enum nfqnl_config_mode`: copy the packet (up to the copy range). */
export const NFQNL_COPY_PACKET = 2;

/** `enum nfqnl_attr_config`: `struct nfqnl_msg_config_cmd`. */
export const NFQA_CFG_CMD = 1;
/** `enum nfqnl_attr_config`: `struct nfqnl_msg_config_params`. */
export const NFQA_CFG_PARAMS = 2;
/** `enum nfqnl_attr_config`: be32 queue max length. */
export const NFQA_CFG_QUEUE_MAXLEN = 3;
/** `enum nfqnl_attr_config`: be32 mask of the flags to change. */
export const NFQA_CFG_MASK = 4;
/** `enum nfqnl_attr_config`: be32 flag values. */
export const NFQA_CFG_FLAGS = 5;

/** NFQA_CFG_FLAGS bit: accept packets instead of dropping them when the queue is full. */
export const NFQA_CFG_F_FAIL_OPEN: number = 1 << 0;
/** NFQA_CFG_FLAGS bit: deliver GSO packets unsegmented. */
export const NFQA_CFG_F_GSO: number = 1 << 2;

/** `struct nfqnl_msg_config_cmd` size. */
const CMD_LEN = 4;
/** `struct nfqnl_msg_config_params` size (packed). */
const PARAMS_LEN = 5;
/** Size of a be32 attribute's data. */
const U32_LEN = 4;

/** Size of a {@link commandRequest} message (28). */
export const COMMAND_MSG_LEN: number = NFNL_ATTR_START + NLA_HDRLEN + CMD_LEN;
/** Size of a {@link bindRequest} message (64). */
export const BIND_MSG_LEN: number = COMMAND_MSG_LEN + nlAlign(NLA_HDRLEN + PARAMS_LEN) +
  3 * (NLA_HDRLEN + U32_LEN);

/** The queue settings of {@link bindRequest}. */
export interface QueueConfig {
  /** Queue number, 0..65535. */
  readonly queue: number;
  /** Copy range (bytes of each packet copied to user space). */
  readonly mtu: number;
  /** Kernel queue max length. */
  readonly qlength: number;
  /** Set NFQA_CFG_F_FAIL_OPEN. */
  readonly failOpen: boolean;
}

/** Write the netlink + nfgenmsg headers of a config request of `len` bytes. */
function putHeader(v: DataView, len: number, queue: number, seq: number): number {
  v.setUint32(NLMSG_OFF_LEN, len, HOST_LE);
  v.setUint16(NLMSG_OFF_TYPE, NFQ_TYPE_CONFIG, HOST_LE);
  v.setUint16(NLMSG_OFF_FLAGS, NLM_F_REQUEST | NLM_F_ACK, HOST_LE);
  v.setUint32(NLMSG_OFF_SEQ, seq >>> 0, HOST_LE);
  v.setUint32(NLMSG_OFF_PID, 0, HOST_LE);
  v.setUint8(NFGEN_OFF_FAMILY, 0); // AF_UNSPEC
  v.setUint8(NFGEN_OFF_VERSION, NFNETLINK_V0);
  v.setUint16(NFGEN_OFF_RES_ID, queue & 0xffff, false);
  return NFNL_ATTR_START;
}

/** Write an attribute header at `off`; returns the offset of its data. */
function putAttr(v: DataView, off: number, type: number, dataLen: number): number {
  v.setUint16(off, NLA_HDRLEN + dataLen, HOST_LE);
  v.setUint16(off + 2, type, HOST_LE);
  return off + NLA_HDRLEN;
}

/** Write NFQA_CFG_CMD at `off`; returns the offset after it. */
function putCommand(v: DataView, off: number, command: number, pf: number): number {
  const d = putAttr(v, off, NFQA_CFG_CMD, CMD_LEN);
  v.setUint8(d, command);
  v.setUint8(d + 1, 0);
  v.setUint16(d + 2, pf & 0xffff, false);
  return d + CMD_LEN;
}

/** Write a be32 attribute at `off`; returns the offset after it. */
function putU32(v: DataView, off: number, type: number, value: number): number {
  const d = putAttr(v, off, type, U32_LEN);
  v.setUint32(d, value >>> 0, false);
  return d + U32_LEN;
}

/**
 * A config request with only NFQA_CFG_CMD (`command`, `pf`), flags
 * NLM_F_REQUEST | NLM_F_ACK and sequence number `seq`; e.g. the legacy
 * NFQNL_CFG_CMD_PF_UNBIND / PF_BIND for AF_INET (queue 0 as 1.2.0 sends
 * them: res_id is not used by those commands).
 */
export function commandRequest(
  queue: number,
  command: number,
  pf: number,
  seq: number,
): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(COMMAND_MSG_LEN);
  const v = new DataView(b.buffer);
  putCommand(v, putHeader(v, COMMAND_MSG_LEN, queue, seq), command, pf);
  return b;
}

/**
 * The one request that binds and configures a queue: NFQA_CFG_CMD
 * NFQNL_CFG_CMD_BIND, NFQA_CFG_PARAMS (NFQNL_COPY_PACKET, range = mtu),
 * NFQA_CFG_QUEUE_MAXLEN, NFQA_CFG_MASK (GSO | FAIL_OPEN) and NFQA_CFG_FLAGS
 * (GSO, plus FAIL_OPEN if requested); NLM_F_REQUEST | NLM_F_ACK.
 */
export function bindRequest(cfg: QueueConfig, seq: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(BIND_MSG_LEN);
  const v = new DataView(b.buffer);
  let off = putHeader(v, BIND_MSG_LEN, cfg.queue, seq);
  off = putCommand(v, off, NFQNL_CFG_CMD_BIND, 0);
  const d = putAttr(v, off, NFQA_CFG_PARAMS, PARAMS_LEN);
  v.setUint32(d, cfg.mtu >>> 0, false);
  v.setUint8(d + 4, NFQNL_COPY_PACKET);
  off = off + nlAlign(NLA_HDRLEN + PARAMS_LEN); // padding bytes stay 0
  off = putU32(v, off, NFQA_CFG_QUEUE_MAXLEN, cfg.qlength);
  off = putU32(v, off, NFQA_CFG_MASK, NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN);
  putU32(v, off, NFQA_CFG_FLAGS, NFQA_CFG_F_GSO | (cfg.failOpen ? NFQA_CFG_F_FAIL_OPEN : 0));
  return b;
}
