/**
 * The nf_tables netlink numbers the fast path uses (kernel UAPI
 * `linux/netfilter/nf_tables.h` and `linux/netfilter/nfnetlink.h`), and the
 * messages built from them: batch begin/end, tables, sets (maps), chains,
 * rules with their expressions, set elements and counter objects. Every
 * builder appends one message to an {@link NlBuilder}; a batch is
 * {@link batchBegin}, the messages, {@link batchEnd}, sent as one datagram (the
 * kernel applies a batch as one transaction: all of it or nothing).
 *
 * @example
 * ```ts
 * import { NlBuilder } from "./builder.ts";
 * import { batchBegin, batchEnd, delTable } from "./nf_tables.ts";
 * const b = new NlBuilder(512);
 * batchBegin(b, 1);
 * delTable(b, 2, "nfqlb");
 * batchEnd(b, 3);
 * b.length; // 20 + 32 + 20
 * ```
 * @module
 */
import { NLM_F_ACK, NLM_F_REQUEST } from "../nfqueue/codec.ts";
import type { NlBuilder } from "./builder.ts";

/** `NFNL_SUBSYS_NFTABLES`. */
export const NFNL_SUBSYS_NFTABLES = 10;
/** `NFNL_MSG_BATCH_BEGIN`. */
export const NFNL_MSG_BATCH_BEGIN = 0x10;
/** `NFNL_MSG_BATCH_END`. */
export const NFNL_MSG_BATCH_END = 0x11;
/** `NFPROTO_INET`: the family of an `inet` table (IPv4 and IPv6). */
export const NFPROTO_INET = 1;
/** `NFPROTO_IPV4`. */
export const NFPROTO_IPV4 = 2;
/** `NFPROTO_IPV6`. */
export const NFPROTO_IPV6 = 10;
/** `NLM_F_CREATE`. */
export const NLM_F_CREATE = 0x400;
/** `NLM_F_APPEND`: a new rule goes after the chain's last one. */
export const NLM_F_APPEND = 0x800;
/** `NLM_F_REPLACE`: the new rule takes the place of the one with the given handle. */
export const NLM_F_REPLACE = 0x100;
/** `NLM_F_ECHO`: send the new object back to the requester. */
export const NLM_F_ECHO = 0x8;

/** `enum nf_tables_msg_types`, the ones used here. */
export const NFT_MSG_NEWTABLE = 0;
export const NFT_MSG_DELTABLE = 2;
export const NFT_MSG_NEWCHAIN = 3;
export const NFT_MSG_NEWRULE = 6;
export const NFT_MSG_NEWSET = 9;
export const NFT_MSG_NEWSETELEM = 12;
export const NFT_MSG_DELSETELEM = 14;
export const NFT_MSG_NEWOBJ = 18;
export const NFT_MSG_GETOBJ = 19;
/** Delete elements, without an error for one that is not there (Linux 6.3). */
export const NFT_MSG_DESTROYSETELEM = 30;

/** `NFT_TABLE_F_OWNER`: the table belongs to the socket that made it and goes when it closes. */
export const NFT_TABLE_F_OWNER = 0x2;
/** `NFT_SET_MAP`. */
export const NFT_SET_MAP = 0x8;
/** `NFT_SET_TIMEOUT`. */
export const NFT_SET_TIMEOUT = 0x10;
/** `NFT_OBJECT_COUNTER`. */
export const NFT_OBJECT_COUNTER = 1;
/** `NF_INET_PRE_ROUTING`. */
export const NF_INET_PRE_ROUTING = 0;
/** `NF_ACCEPT` (a chain's policy). */
export const NF_ACCEPT = 1;

