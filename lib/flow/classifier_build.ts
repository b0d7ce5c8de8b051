/**
 * Compilation of a flow list ({@link compileFlows}) into the tables the
 * compiled classifier (`Classifier` of `classifier.ts`) reads per packet, in
 * the layout of `classifier_layout.ts`: per-field prefix indexes with sparse
 * flow bitsets, dense protocol bitsets and compact per-flow records. Runs off
 * the hot path, on every flow change; linear in the size of the definitions.
 *
 * ## Tables
 * Flows are numbered in matching order (priority descending, stable); sets
 * of flows are bitsets over those numbers (W = ⌈N/32⌉ 32-bit words), mostly
 * stored sparsely:
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
 * - **per flow**: a record ({@link REC} ints: flags, udpencap, where its
 *   port ranges, source CIDRs and byte-match statements are) for the checks
 *   of candidate flows.
 *
 * ## Memory
 * Linear in the flow definitions (`Classifier.memoryBytes` reports it):
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
 * import { compileFlows } from "./classifier_build.ts";
 * const cls = compileFlows([]); // a Classifier (classifier.ts) that matches nothing
 * cls.size; // 0
 * ```
 * @module
 */

import type { Cidr, Flow, PortRange } from "./types.ts";
import { PROTO_SCTP, PROTO_TCP, PROTO_UDP } from "./types.ts";
import { statementProto } from "./match.ts";
import { Classifier } from "./classifier.ts";
import { type ClassifierTables, type FieldTables, LAYOUT } from "./classifier_layout.ts";

export type { ClassifierTables };

const {
  REC,
  R_FLAGS,
  R_ENCAP,
  R_DP,
  R_SP,
  R_SRC,
  R_ST,
  HAS_SRC,
  HAS_DPORT,
  HAS_SPORT,
  V_MATCH,
  V_DPORTS,
  V_SPORTS,
  KIND_SHIFT,
  KIND_WIN,
  KIND_HELPER,
  KIND_PASSIVE,
  SRC_STRIDE,
  ST_STRIDE,
  PC_TCP,
  PC_UDP,
  PC_SCTP,
  PC_OTHER,
  V4_BITS,
  V4_SHIFT,
  BIAS,
  BIASED_FFFF,
} = LAYOUT;

/**
 * Port sets needing more aligned blocks than this are not indexed (their
 * flows are checked against their ranges when they are candidates). Bounds
 * the port index at 64 entries per flow.
 */
export const PORT_PREFIX_LIMIT = 64;

/** Options of {@link compileFlows}. */
export interface CompileOptions {
  /**
   * Every matching flow can win, whatever its target (trace flows,
   * docs/COMPATIBILITY.md#trace-and-log). Default false: flowlb semantics (docs/COMPATIBILITY.md#packet-decisions).
   */
  anyFlowWins?: boolean;
}

const EMPTY_I32 = new Int32Array(0);

/**
 * One indexed field: a family of nested prefixes (address CIDRs or port
 * blocks), each with a sparse flow bitset, the base set of flows that match
 * every value, and per-instance scratch.
 */
export class FieldIndex implements FieldTables {
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

/** Compiles `flows` (matching order: priority descending, stable) into {@link ClassifierTables}. */
export function buildTables(flows: readonly Flow[], opts: CompileOptions = {}): ClassifierTables {
  const n = flows.length;
  const words = (n + 31) >>> 5;
  const rec = new Int32Array(n * REC);
  const dst = buildAddrField(flows, (f) => f.dsts, words);
  const src = buildAddrField(flows, (f) => f.srcs, words);
  const dport = buildPortField(flows, (f) => f.dports, words, rec, V_DPORTS);
  const sport = buildPortField(flows, (f) => f.sports, words, rec, V_SPORTS);
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
  const protoWords = new Int32Array(4);
  for (let j = 0; j < 4 * words; j++) if (protoBits[j] !== 0) protoWords[(j / words) | 0]++;
  return {
    size: n,
    words,
    dst,
    src,
    dport,
    sport,
    protoActive,
    protoBits,
    protoWords,
    all,
    rec,
    ranges: Int32Array.from(ranges),
    srcCidrs: Int32Array.from(srcCidrs),
    stmts: Int32Array.from(stmts),
  };
}

/**
 * Compiles a flow list (matching order: priority descending, stable — as the
 * flow store keeps it) into an immutable {@link Classifier}. Linear in the
 * size of the flow definitions (10000 realistic flows: tens of milliseconds).
 */
export function compileFlows(flows: readonly Flow[], opts?: CompileOptions): Classifier {
  return new Classifier(flows, buildTables(flows, opts));
}
