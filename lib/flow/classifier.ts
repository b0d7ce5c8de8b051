/**
 * Compiled flow classifier for `flowlb`: exactly the answers of
 * `matchFlowLinear` (`linear.ts`; docs/COMPATIBILITY.md#flows, #packet-decisions with defect #18 fixed),
 * at a per-packet cost that grows far slower than the number of flows. This
 * module is the per-packet part; `compileFlows` in `classifier_build.ts` builds
 * the tables (and documents them and their memory), whose layout both take from
 * `classifier_layout.ts`.
 *
 * ## Per packet
 * Flows are numbered in matching order, so the winner is the lowest-numbered
 * flow in the intersection of the per-field flow sets that passes its
 * per-flow checks (byte matches). The destination is looked up first; every
 * further field is looked up only while the best field so far still leaves
 * more than a few candidate words (the big tables are cache-cold; a handful
 * of candidate flows is cheaper to check against their own CIDRs and ranges,
 * kept in compact per-flow records). The field with the fewest candidate
 * words drives: its sorted sparse lists (chain prefixes + base) are merged
 * in word order, each word is ANDed with the protocol bitset and the other
 * looked-up fields (binary search in their chains), and the surviving bits
 * are tried in order; the first flow that decides ends the search. No
 * allocation per packet; the scratch state makes an instance
 * single-threaded (each worker compiles its own).
 *
 * With promiscuous ping and a key protocol of ICMP/ICMPv6, the protocol,
 * port and byte-match fields are skipped (docs/COMPATIBILITY.md#flows).
 *
 * ## Cost per packet
 * O(log #boundaries) for the address lookups (O(1) bucket + a few steps for
 * IPv4), O(1) per port, then O(candidate words × looked-up fields) plus the
 * per-flow checks of the candidate bits until the winner. When no field is
 * selective (e.g. every flow matches every address and port) the walk is
 * over all ⌈N/32⌉ words — still 32 flows per step, never worse than that.
 *
 * @example
 * ```ts
 * import { compileFlows } from "./classifier_build.ts";
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
 * cls.classify(kp, pkt, false, out); // 0
 * ```
 * @module
 */

import type { Flow } from "./types.ts";
import { FlowMatch, locateMatchL4, MatchL4, statementHolds } from "./match.ts";
import { type ClassifierTables, type FieldTables, LAYOUT } from "./classifier_layout.ts";
import type { KeyParse } from "../packet/parse.ts";
import { KEY_DPORT, KEY_DST, KEY_SPORT, KEY_SRC, keyProto } from "../packet/key.ts";
import {
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_SCTP,
  IPPROTO_TCP,
  IPPROTO_UDP,
} from "../wire/ip_proto.ts";

// The layout of the compiled tables (classifier_layout.ts), as module-private constants: the
// per-packet code reads these, which the JIT folds (imported bindings it does not: about 7%
// slower classification, bench/classifier_bench.ts).
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
  V_ANY,
  KIND_SHIFT,
  KIND_WIN,
  KIND_HELPER,
  SRC_STRIDE,
  ST_STRIDE,
  PC_TCP,
  PC_UDP,
  PC_SCTP,
  PC_OTHER,
  V4_SHIFT,
  BIAS,
  BIASED_FFFF,
} = LAYOUT;

/**
 * Once the best field leaves at most this many candidate words, the other
 * address/port fields are not looked up: the candidate flows are checked
 * against their own CIDRs and ranges instead.
 */
const LAZY_WORDS = 4;

// scanWord results besides a winner index.
const SCAN_ON = -1; // nothing decided: continue
const SCAN_HELPER = -2; // a helper flow stopped the scan

/**
 * Loads the chain of prefixes containing the value whose innermost prefix is
 * `node`; returns the number of candidate words if the field drove the
 * search (its chain's entries plus its base words).
 */
function loadChain(f: FieldTables, node: number): number {
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
function lookupWord(f: FieldTables, j: number): number {
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
function openCursors(f: FieldTables): number {
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

/** Big-endian u32 of the key at `o`, biased. */
function rdBiased(k: Uint8Array, o: number): number {
  return ((k[o] << 24) | (k[o + 1] << 16) | (k[o + 2] << 8) | k[o + 3]) ^ BIAS;
}

/** Big-endian u32 of the key at `o` (raw bits as int32). */
function rd32(k: Uint8Array, o: number): number {
  return (k[o] << 24) | (k[o + 1] << 16) | (k[o + 2] << 8) | k[o + 3];
}

/** Innermost prefix containing the 16-byte address at `key[at]`, -1 none. */
function addrNode(f: FieldTables, key: Uint8Array, at: number): number {
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
  declare private readonly dst: FieldTables;
  declare private readonly src: FieldTables;
  declare private readonly dport: FieldTables;
  declare private readonly sport: FieldTables;
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

  /** A classifier over `flows` and their compiled tables; use `compileFlows`. */
  constructor(flows: readonly Flow[], t: ClassifierTables) {
    this.flows = flows;
    this.size = t.size;
    this.words = t.words;
    this.dst = t.dst;
    this.src = t.src;
    this.dport = t.dport;
    this.sport = t.sport;
    this.protoActive = t.protoActive;
    this.protoBits = t.protoBits;
    this.protoWords = t.protoWords;
    this.all = t.all;
    this.rec = t.rec;
    this.ranges = t.ranges;
    this.srcCidrs = t.srcCidrs;
    this.stmts = t.stmts;
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
   * Classifies one packet: exactly `matchFlowLinear(flows, p, pkt,
   * promiscuousPing, out)` (and, with `anyFlowWins`, its `anyFlowWins`
   * form). `p` is the packet's parse (rc ≥ 0: its key and header facts),
   * `pkt` the buffer it was parsed from (read only for byte matches).
   * Returns the index of the winning flow or -1; `out` tells which flow
   * decided, the reported `udpencap`, and counts matches when `out.counts`
   * is set. Allocation-free.
   */
  classify(
    p: KeyParse,
    pkt: Uint8Array,
    promiscuousPing: boolean,
    out: FlowMatch = emptyMatch,
  ): number {
    out.flow = -1;
    out.udpencap = 0;
    out.promiscuous = false;
    if (this.size === 0) return -1;
    const key = p.key;
    const kp = keyProto(key);
    const promisc = promiscuousPing && (kp === IPPROTO_ICMP || kp === IPPROTO_ICMPV6);
    const words = this.words;
    this.l4State = 0;

    // Look the fields up while they are worth it; the smallest candidate set drives.
    const dst = this.dst, src = this.src, dport = this.dport, sport = this.sport;
    const pA = this.protoActive && !promisc;
    const pc = kp === IPPROTO_TCP
      ? PC_TCP
      : kp === IPPROTO_UDP
      ? PC_UDP
      : kp === IPPROTO_SCTP
      ? PC_SCTP
      : PC_OTHER;
    let best = pA ? this.protoWords[pc] : words;
    let driver: FieldTables | null = null;
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
          r = this.scanWord(j, w, p, pkt, promisc, pending, out);
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
          r = this.scanWord(j, w, p, pkt, promisc, pending, out);
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
    parse: KeyParse,
    pkt: Uint8Array,
    promisc: boolean,
    pending: number,
    out: FlowMatch,
  ): number {
    const rec = this.rec, counts = out.counts, key = parse.key;
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
            this.l4State = locateMatchL4(parse, this.l4) ? 1 : 2;
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
