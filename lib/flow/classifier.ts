/**
 * Compiled flow classifier for `flowlb`: exactly the answers of
 * {@link matchFlowLinear} (SPEC 6.5, 6.6, 5.4 with defect #18 fixed), at a
 * per-packet cost that grows far slower than the number of flows.
 *
 * ## Design
 * Flows are numbered in matching order (priority descending, stable), so the
 * winner is the lowest-numbered flow in the intersection of the per-field
 * flow sets that passes its per-flow checks (byte matches). Sets are bitsets
 * over flow numbers (W = ⌈N/32⌉ 32-bit words), mostly stored sparsely:
 * - **dst / src address**: the distinct CIDRs (128-bit keys, IPv4 mapped)
 *   form a laminar family of prefixes. The address space is cut into
 *   elementary intervals at every prefix start and end + 1; a binary search
 *   over the sorted boundaries gives the innermost prefix containing the
 *   address, and its parent chain lists every prefix containing it. IPv4
 *   keys search a compact copy of the `::ffff:0:0/96` boundaries (last word
 *   only) behind a 4096-bucket first-level index. Each prefix stores its
 *   flows as a sparse bitset (sorted (word, bits) pairs); flows without the
 *   field (or with a `/0` CIDR) form the "base" set.
 * - **protocol**: four dense bitsets (tcp, udp, sctp, other key protocol).
 * - **dport / sport**: each flow's ranges are split into aligned
 *   power-of-two port blocks (≤ 30 per range): prefixes of the 16-bit port,
 *   so the same prefix machinery applies, with a 65536-entry table giving the
 *   innermost block of a port. Flows needing more than
 *   {@link PORT_PREFIX_LIMIT} blocks are not indexed: they sit in the base
 *   and are checked against their own ranges when they are candidates.
 *
 * Per packet: the destination is looked up first; every further field is
 * looked up only while the best field so far still leaves more than a few
 * candidate words (the big tables are cache-cold; a handful of candidate
 * flows is cheaper to check against their own CIDRs and ranges, kept in
 * compact per-flow records). The field with the fewest candidate words
 * drives: its sorted sparse lists (chain prefixes + base) are merged in word
 * order, each word is ANDed with the protocol bitset and the other looked-up
 * fields (binary search in their chains), and the surviving bits are tried
 * in order; the first flow that decides ends the search. No allocation per
 * packet; the scratch state makes an instance single-threaded (each worker
 * compiles its own).
 *
 * With promiscuous ping and a key protocol of ICMP/ICMPv6, the protocol,
 * port and byte-match fields are skipped (SPEC 6.6).
 *
 * ## Cost per packet
 * O(log #boundaries) for the address lookups (O(1) bucket + a few steps for
 * IPv4), O(1) per port, then O(candidate words × looked-up fields) plus the
 * per-flow checks of the candidate bits until the winner. When no field is
 * selective (e.g. every flow matches every address and port) the walk is
 * over all ⌈N/32⌉ words — still 32 flows per step, never worse than that.
 *
 * ## Memory
 * Linear in the flow definitions ({@link Classifier.memoryBytes} reports it):
 * - per address field ≈ 64 bytes per distinct CIDR (a 16-byte prefix record,
 *   ≤ 2 interval boundaries of 20 bytes, +16 bytes for the compact copy of
 *   IPv4 ones) + 8 bytes per (CIDR, flow) pair + 16 KiB of first-level index;
 * - per port field 8 bytes per (block, flow) pair (≤ {@link PORT_PREFIX_LIMIT}
 *   blocks per flow) + 16 bytes per distinct block (≤ 131071) + a 256 KiB
 *   port table;
 * - per flow a 40-byte record, 8 bytes per port range, 20 bytes per source
 *   CIDR and per statement; protocol and base bitsets ≈ 9 × ⌈N/32⌉ × 4 bytes.
 *
 * No structure is quadratic: elementary intervals store only their innermost
 * prefix, and a set is stored once per prefix, never per interval. Worst case
 * for 10000 flows, every flow at the limits with distinct CIDRs (32 `dsts` +
 * 32 `srcs`, `dports` and `sports` of ≈ 60 blocks each): ≈ 57 MB, compiled
 * in ≈ 1.1–1.6 s; the 10000 realistic flows of `bench/classifier_bench.ts`:
 * ≈ 2.6 MB, compiled in ≈ 30–45 ms (timings on the project's test VM).
 *
 * @example
 * ```ts
 * import { compileFlows } from "./classifier.ts";
 * import { FlowMatch } from "./match.ts";
 * import { KeyParse, parseKeyInto, ETH_P_IP } from "../packet/parse.ts";
 * import { PROTO_UDP, type Flow } from "./types.ts";
 *
 * const dns: Flow = {
 *   name: "dns", priority: 5, target: "lb-dns", protocols: PROTO_UDP,
 *   dsts: undefined, srcs: undefined, dports: [{ lo: 53, hi: 53 }], sports: undefined,
 *   match: undefined, udpencap: 0,
 * };
 * const cls = compileFlows([dns]); // off the hot path, on every change
 * // IPv4 UDP 1.2.3.4:4000 -> 5.6.7.8:53
 * const pkt = new Uint8Array(36);
 * pkt.set([0x45, 0, 0, 36, 0, 0, 0, 0, 64, 17, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0x0f, 0xa0, 0, 53]);
 * const kp = new KeyParse();
 * const out = new FlowMatch();
 * parseKeyInto(kp, pkt, pkt.length, ETH_P_IP, 0);
 * cls.classify(kp.key, pkt, 0, pkt.length, false, out); // 0
 * ```
 * @module
 */

import type { Cidr, Flow, PortRange } from "./types.ts";
import { PROTO_SCTP, PROTO_TCP, PROTO_UDP } from "./types.ts";
import { FlowMatch, locateMatchL4, MatchL4, statementHolds, statementProto } from "./match.ts";
import {
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_SCTP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  KEY_DPORT,
  KEY_DST,
  KEY_PROTO,
  KEY_SPORT,
  KEY_SRC,
} from "../packet/hash.ts";