/** `NFTA_TABLE_*`. */
const NFTA_TABLE_NAME = 1, NFTA_TABLE_FLAGS = 2;
/** `NFTA_CHAIN_*`, `NFTA_HOOK_*`. */
const NFTA_CHAIN_TABLE = 1, NFTA_CHAIN_NAME = 3, NFTA_CHAIN_HOOK = 4, NFTA_CHAIN_POLICY = 5;
const NFTA_CHAIN_TYPE = 7, NFTA_HOOK_HOOKNUM = 1, NFTA_HOOK_PRIORITY = 2;
/** `NFTA_RULE_*`, `NFTA_LIST_ELEM`, `NFTA_EXPR_*`. */
const NFTA_RULE_TABLE = 1, NFTA_RULE_CHAIN = 2, NFTA_RULE_HANDLE = 3, NFTA_RULE_EXPRESSIONS = 4;
const NFTA_LIST_ELEM = 1, NFTA_EXPR_NAME = 1, NFTA_EXPR_DATA = 2;
/** `NFTA_SET_*`, `NFTA_SET_DESC_*`. */
const NFTA_SET_TABLE = 1, NFTA_SET_NAME = 2, NFTA_SET_FLAGS = 3, NFTA_SET_KEY_TYPE = 4;
const NFTA_SET_KEY_LEN = 5, NFTA_SET_DATA_TYPE = 6, NFTA_SET_DATA_LEN = 7, NFTA_SET_DESC = 9;
const NFTA_SET_ID = 10, NFTA_SET_TIMEOUT = 11, NFTA_SET_DESC_SIZE = 1;
/** `NFTA_SET_ELEM_LIST_*`, `NFTA_SET_ELEM_*`, `NFTA_DATA_VALUE`. */
const NFTA_SET_ELEM_LIST_TABLE = 1, NFTA_SET_ELEM_LIST_SET = 2, NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_SET_ELEM_KEY = 1, NFTA_SET_ELEM_DATA = 2, NFTA_SET_ELEM_TIMEOUT = 4;
const NFTA_DATA_VALUE = 1;
/** `NFTA_OBJ_*`. */
const NFTA_OBJ_TABLE = 1, NFTA_OBJ_NAME = 2, NFTA_OBJ_TYPE = 3, NFTA_OBJ_DATA = 4;

/**
 * The sequence number after `seq`. A netlink header holds 32 bits, so 2^32 - 1 is followed by 0:
 * a sender keeps its numbers in that range, and the kernel's answers quote them as sent.
 */
export function nextSeq(seq: number): number {
  return (seq + 1) >>> 0;
}

/** nf_tables message type of command `cmd`. */
function msgType(cmd: number): number {
  return (NFNL_SUBSYS_NFTABLES << 8) | cmd;
}

/** Start a batch (sequence number `seq`). */
export function batchBegin(b: NlBuilder, seq: number): void {
  b.begin(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, 0, NFNL_SUBSYS_NFTABLES);
  b.end();
}

/** End a batch. */
export function batchEnd(b: NlBuilder, seq: number): void {
  b.begin(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq, 0, NFNL_SUBSYS_NFTABLES);
  b.end();
}

/** Create `inet` table `name` (no error if it exists), with `flags` (e.g. {@link NFT_TABLE_F_OWNER}). */
export function newTable(b: NlBuilder, seq: number, name: string, flags = 0): void {
  b.begin(
    msgType(NFT_MSG_NEWTABLE),
    NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK,
    seq,
    NFPROTO_INET,
    0,
  );
  b.strz(NFTA_TABLE_NAME, name);
  b.u32(NFTA_TABLE_FLAGS, flags);
  b.end();
}

/** Delete `inet` table `name` with everything in it. */
export function delTable(b: NlBuilder, seq: number, name: string): void {
  b.begin(msgType(NFT_MSG_DELTABLE), NLM_F_REQUEST | NLM_F_ACK, seq, NFPROTO_INET, 0);
  b.strz(NFTA_TABLE_NAME, name);
  b.end();
}

