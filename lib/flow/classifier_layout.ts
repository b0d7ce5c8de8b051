/**
 * The layout of the compiled flow-classifier tables, shared by the module that builds them
 * (`classifier_build.ts`) and the one that reads them per packet (`classifier.ts`): the
 * per-flow record's fields and flags, the strides and protocol classes ({@link LAYOUT}), and the
 * shape of the tables ({@link ClassifierTables}, {@link FieldTables}). Both import this module
 * and neither imports the other's types, so the two have no import cycle. No code runs here.
 * @module
 */

// Per-flow record (Int32Array, REC ints per flow): offsets of its fields.
/** Ints per flow in the per-flow record array (`ClassifierTables.rec`). */
const REC = 10;
/** Record field: flags, `HAS_* | V_* | kind << KIND_SHIFT`. */
const R_FLAGS = 0;
/** Record field: the flow's `udpencap`. */
const R_ENCAP = 1;
/** Record fields: the flow's `dports`, pairs [start, end) in `ranges`. */
const R_DP = 2;
/** Record fields: the flow's `sports`, pairs [start, end) in `ranges`. */
const R_SP = 4;
/** Record fields: the flow's source CIDRs, [start, end) in `srcCidrs`. */
const R_SRC = 6;
/** Record fields: the flow's byte-match statements, [start, end) in `stmts`. */
const R_ST = 8;

// Flags: fields a flow restricts (checked per flow when not looked up) ...
/** Flag: the flow restricts source addresses. */
const HAS_SRC = 1;
/** Flag: the flow restricts destination ports. */
const HAS_DPORT = 2;
/** Flag: the flow restricts source ports. */
const HAS_SPORT = 4;
// ... and checks the indexes never settle.
/** Flag: the flow has byte-match statements. */
const V_MATCH = 8;
/** Flag: the flow's `dports` are not indexed (too many blocks). */
const V_DPORTS = 16;
/** Flag: the flow's `sports` are not indexed. */
const V_SPORTS = 32;
/** Flags of the per-flow checks no index settles. */
const V_ANY = V_MATCH | V_DPORTS | V_SPORTS;
/** Shift of the flow kind (`KIND_*`) in {@link R_FLAGS}. */
const KIND_SHIFT = 6;

// Flow kinds: what a matching flow does to the scan.
/** Kind: has a target (or `anyFlowWins`): wins. */
const KIND_WIN = 0;
/** Kind: no target, `udpencap` ≠ 0: stops the scan and reports its `udpencap`. */
const KIND_HELPER = 1;
/** Kind: no target, no `udpencap`: never decides. */
const KIND_PASSIVE = 2;

/** Ints per source CIDR in `srcCidrs`: 4 masked address words + prefix. */
const SRC_STRIDE = 5;
/** Ints per statement in `stmts`: proto, offset, nbytes, mask, value. */
const ST_STRIDE = 5;

// Protocol classes of a key.
/** Protocol class of a key: TCP (index of its protocol bitset). */
const PC_TCP = 0;
/** Protocol class of a key: UDP. */
const PC_UDP = 1;
/** Protocol class of a key: SCTP. */
const PC_SCTP = 2;
/** Protocol class of a key: any other protocol. */
const PC_OTHER = 3;

// First-level index of the IPv4-mapped boundaries: top V4_BITS bits of the address.
/** Top address bits indexing the IPv4-mapped boundaries (first level). */
const V4_BITS = 12;
/** Shift giving the first-level bucket of an IPv4 address. */
const V4_SHIFT = 32 - V4_BITS;

/**
 * Address words are kept "biased" (XOR 0x80000000, as int32) so that signed
 * comparisons of small integers order them like the unsigned values.
 */
const BIAS = 0x80000000 | 0;
/** Biased 0xffff: the third word of an IPv4-mapped address. */
const BIASED_FFFF = (0xffff ^ 0x80000000) | 0;

/**
 * The table layout constants above. Each user destructures it into module-private constants:
 * those the JIT folds in the per-packet code (imported bindings it does not).
 */
export const LAYOUT = {
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
} as const;

/**
 * One indexed field as the per-packet code reads it: a family of nested prefixes (address
 * CIDRs or port blocks), each with a sparse flow bitset, the base set of flows that match every
 * value, and per-instance scratch (`FieldIndex` of `classifier_build.ts` builds it).
 */
export interface FieldTables {
  /** Some flow restricts this field (otherwise it is skipped). */
  readonly active: boolean;
  /** Address fields: sorted interval starts, 4 biased BE words each. */
  readonly bounds: Int32Array;
  /** Address fields: innermost prefix of each interval, -1 none. */
  readonly boundNode: Int32Array;
  /**
   * Address fields: the intervals inside `::ffff:0:0/96` as pairs (last word
   * XOR 0x80000000 so that signed order is address order, prefix); the first
   * pair starts at `::ffff:0.0.0.0`.
   */
  readonly v4Pairs: Int32Array;
  /** Address fields: per top-12-bit bucket t, the last pair starting at or before t·2^20 (4097 entries). */
  readonly v4Index: Int32Array;
  /** Port fields: innermost block of each port (65536 entries), -1 none. */
  readonly portNode: Int32Array;
  /** Number of prefixes; prefix `nodes` is a pseudo-prefix holding the base set. */
  readonly nodes: number;
  /** Per prefix: parent (-1 none; parents are numbered first), entries start, entries end, 0. */
  readonly nodeRec: Int32Array;
  /** Sparse bitsets: (word index, bits) pairs, ascending words within a prefix. */
  readonly ent: Int32Array;
  /** Flows matching every value (dense, W words). */
  readonly base: Int32Array;
  /** Number of non-zero words of {@link base}. */
  readonly baseWords: number;
  /** Scratch: the prefixes containing the current value, innermost first. */
  readonly chain: Int32Array;
  /** Scratch: length of {@link chain}. */
  chainLen: number;
  /** Scratch: entry cursors of the merge when this field drives the search. */
  readonly cur: Int32Array;
  /** Scratch: end of each cursor's entries. */
  readonly curEnd: Int32Array;
  /** Bytes of typed-array storage. */
  bytes(): number;
}

/** The compiled tables of a flow list (see the module documentation); immutable. */
export interface ClassifierTables {
  /** Number of flows. */
  readonly size: number;
  /** Bitset words (⌈size / 32⌉). */
  readonly words: number;
  readonly dst: FieldTables;
  readonly src: FieldTables;
  readonly dport: FieldTables;
  readonly sport: FieldTables;
  /** Some flow has `protocols`. */
  readonly protoActive: boolean;
  /** 4 dense bitsets (tcp, udp, sctp, other key protocol), `words` each. */
  readonly protoBits: Int32Array;
  /** Non-zero words of each protocol bitset. */
  readonly protoWords: Int32Array;
  /** All flows. */
  readonly all: Int32Array;
  /** Per-flow records (REC ints each, see R_*). */
  readonly rec: Int32Array;
  /** Port ranges of all flows: [lo, hi] pairs. */
  readonly ranges: Int32Array;
  /** Source CIDRs of all flows: 4 masked words + prefix each. */
  readonly srcCidrs: Int32Array;
  /** Byte-match statements of all flows: proto, offset, nbytes, mask, value each. */
  readonly stmts: Int32Array;
}