/**
 * Port sets needing more aligned blocks than this are not indexed (their
 * flows are checked against their ranges when they are candidates). Bounds
 * the port index at 64 entries per flow.
 */
export const PORT_PREFIX_LIMIT = 64;

/** Options of {@link compileFlows}. */
export interface CompileOptions {
  /**
   * Every matching flow can win, whatever its target (trace flows, SPEC
   * 9.4). Default false: flowlb semantics (SPEC 5.4).
   */
  anyFlowWins?: boolean;
}

// Per-flow record (Int32Array, REC ints per flow).
const REC = 10;
const R_FLAGS = 0; // HAS_* | V_* | kind << KIND_SHIFT
const R_ENCAP = 1; // udpencap
const R_DP = 2; // dports ranges [start, end) in `ranges` (pairs)
const R_SP = 4; // sports ranges
const R_SRC = 6; // source CIDRs [start, end) in `srcCidrs`
const R_ST = 8; // statements [start, end) in `stmts`

// Flags: fields a flow restricts (checked per flow when not looked up) ...
const HAS_SRC = 1;
const HAS_DPORT = 2;
const HAS_SPORT = 4;
// ... and checks the indexes never settle.
const V_MATCH = 8; // byte-match statements
const V_DPORTS = 16; // dports not indexed (too many blocks)
const V_SPORTS = 32; // sports not indexed
const V_ANY = V_MATCH | V_DPORTS | V_SPORTS;
const KIND_SHIFT = 6;

// Flow kinds: what a matching flow does to the scan.
const KIND_WIN = 0; // has a target (or anyFlowWins): wins
const KIND_HELPER = 1; // no target, udpencap != 0: stops the scan and reports udpencap
const KIND_PASSIVE = 2; // no target, no udpencap: never decides

const SRC_STRIDE = 5; // 4 masked address words + prefix
const ST_STRIDE = 5; // proto, offset, nbytes, mask, value

/**
 * Once the best field leaves at most this many candidate words, the other
 * address/port fields are not looked up: the candidate flows are checked
 * against their own CIDRs and ranges instead.
 */
const LAZY_WORDS = 4;

// Protocol classes of a key.
const PC_TCP = 0;
const PC_UDP = 1;
const PC_SCTP = 2;
const PC_OTHER = 3;

// scanWord results besides a winner index.
const SCAN_ON = -1; // nothing decided: continue
const SCAN_HELPER = -2; // a helper flow stopped the scan

// First-level index of the IPv4-mapped boundaries: top V4_BITS bits of the address.
const V4_BITS = 12;
const V4_SHIFT = 32 - V4_BITS;

const EMPTY_I32 = new Int32Array(0);

/**
 * One indexed field: a family of nested prefixes (address CIDRs or port
 * blocks), each with a sparse flow bitset, the base set of flows that match
 * every value, and per-instance scratch.
 */
class FieldIndex {
  /** Some flow restricts this field (otherwise it is skipped). */
  declare readonly active: boolean;
  /** Address fields: sorted interval starts, 4 biased BE words each. */
  declare readonly bounds: Int32Array;
  /** Address fields: innermost prefix of each interval, -1 none. */
  declare readonly boundNode: Int32Array;
  /**
   * Address fields: the intervals inside `::ffff:0:0/96` as pairs (last word
   * XOR 0x80000000 so that signed order is address order, prefix); the first
   * pair starts at `::ffff:0.0.0.0`.
   */
  declare readonly v4Pairs: Int32Array;
  /** Address fields: per top-12-bit bucket t, the last pair starting at or before t·2^20 (4097 entries). */
  declare readonly v4Index: Int32Array;
  /** Port fields: innermost block of each port (65536 entries), -1 none. */
  declare readonly portNode: Int32Array;
  /** Number of prefixes; prefix `nodes` is a pseudo-prefix holding the base set. */
  declare readonly nodes: number;
  /** Per prefix: parent (-1 none; parents are numbered first), entries start, entries end, 0. */
  declare readonly nodeRec: Int32Array;
  /** Sparse bitsets: (word index, bits) pairs, ascending words within a prefix. */
  declare readonly ent: Int32Array;
  /** Flows matching every value (dense, W words). */
  declare readonly base: Int32Array;
  /** Number of non-zero words of {@link base}. */
  declare readonly baseWords: number;
  /** Scratch: the prefixes containing the current value, innermost first. */
  declare readonly chain: Int32Array;
  /** Scratch: length of {@link chain}. */
  declare chainLen: number;
  /** Scratch: entry cursors of the merge when this field drives the search. */
  declare readonly cur: Int32Array;
  /** Scratch: end of each cursor's entries. */
  declare readonly curEnd: Int32Array;

  constructor(
    active: boolean,
    bounds: Int32Array,
    boundNode: Int32Array,
    portNode: Int32Array,
    parent: Int32Array,
    entries: EntryBuilder,
    base: Int32Array,
  ) {
    this.active = active;
    this.bounds = bounds;
    this.boundNode = boundNode;
    const v4 = active && bounds.length > 0 ? buildV4(bounds, boundNode) : null;
    this.v4Pairs = v4 === null ? EMPTY_I32 : v4.pairs;
    this.v4Index = v4 === null ? EMPTY_I32 : v4.index;
    this.portNode = portNode;
    const nodes = parent.length;
    this.nodes = nodes;
    entries.addWords(base); // the base pseudo-prefix
    const nodeRec = new Int32Array(4 * (nodes + 1));
    for (let p = 0; p <= nodes; p++) {
      nodeRec[4 * p] = p < nodes ? parent[p] : -1;
      nodeRec[4 * p + 1] = entries.start[p];
      nodeRec[4 * p + 2] = entries.start[p + 1];
    }
    this.nodeRec = nodeRec;
    this.ent = Int32Array.from(entries.ent);
    this.base = base;
    this.baseWords = entries.start[nodes + 1] - entries.start[nodes];
    // Nested prefixes along one value: at most 128 (address, /0 folded into the base) or 17.
    const depth = active ? chainDepth(parent) : 0;
    this.chain = new Int32Array(depth);
    this.chainLen = 0;
    this.cur = new Int32Array(depth + 1);
    this.curEnd = new Int32Array(depth + 1);
  }