/** A map with a timeout, as {@link newMap} creates it. */
export interface MapSpec {
  readonly table: string;
  readonly name: string;
  /** Set id, unique in the batch (rules of the same batch refer to the set by it). */
  readonly id: number;
  /** nft's key type number (a concatenation: `concatType`). */
  readonly keyType: number;
  /** Key length in bytes (each concatenated field padded to 4). */
  readonly keyLen: number;
  /** nft's data type number (19: mark). */
  readonly dataType: number;
  readonly dataLen: number;
  /** Most elements the map holds. */
  readonly size: number;
  /** Default element timeout, ms. */
  readonly timeoutMs: number;
}

/** nft's number of a concatenated type: each field's type number, 6 bits each, first field highest. */
export function concatType(types: readonly number[]): number {
  let t = 0;
  for (const x of types) t = t * 64 + x;
  return t;
}

/** Create a map with timeouts (`flags timeout`, bounded `size`). */
export function newMap(b: NlBuilder, seq: number, m: MapSpec): void {
  b.begin(msgType(NFT_MSG_NEWSET), NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK, seq, NFPROTO_INET, 0);
  b.strz(NFTA_SET_TABLE, m.table);
  b.strz(NFTA_SET_NAME, m.name);
  b.u32(NFTA_SET_FLAGS, NFT_SET_MAP | NFT_SET_TIMEOUT);
  b.u32(NFTA_SET_KEY_TYPE, m.keyType);
  b.u32(NFTA_SET_KEY_LEN, m.keyLen);
  b.u32(NFTA_SET_DATA_TYPE, m.dataType);
  b.u32(NFTA_SET_DATA_LEN, m.dataLen);
  b.u32(NFTA_SET_ID, m.id);
  b.open(NFTA_SET_DESC);
  b.u32(NFTA_SET_DESC_SIZE, m.size);
  b.close();
  b.u64(NFTA_SET_TIMEOUT, m.timeoutMs);
  b.end();
}

/** Create a named counter object. */
export function newCounter(b: NlBuilder, seq: number, table: string, name: string): void {
  b.begin(msgType(NFT_MSG_NEWOBJ), NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK, seq, NFPROTO_INET, 0);
  b.strz(NFTA_OBJ_TABLE, table);
  b.strz(NFTA_OBJ_NAME, name);
  b.u32(NFTA_OBJ_TYPE, NFT_OBJECT_COUNTER);
  b.open(NFTA_OBJ_DATA);
  b.close();
  b.end();
}

/** Ask for a counter object's values (the reply: `parseCounterObject` of ./replies.ts). */
export function getCounter(b: NlBuilder, seq: number, table: string, name: string): void {
  b.begin(msgType(NFT_MSG_GETOBJ), NLM_F_REQUEST | NLM_F_ACK, seq, NFPROTO_INET, 0);
  b.strz(NFTA_OBJ_TABLE, table);
  b.strz(NFTA_OBJ_NAME, name);
  b.u32(NFTA_OBJ_TYPE, NFT_OBJECT_COUNTER);
  b.end();
}

/** Create a base chain of type filter on `hook` with `priority`, policy accept. */
export function newBaseChain(
  b: NlBuilder,
  seq: number,
  table: string,
  name: string,
  hook: number,
  priority: number,
): void {
  b.begin(
    msgType(NFT_MSG_NEWCHAIN),
    NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK,
    seq,
    NFPROTO_INET,
    0,
  );
  b.strz(NFTA_CHAIN_TABLE, table);
  b.strz(NFTA_CHAIN_NAME, name);
  b.open(NFTA_CHAIN_HOOK);
  b.u32(NFTA_HOOK_HOOKNUM, hook);
  b.u32(NFTA_HOOK_PRIORITY, priority);
  b.close();
  b.u32(NFTA_CHAIN_POLICY, NF_ACCEPT);
  b.strz(NFTA_CHAIN_TYPE, "filter");
  b.end();
}

/** One expression of a rule: appends its `NFTA_EXPR_DATA` attributes. */
export type Expression = { readonly name: string; readonly data: (b: NlBuilder) => void };

/**
 * Append a rule made of `exprs` to chain `chain`, or with `replace` put it in the place of
 * the rule with that handle (one transaction entry, whatever the rule refers to). With
 * `echo` the kernel sends the new rule back, with its handle (`readRuleHandles` of
 * ./replies.ts), under the request's sequence number.
 */