  /** Bytes of typed-array storage. */
  bytes(): number {
    return this.bounds.byteLength + this.boundNode.byteLength + this.v4Pairs.byteLength +
      this.v4Index.byteLength + this.portNode.byteLength + this.nodeRec.byteLength +
      this.ent.byteLength + this.base.byteLength + this.chain.byteLength +
      this.cur.byteLength + this.curEnd.byteLength;
  }
}

/** Longest parent chain; parents are numbered before their children. */
function chainDepth(parent: Int32Array): number {
  const depth = new Int32Array(parent.length);
  let max = 1;
  for (let p = 0; p < parent.length; p++) {
    const d = parent[p] < 0 ? 1 : depth[parent[p]] + 1;
    depth[p] = d;
    if (d > max) max = d;
  }
  return max;
}

/**
 * Loads the chain of prefixes containing the value whose innermost prefix is
 * `node`; returns the number of candidate words if the field drove the
 * search (its chain's entries plus its base words).
 */
function loadChain(f: FieldIndex, node: number): number {
  const rec = f.nodeRec, chain = f.chain;
  let len = 0;
  let cnt = f.baseWords;
  for (let n = node; n >= 0; n = rec[n << 2]) {
    chain[len++] = n;
    cnt += rec[(n << 2) + 2] - rec[(n << 2) + 1];
  }
  f.chainLen = len;
  return cnt;
}

/** Word `j` of the field's set for the loaded chain: base, plus a binary search per prefix. */
function lookupWord(f: FieldIndex, j: number): number {
  let w = f.base[j];
  const chain = f.chain, rec = f.nodeRec, ent = f.ent;
  for (let c = f.chainLen - 1; c >= 0; c--) {
    const n = chain[c] << 2;
    let lo = rec[n + 1];
    let hi = rec[n + 2] - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const x = ent[mid << 1];
      if (x < j) lo = mid + 1;
      else if (x > j) hi = mid - 1;
      else {
        w |= ent[(mid << 1) + 1];
        break;
      }
    }
  }
  return w;
}

/** Starts merging the sparse lists of the loaded chain and the base; returns the cursor count. */
function openCursors(f: FieldIndex): number {
  const rec = f.nodeRec, chain = f.chain, cur = f.cur, curEnd = f.curEnd;
  let nc = 0;
  for (let c = 0; c <= f.chainLen; c++) {
    const n = (c < f.chainLen ? chain[c] : f.nodes) << 2;
    if (rec[n + 1] < rec[n + 2]) {
      cur[nc] = rec[n + 1];
      curEnd[nc++] = rec[n + 2];
    }
  }
  return nc;
}

/**
 * Address words are kept "biased" (XOR 0x80000000, as int32) so that signed
 * comparisons of small integers order them like the unsigned values.
 */
const BIAS = 0x80000000 | 0;
/** Biased 0xffff: the third word of an IPv4-mapped address. */
const BIASED_FFFF = (0xffff ^ 0x80000000) | 0;

/** Big-endian u32 of the key at `o`, biased. */
function rdBiased(k: Uint8Array, o: number): number {
  return ((k[o] << 24) | (k[o + 1] << 16) | (k[o + 2] << 8) | k[o + 3]) ^ BIAS;
}

/** Big-endian u32 of the key at `o` (raw bits as int32). */
function rd32(k: Uint8Array, o: number): number {
  return (k[o] << 24) | (k[o + 1] << 16) | (k[o + 2] << 8) | k[o + 3];
}

/** Innermost prefix containing the 16-byte address at `key[at]`, -1 none. */
function addrNode(f: FieldIndex, key: Uint8Array, at: number): number {
  const a0 = rdBiased(key, at), a1 = rdBiased(key, at + 4), a2 = rdBiased(key, at + 8);
  const a3 = rdBiased(key, at + 12);
  if (a0 === BIAS && a1 === BIAS && a2 === BIASED_FFFF) {
    // IPv4-mapped: bucket by the top bits, then a short binary search over the last words.
    const pairs = f.v4Pairs;
    let lo = f.v4Index[(a3 ^ BIAS) >>> V4_SHIFT];
    let hi = f.v4Index[((a3 ^ BIAS) >>> V4_SHIFT) + 1];
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (pairs[mid << 1] <= a3) lo = mid;
      else hi = mid - 1;
    }
    return pairs[(lo << 1) + 1];
  }
  const b = f.bounds;
  // Largest k with bounds[k] <= a; bounds[0] is ::.
  let lo = 0;
  let hi = f.boundNode.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    const p = mid << 2;
    let x = b[p];
    let le: boolean;
    if (x !== a0) le = x < a0;
    else if ((x = b[p + 1]) !== a1) le = x < a1;
    else if ((x = b[p + 2]) !== a2) le = x < a2;
    else le = b[p + 3] <= a3;
    if (le) lo = mid;
    else hi = mid - 1;
  }
  return f.boundNode[lo];
}

/** Whether the key's port at `keyOff` lies in the ranges of flow record `r`'s port field `field`. */
function recordPortIn(
  rec: Int32Array,
  ranges: Int32Array,
  r: number,
  field: number,
  key: Uint8Array,
  keyOff: number,
): boolean {
  return rangesContain(
    ranges,
    rec[r + field],
    rec[r + field + 1],
    (key[keyOff] << 8) | key[keyOff + 1],
  );
}

/** True if `port` lies in one of the [lo, hi] pairs number `s .. e - 1` of `ranges`. */
function rangesContain(ranges: Int32Array, s: number, e: number, port: number): boolean {
  for (let r = s; r < e; r++) {
    if (port >= ranges[r << 1] && port <= ranges[(r << 1) + 1]) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------
// Compilation

/** Sparse bitsets of prefixes under construction. */
class EntryBuilder {
  readonly start: number[] = [0];
  readonly ent: number[] = [];

  /** Appends the set of the next prefix from ascending, possibly repeated flow numbers. */
  addSet(flows: readonly number[]): void {
    let last = -1;
    for (const i of flows) {
      const w = i >>> 5;
      if (w !== last) {
        this.ent.push(w, 0);
        last = w;
      }
      this.ent[this.ent.length - 1] |= 1 << (i & 31);
    }
    this.start.push(this.ent.length >>> 1);
  }

  /** Appends a prefix whose set is the dense bitset `bits`. */
  addWords(bits: Int32Array): void {
    for (let j = 0; j < bits.length; j++) if (bits[j] !== 0) this.ent.push(j, bits[j]);
    this.start.push(this.ent.length >>> 1);
  }
}

function setBit(bits: Int32Array, i: number): void {
  bits[i >>> 5] |= 1 << (i & 31);
}

function inactiveField(base: Int32Array): FieldIndex {
  return new FieldIndex(
    false,
    EMPTY_I32,
    EMPTY_I32,
    EMPTY_I32,
    EMPTY_I32,
    new EntryBuilder(),
    base,
  );
}

/** The compact IPv4-mapped copy of the sorted (biased) boundaries and its first-level index. */
function buildV4(
  bounds: Int32Array,
  boundNode: Int32Array,
): { pairs: Int32Array; index: Int32Array } {
  const nb = boundNode.length;
  const inRegion = (k: number) =>
    bounds[4 * k] === BIAS && bounds[4 * k + 1] === BIAS && bounds[4 * k + 2] === BIASED_FFFF;
  // Interval containing ::ffff:0.0.0.0: the last boundary at or below it.
  const atOrBelowStart = (k: number) =>
    bounds[4 * k] === BIAS && bounds[4 * k + 1] === BIAS &&
    (bounds[4 * k + 2] < BIASED_FFFF ||
      (bounds[4 * k + 2] === BIASED_FFFF && bounds[4 * k + 3] === BIAS));
  let k = 0;
  while (k + 1 < nb && atOrBelowStart(k + 1)) k++;
  const pairs: number[] = [BIAS, boundNode[k]];
  for (k++; k < nb && inRegion(k); k++) pairs.push(bounds[4 * k + 3], boundNode[k]);
  const np = pairs.length >>> 1;
  const index = new Int32Array((1 << V4_BITS) + 1);
  let p = 0;
  for (let t = 0; t <= 1 << V4_BITS; t++) {
    const at = t * 2 ** V4_SHIFT; // bucket start as an unsigned value (2^32 for the sentinel)
    while (p + 1 < np && ((pairs[2 * (p + 1)] ^ BIAS) >>> 0) <= at) p++;
    index[t] = p;
  }
  return { pairs: Int32Array.from(pairs), index };
}

/** Builds the address index of `dsts` or `srcs`. */
function buildAddrField(
  flows: readonly Flow[],
  pick: (f: Flow) => readonly Cidr[] | undefined,
  words: number,
): FieldIndex {
  const n = flows.length;
  const base = new Int32Array(words);
  const indexed = (c: readonly Cidr[] | undefined): c is readonly Cidr[] =>
    c !== undefined && !c.some((x) => x.prefix === 0);
  let m = 0;
  let active = false;
  for (let i = 0; i < n; i++) {
    const cidrs = pick(flows[i]);
    if (indexed(cidrs)) {
      active = true;
      m += cidrs.length;
    } else setBit(base, i);
  }
  if (!active) return inactiveField(base);
  // Entries: (biased masked address words, prefix, flow).
  const ew = new Int32Array(4 * m);
  const ep = new Int32Array(m);
  const ef = new Int32Array(m);
  let e = 0;
  for (let i = 0; i < n; i++) {
    const cidrs = pick(flows[i]);
    if (!indexed(cidrs)) continue;
    for (const c of cidrs) {
      maskInto(c.addr, c.prefix, ew, 4 * e);
      ep[e] = c.prefix;
      ef[e++] = i;
    }
  }
  // Stable LSD radix sort by (address, prefix); entries of one prefix stay in flow order.
  const radix = new RadixSorter(m);
  const digit = new Int32Array(m);
  for (let q = 0; q < m; q++) digit[q] = ep[q];
  radix.pass(digit, 129);
  // 16-bit digits for big sets (fewer passes), 8-bit ones otherwise (smaller count table).
  const dbits = m >= 1 << 16 ? 16 : 8;
  for (let k = 128 / dbits - 1; k >= 0; k--) {
    const word = (k * dbits) >>> 5, shift = 32 - dbits - ((k * dbits) & 31);
    const mask = (1 << dbits) - 1;
    for (let q = 0; q < m; q++) digit[q] = ((ew[4 * q + word] ^ BIAS) >>> shift) & mask;
    radix.pass(digit, 1 << dbits);
  }
  const order = radix.order;
  // Group equal (address, prefix) into prefixes, ordered by start then length.
  const nodeStart = new Int32Array(4 * m);
  const nodeEnd = new Int32Array(4 * m);
  const eb = new EntryBuilder();
  const ent = eb.ent;
  let nodes = 0;
  let lastWord = -1;
  let y = -1;
  for (let q = 0; q < m; q++) {
    const x = order[q];
    const x4 = 4 * x;
    if (
      y < 0 || ep[y] !== ep[x] || ew[4 * y] !== ew[x4] || ew[4 * y + 1] !== ew[x4 + 1] ||
      ew[4 * y + 2] !== ew[x4 + 2] || ew[4 * y + 3] !== ew[x4 + 3]
    ) {
      if (nodes > 0) eb.start.push(ent.length >>> 1);
      for (let k = 0; k < 4; k++) {
        const bits = ep[x] - 32 * k;
        const sw = ew[x4 + k];
        nodeStart[4 * nodes + k] = sw;
        // Last address: host bits set.
        nodeEnd[4 * nodes + k] = bits >= 32 ? sw : bits <= 0 ? ~BIAS : sw | (-1 >>> bits);
      }
      nodes++;
      lastWord = -1;
    }
    const w = ef[x] >>> 5;
    if (w !== lastWord) {
      ent.push(w, 0);
      lastWord = w;
    }
    ent[ent.length - 1] |= 1 << (ef[x] & 31);
    y = x;
  }
  if (nodes > 0) eb.start.push(ent.length >>> 1);
  // Sweep: interval boundaries with their innermost prefix, and prefix parents.
  const parent = new Int32Array(nodes);
  const bw = new Int32Array(4 * (2 * nodes + 1)).fill(BIAS); // boundary 0 is ::
  const bn = new Int32Array(2 * nodes + 1).fill(-1);
  let nb = 1;
  const stack = new Int32Array(nodes);
  let sp = 0;
  /** The interval from boundary (w0..w3) on has innermost prefix `node`. */
  const emit = (w0: number, w1: number, w2: number, w3: number, node: number) => {
    const L = 4 * (nb - 1);
    if (bw[L] === w0 && bw[L + 1] === w1 && bw[L + 2] === w2 && bw[L + 3] === w3) {
      bn[nb - 1] = node; // same position: the later prefix wins
    } else {
      bw[4 * nb] = w0;
      bw[4 * nb + 1] = w1;
      bw[4 * nb + 2] = w2;
      bw[4 * nb + 3] = w3;
      bn[nb++] = node;
    }
  };
  /** Closes the popped prefix `t`: boundary at end(t) + 1, none past the last address. */
  const close = (t: number) => {
    let c0 = nodeEnd[4 * t], c1 = nodeEnd[4 * t + 1], c2 = nodeEnd[4 * t + 2];
    let c3 = nodeEnd[4 * t + 3];
    if (c3 !== ~BIAS) c3++;
    else if (c2 !== ~BIAS) {
      c3 = BIAS;
      c2++;
    } else if (c1 !== ~BIAS) {
      c3 = c2 = BIAS;
      c1++;
    } else if (c0 !== ~BIAS) {
      c3 = c2 = c1 = BIAS;
      c0++;
    } else return;
    emit(c0, c1, c2, c3, sp > 0 ? stack[sp - 1] : -1);
  };
  const endBefore = (t: number, p: number) => {
    for (let k = 0; k < 4; k++) {
      const d = nodeEnd[4 * t + k] - nodeStart[4 * p + k];
      if (d !== 0) return d < 0;
    }
    return false;
  };
  for (let p = 0; p < nodes; p++) {
    while (sp > 0 && endBefore(stack[sp - 1], p)) close(stack[--sp]);
    parent[p] = sp > 0 ? stack[sp - 1] : -1;
    stack[sp++] = p;
    emit(nodeStart[4 * p], nodeStart[4 * p + 1], nodeStart[4 * p + 2], nodeStart[4 * p + 3], p);
  }
  while (sp > 0) close(stack[--sp]);
  const bounds = bw.slice(0, 4 * nb);
  const boundNode = bn.slice(0, nb);
  return new FieldIndex(true, bounds, boundNode, EMPTY_I32, parent, eb, base);
}

/** Writes the 16-byte address masked to `prefix` bits as 4 biased BE words at `out[at]`. */
function maskInto(addr: Uint8Array, prefix: number, out: Int32Array, at: number): void {
  for (let k = 0; k < 4; k++) {
    const v = (addr[k * 4] << 24) | (addr[k * 4 + 1] << 16) | (addr[k * 4 + 2] << 8) |
      addr[k * 4 + 3];
    const bits = prefix - k * 32;
    out[at + k] = (bits >= 32 ? v : bits <= 0 ? 0 : v & (-1 << (32 - bits))) ^ BIAS;
  }
}

/**
 * Aligned power-of-two blocks covering `ranges`, as `prefixLength << 16 | firstPort`
 * codes (prefix length 0..16); null if there are more than {@link PORT_PREFIX_LIMIT}.
 */
function portBlocks(ranges: readonly PortRange[]): number[] | null {
  const out: number[] = [];
  for (const r of ranges) {
    let lo = Math.max(0, r.lo);
    const hi = Math.min(65535, r.hi);
    while (lo <= hi) {
      let plen = lo === 0 ? 0 : 16 - (31 - Math.clz32(lo & -lo)); // largest block aligned at lo
      while (lo + (1 << (16 - plen)) - 1 > hi) plen++;
      if (out.length >= PORT_PREFIX_LIMIT) return null;
      out.push((plen << 16) | lo);
      lo += 1 << (16 - plen);
    }
  }
  return out;
}

/** Builds the port index of `dports` or `sports`; flags unindexed flows with `unindexed`. */
function buildPortField(
  flows: readonly Flow[],
  pick: (f: Flow) => readonly PortRange[] | undefined,
  words: number,
  flags: Int32Array,
  unindexed: number,
): FieldIndex {
  const n = flows.length;
  const base = new Int32Array(words);
  // (block, flow) pairs; block = prefix length << 16 | first port, so that ascending
  // order puts larger blocks (parents) first.
  const pb: number[] = [];
  const pf: number[] = [];
  let active = false;
  for (let i = 0; i < n; i++) {
    const ranges = pick(flows[i]);
    if (ranges === undefined) {
      setBit(base, i);
      continue;
    }
    active = true;
    const blocks = portBlocks(ranges);
    if (blocks === null) {
      setBit(base, i);
      flags[i * REC + R_FLAGS] |= unindexed;
      continue;
    }
    for (const b of blocks) {
      pb.push(b);
      pf.push(i);
    }
  }
  if (!active) return inactiveField(base);
  const m = pb.length;
  const radix = new RadixSorter(m);
  const digit = new Int32Array(m);
  for (let q = 0; q < m; q++) digit[q] = pb[q] & 0xff;
  radix.pass(digit, 256);
  for (let q = 0; q < m; q++) digit[q] = (pb[q] >>> 8) & 0xff;
  radix.pass(digit, 256);
  for (let q = 0; q < m; q++) digit[q] = pb[q] >>> 16;
  radix.pass(digit, 17);
  const order = radix.order;
  const table = new Int32Array(65536).fill(-1);
  const parent: number[] = [];
  const eb = new EntryBuilder();
  const ent = eb.ent;
  let lastWord = -1;
  for (let q = 0; q < m; q++) {
    const x = order[q];
    if (q === 0 || pb[order[q - 1]] !== pb[x]) {
      const p = parent.length;
      if (p > 0) eb.start.push(ent.length >>> 1);
      const lo = pb[x] & 0xffff;
      parent.push(table[lo]);
      table.fill(p, lo, lo + (1 << (16 - (pb[x] >>> 16))));
      lastWord = -1;
    }
    const w = pf[x] >>> 5;
    if (w !== lastWord) {
      ent.push(w, 0);
      lastWord = w;
    }
    ent[ent.length - 1] |= 1 << (pf[x] & 31);
  }
  if (m > 0) eb.start.push(ent.length >>> 1);
  return new FieldIndex(true, EMPTY_I32, EMPTY_I32, table, Int32Array.from(parent), eb, base);
}

/** Stable LSD radix sort of the numbers 0 .. m-1 by successive digit keys. */
class RadixSorter {
  /** The current order. */
  order: Int32Array;
  private tmp: Int32Array;
  private count: Int32Array;

  constructor(m: number) {
    this.count = new Int32Array((m >= 1 << 16 ? 65536 : 256) + 1);
    this.order = new Int32Array(m);
    for (let q = 0; q < m; q++) this.order[q] = q;
    this.tmp = new Int32Array(m);
  }

  /**
   * Stably reorders by `digit[x]` (0 .. size - 1; size ≤ 256, or ≤ 65536 when m ≥ 65536),
   * less significant keys having been sorted first.
   */
  pass(digit: Int32Array, size: number): void {
    const count = this.count, order = this.order, tmp = this.tmp, m = order.length;
    count.fill(0, 0, size + 1);
    for (let q = 0; q < m; q++) count[digit[q] + 1]++;
    for (let d = 0; d < size; d++) if (count[d + 1] === m) return; // one value: order unchanged
    for (let d = 0; d < size; d++) count[d + 1] += count[d];
    for (let q = 0; q < m; q++) tmp[count[digit[order[q]]]++] = order[q];
    this.order = tmp;
    this.tmp = order;
  }
}

const emptyMatch = new FlowMatch();

/**
 * An immutable compiled form of a flow list (see the module documentation),
 * plus per-instance scratch: use one instance per thread.
 */
export class Classifier {
  /** The flows, in matching order; indices returned by {@link classify} refer to it. */
  declare readonly flows: readonly Flow[];
  /** Number of flows. */
  declare readonly size: number;
  /** Bitset words (⌈size / 32⌉). */
  declare private readonly words: number;
  declare private readonly dst: FieldIndex;
  declare private readonly src: FieldIndex;
  declare private readonly dport: FieldIndex;
  declare private readonly sport: FieldIndex;
  /** Some flow has `protocols`. */
  declare private readonly protoActive: boolean;
  /** 4 dense bitsets (tcp, udp, sctp, other key protocol), `words` each. */
  declare private readonly protoBits: Int32Array;
  /** Non-zero words of each protocol bitset. */
  declare private readonly protoWords: Int32Array;
  /** All flows. */
  declare private readonly all: Int32Array;
  /** Per-flow records (REC ints each, see R_*). */
  declare private readonly rec: Int32Array;
  /** Port ranges of all flows: [lo, hi] pairs. */
  declare private readonly ranges: Int32Array;
  /** Source CIDRs of all flows: 4 masked words + prefix each. */
  declare private readonly srcCidrs: Int32Array;
  /** Byte-match statements of all flows: proto, offset, nbytes, mask, value each. */
  declare private readonly stmts: Int32Array;
  /** Scratch: the key's source address as 4 BE words. */
  declare private readonly keySrc: Int32Array;
  /** Scratch: the byte-match L4 header of the current packet. */
  declare private readonly l4: MatchL4;
  /** Scratch: 0 = L4 header not located yet, 1 = located, 2 = none (statements fail). */
  declare private l4State: number;

  /** Compiles `flows` (matching order); prefer {@link compileFlows}. */
  constructor(flows: readonly Flow[], opts: CompileOptions = {}) {
    const n = flows.length;
    const words = (n + 31) >>> 5;
    this.flows = flows;
    this.size = n;
    this.words = words;
    const rec = new Int32Array(n * REC);
    this.dst = buildAddrField(flows, (f) => f.dsts, words);
    this.src = buildAddrField(flows, (f) => f.srcs, words);
    this.dport = buildPortField(flows, (f) => f.dports, words, rec, V_DPORTS);
    this.sport = buildPortField(flows, (f) => f.sports, words, rec, V_SPORTS);
    const protoBits = new Int32Array(4 * words);
    const all = new Int32Array(words);
    const ranges: number[] = [];
    const srcCidrs: number[] = [];
    const stmts: number[] = [];
    const srcWords = new Int32Array(4);
    let protoActive = false;
    for (let i = 0; i < n; i++) {
      const f = flows[i];
      const r = i * REC;
      setBit(all, i);
      const p = f.protocols;
      if (p !== undefined) protoActive = true;
      if (p === undefined || (p & PROTO_TCP) !== 0) setBit(protoBits, PC_TCP * words * 32 + i);
      if (p === undefined || (p & PROTO_UDP) !== 0) setBit(protoBits, PC_UDP * words * 32 + i);
      if (p === undefined || (p & PROTO_SCTP) !== 0) setBit(protoBits, PC_SCTP * words * 32 + i);
      if (p === undefined) setBit(protoBits, PC_OTHER * words * 32 + i);
      const kind = opts.anyFlowWins === true || f.target !== undefined
        ? KIND_WIN
        : f.udpencap !== 0
        ? KIND_HELPER
        : KIND_PASSIVE;
      let flags = rec[r + R_FLAGS] | (kind << KIND_SHIFT);
      rec[r + R_ENCAP] = f.udpencap;
      rec[r + R_SRC] = srcCidrs.length / SRC_STRIDE;
      if (f.srcs !== undefined) {
        flags |= HAS_SRC;
        for (const c of f.srcs) {
          const at = srcCidrs.length;
          srcCidrs.push(0, 0, 0, 0, c.prefix);
          maskInto(c.addr, c.prefix, srcWords, 0);
          for (let k = 0; k < 4; k++) srcCidrs[at + k] = srcWords[k] ^ BIAS;
        }
      }
      rec[r + R_SRC + 1] = srcCidrs.length / SRC_STRIDE;
      rec[r + R_DP] = ranges.length >>> 1;
      if (f.dports !== undefined) {
        flags |= HAS_DPORT;
        for (const q of f.dports) ranges.push(q.lo, q.hi);
      }
      rec[r + R_DP + 1] = ranges.length >>> 1;
      rec[r + R_SP] = ranges.length >>> 1;
      if (f.sports !== undefined) {
        flags |= HAS_SPORT;
        for (const q of f.sports) ranges.push(q.lo, q.hi);
      }
      rec[r + R_SP + 1] = ranges.length >>> 1;
      rec[r + R_ST] = stmts.length / ST_STRIDE;
      if (f.match !== undefined && f.match.length > 0) {
        flags |= V_MATCH;
        for (const s of f.match) {
          stmts.push(statementProto(s), s.offset, s.nbytes, s.mask | 0, s.value | 0);
        }
      }
      rec[r + R_ST + 1] = stmts.length / ST_STRIDE;
      rec[r + R_FLAGS] = flags;
    }
    this.protoActive = protoActive;
    this.protoBits = protoBits;
    const protoWords = new Int32Array(4);
    for (let j = 0; j < 4 * words; j++) if (protoBits[j] !== 0) protoWords[(j / words) | 0]++;
    this.protoWords = protoWords;
    this.all = all;
    this.rec = rec;
    this.ranges = Int32Array.from(ranges);
    this.srcCidrs = Int32Array.from(srcCidrs);
    this.stmts = Int32Array.from(stmts);
    this.keySrc = new Int32Array(4);
    this.l4 = new MatchL4();
    this.l4State = 0;
  }

  /** Bytes of typed-array storage of this instance (index and scratch). */
  memoryBytes(): number {
    return this.dst.bytes() + this.src.bytes() + this.dport.bytes() + this.sport.bytes() +
      this.protoBits.byteLength + this.protoWords.byteLength + this.all.byteLength +
      this.rec.byteLength + this.ranges.byteLength + this.srcCidrs.byteLength +
      this.stmts.byteLength + this.keySrc.byteLength;
  }

  /**
   * Classifies one packet: exactly {@link matchFlowLinear}`(flows, key, pkt,
   * off, len, promiscuousPing, out)` (and, with `anyFlowWins`, its
   * `anyFlowWins` form). `key` is the packet's 40-byte key, `pkt[off, off +
   * len)` the packet (read only for byte matches). Returns the index of the
   * winning flow or -1; `out` tells which flow decided, the reported
   * `udpencap`, and counts matches when `out.counts` is set. Allocation-free.
   */
  classify(
    key: Uint8Array,
    pkt: Uint8Array,
    off: number,
    len: number,
    promiscuousPing: boolean,
    out: FlowMatch = emptyMatch,
  ): number {
    out.flow = -1;
    out.udpencap = 0;
    out.promiscuous = false;
    if (this.size === 0) return -1;
    const keyProto = key[KEY_PROTO] | (key[KEY_PROTO + 1] << 8);
    const promisc = promiscuousPing && (keyProto === IPPROTO_ICMP || keyProto === IPPROTO_ICMPV6);
    const words = this.words;
    this.l4State = 0;

    // Look the fields up while they are worth it; the smallest candidate set drives.
    const dst = this.dst, src = this.src, dport = this.dport, sport = this.sport;
    const pA = this.protoActive && !promisc;
    const pc = keyProto === IPPROTO_TCP
      ? PC_TCP
      : keyProto === IPPROTO_UDP
      ? PC_UDP
      : keyProto === IPPROTO_SCTP
      ? PC_SCTP
      : PC_OTHER;
    let best = pA ? this.protoWords[pc] : words;
    let driver: FieldIndex | null = null;
    let pending = 0; // fields checked per candidate flow
    let dL = false, sL = false, dpL = false, spL = false; // fields looked up
    if (dst.active) {
      dL = true;
      const c = loadChain(dst, addrNode(dst, key, KEY_DST));
      if (c < best) {
        best = c;
        driver = dst;
      }
    }
    if (dport.active && !promisc) {
      if (best <= LAZY_WORDS) pending |= HAS_DPORT;
      else {
        dpL = true;
        const c = loadChain(dport, dport.portNode[(key[KEY_DPORT] << 8) | key[KEY_DPORT + 1]]);
        if (c < best) {
          best = c;
          driver = dport;
        }
      }
    }
    if (src.active) {
      if (best <= LAZY_WORDS) {
        pending |= HAS_SRC;
        const ks = this.keySrc;
        ks[0] = rd32(key, KEY_SRC);
        ks[1] = rd32(key, KEY_SRC + 4);
        ks[2] = rd32(key, KEY_SRC + 8);
        ks[3] = rd32(key, KEY_SRC + 12);
      } else {
        sL = true;
        const c = loadChain(src, addrNode(src, key, KEY_SRC));
        if (c < best) {
          best = c;
          driver = src;
        }
      }
    }
    if (sport.active && !promisc) {
      if (best <= LAZY_WORDS) pending |= HAS_SPORT;
      else {
        spL = true;
        const c = loadChain(sport, sport.portNode[(key[KEY_SPORT] << 8) | key[KEY_SPORT + 1]]);
        if (c < best) {
          best = c;
          driver = sport;
        }
      }
    }
    dL = dL && driver !== dst;
    sL = sL && driver !== src;
    dpL = dpL && driver !== dport;
    spL = spL && driver !== sport;
    const protoBits = this.protoBits;
    const pw = pc * words;

    let r = SCAN_ON;
    if (driver !== null) {
      // Merge the driver's sorted lists (chain prefixes + base) in word order.
      const cur = driver.cur, curEnd = driver.curEnd, ent = driver.ent;
      let nc = openCursors(driver);
      while (nc > 0) {
        let j = ent[cur[0] << 1];
        for (let c = 1; c < nc; c++) {
          const x = ent[cur[c] << 1];
          if (x < j) j = x;
        }
        let w = 0;
        for (let c = 0; c < nc;) {
          const e = cur[c];
          if (ent[e << 1] === j) {
            w |= ent[(e << 1) + 1];
            if (e + 1 === curEnd[c]) {
              nc--;
              cur[c] = cur[nc];
              curEnd[c] = curEnd[nc];
              continue;
            }
            cur[c] = e + 1;
          }
          c++;
        }
        if (pA) w &= protoBits[pw + j];
        if (w !== 0 && dL) w &= lookupWord(dst, j);
        if (w !== 0 && dpL) w &= lookupWord(dport, j);
        if (w !== 0 && sL) w &= lookupWord(src, j);
        if (w !== 0 && spL) w &= lookupWord(sport, j);
        if (w !== 0) {
          r = this.scanWord(j, w, key, pkt, off, len, keyProto, promisc, pending, out);
          if (r !== SCAN_ON) break;
        }
      }
    } else {
      // No selective field: walk all words.
      const all = this.all;
      for (let j = 0; j < words; j++) {
        let w = all[j];
        if (pA) w &= protoBits[pw + j];
        if (w !== 0 && dL) w &= lookupWord(dst, j);
        if (w !== 0 && dpL) w &= lookupWord(dport, j);
        if (w !== 0 && sL) w &= lookupWord(src, j);
        if (w !== 0 && spL) w &= lookupWord(sport, j);
        if (w !== 0) {
          r = this.scanWord(j, w, key, pkt, off, len, keyProto, promisc, pending, out);
          if (r !== SCAN_ON) break;
        }
      }
    }
    return r >= 0 ? r : -1;
  }

  /**
   * Tries the candidate flows of word `j` (bits `w`: every looked-up field
   * matches) in order: checks the `pending` fields, byte matches and
   * unindexed port sets per flow, counts matches, and returns the winner's
   * index, {@link SCAN_HELPER} or {@link SCAN_ON}, filling `out` when
   * something decided.
   */
  private scanWord(
    j: number,
    w: number,
    key: Uint8Array,
    pkt: Uint8Array,
    off: number,
    len: number,
    keyProto: number,
    promisc: boolean,
    pending: number,
    out: FlowMatch,
  ): number {
    const rec = this.rec, counts = out.counts;
    while (w !== 0) {
      const b = w & -w;
      w ^= b;
      const i = (j << 5) + 31 - Math.clz32(b);
      const r = i * REC;
      const flags = rec[r + R_FLAGS];
      const p = pending & flags;
      if (p !== 0) {
        if ((p & HAS_SRC) !== 0 && !this.srcMatch(rec[r + R_SRC], rec[r + R_SRC + 1])) continue;
        if ((p & HAS_DPORT) !== 0 && !recordPortIn(rec, this.ranges, r, R_DP, key, KEY_DPORT)) {
          continue;
        }
        if ((p & HAS_SPORT) !== 0 && !recordPortIn(rec, this.ranges, r, R_SP, key, KEY_SPORT)) {
          continue;
        }
      }
      if ((flags & V_ANY) !== 0 && !promisc) {
        if ((flags & V_MATCH) !== 0) {
          if (this.l4State === 0) {
            this.l4State = locateMatchL4(pkt, off, len, keyProto, this.l4) ? 1 : 2;
          }
          if (this.l4State === 2 || !this.statementsHold(rec[r + R_ST], rec[r + R_ST + 1], pkt)) {
            continue;
          }
        }
        if ((flags & V_DPORTS) !== 0 && !recordPortIn(rec, this.ranges, r, R_DP, key, KEY_DPORT)) {
          continue;
        }
        if ((flags & V_SPORTS) !== 0 && !recordPortIn(rec, this.ranges, r, R_SP, key, KEY_SPORT)) {
          continue;
        }
      }
      if (counts !== null) counts[i]++;
      const kind = flags >>> KIND_SHIFT;
      if (kind === KIND_WIN) {
        out.flow = i;
        out.promiscuous = promisc;
        out.udpencap = promisc ? 0 : rec[r + R_ENCAP];
        return i;
      }
      if (kind === KIND_HELPER && !promisc) {
        out.flow = i;
        out.udpencap = rec[r + R_ENCAP];
        return SCAN_HELPER;
      }
    }
    return SCAN_ON;
  }

  /** True if the key source ({@link keySrc}) lies in one of the source CIDRs `s .. e - 1`. */
  private srcMatch(s: number, e: number): boolean {
    const ks = this.keySrc, sc = this.srcCidrs;
    next: for (let c = s; c < e; c++) {
      const at = c * SRC_STRIDE;
      let bits = sc[at + 4];
      for (let k = 0; k < 4 && bits > 0; k++, bits -= 32) {
        const m = bits >= 32 ? -1 : ~(-1 >>> bits);
        if (((ks[k] ^ sc[at + k]) & m) !== 0) continue next;
      }
      return true;
    }
    return false;
  }

  /** The byte-match statements `s .. e - 1` against the located L4 header. */
  private statementsHold(s: number, e: number, pkt: Uint8Array): boolean {
    const st = this.stmts, l4off = this.l4.offset, l4proto = this.l4.proto;
    for (let q = s; q < e; q++) {
      const at = q * ST_STRIDE;
      if (
        st[at] === l4proto &&
        !statementHolds(pkt, l4off + st[at + 1], st[at + 2], st[at + 3], st[at + 4])
      ) {
        return false;
      }
    }
    return true;
  }
}

/**
 * Compiles a flow list (matching order: priority descending, stable — as the
 * flow store keeps it) into an immutable {@link Classifier}. Linear in the
 * size of the flow definitions (10000 realistic flows: tens of milliseconds).
 */
export function compileFlows(flows: readonly Flow[], opts?: CompileOptions): Classifier {
  return new Classifier(flows, opts);
}