export function newRule(
  b: NlBuilder,
  seq: number,
  table: string,
  chain: string,
  exprs: readonly Expression[],
  opts: { readonly replace?: number; readonly echo?: boolean } = {},
): void {
  const flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK |
    (opts.replace === undefined ? NLM_F_APPEND : NLM_F_REPLACE) | (opts.echo ? NLM_F_ECHO : 0);
  b.begin(msgType(NFT_MSG_NEWRULE), flags, seq, NFPROTO_INET, 0);
  b.strz(NFTA_RULE_TABLE, table);
  b.strz(NFTA_RULE_CHAIN, chain);
  if (opts.replace !== undefined) b.u64(NFTA_RULE_HANDLE, opts.replace);
  b.open(NFTA_RULE_EXPRESSIONS);
  for (const e of exprs) {
    b.open(NFTA_LIST_ELEM);
    b.strz(NFTA_EXPR_NAME, e.name);
    b.open(NFTA_EXPR_DATA);
    e.data(b);
    b.close();
    b.close();
  }
  b.close();
  b.end();
}

/**
 * Open a NEWSETELEM message for `set` of `table` (NLM_F_CREATE without
 * NLM_F_EXCL: an element that exists with the same value is not an error;
 * acknowledged, so the sender knows when the batch is applied), or with
 * `cmd` {@link NFT_MSG_DESTROYSETELEM} a removal; add elements with
 * {@link setElement} or {@link keyElement}, then {@link endSetElements}.
 */
export function beginSetElements(
  b: NlBuilder,
  seq: number,
  table: string,
  set: string,
  cmd: number = NFT_MSG_NEWSETELEM,
): void {
  b.begin(msgType(cmd), NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK, seq, NFPROTO_INET, 0);
  b.strz(NFTA_SET_ELEM_LIST_TABLE, table);
  b.strz(NFTA_SET_ELEM_LIST_SET, set);
  b.open(NFTA_SET_ELEM_LIST_ELEMENTS);
}

/** One element given by its key alone, `key[from, from + keyLen)` (a set element, or a removal). */
export function keyElement(b: NlBuilder, key: Uint8Array, from: number, keyLen: number): void {
  b.open(NFTA_LIST_ELEM);
  b.open(NFTA_SET_ELEM_KEY);
  b.bytesAttr(NFTA_DATA_VALUE, key, from, keyLen);
  b.close();
  b.close();
}

/** One element: key `key[from, from + keyLen)`, value `mark` (host order, as `meta mark`), timeout. */
export function setElement(
  b: NlBuilder,
  key: Uint8Array,
  from: number,
  keyLen: number,
  markBytes: Uint8Array,
  timeoutMs: number,
): void {
  b.open(NFTA_LIST_ELEM);
  b.open(NFTA_SET_ELEM_KEY);
  b.bytesAttr(NFTA_DATA_VALUE, key, from, keyLen);
  b.close();
  b.open(NFTA_SET_ELEM_DATA);
  b.bytesAttr(NFTA_DATA_VALUE, markBytes, 0, 4);
  b.close();
  b.u64(NFTA_SET_ELEM_TIMEOUT, timeoutMs);
  b.close();
}

/** Close the message {@link beginSetElements} opened. */
export function endSetElements(b: NlBuilder): void {
  b.close();
  b.end();
}

/**
 * Remove every element of `set` (DELSETELEM without elements: the kernel flushes the set,
 * one transaction entry per element).
 */
export function flushSet(b: NlBuilder, seq: number, table: string, set: string): void {
  b.begin(msgType(NFT_MSG_DELSETELEM), NLM_F_REQUEST | NLM_F_ACK, seq, NFPROTO_INET, 0);
  b.strz(NFTA_SET_ELEM_LIST_TABLE, table);
  b.strz(NFTA_SET_ELEM_LIST_SET, set);
  b.end();
}
