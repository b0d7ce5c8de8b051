/**
 * The nf_tables rule expressions the fast-path chain is made of, as
 * {@link Expression} values for `newRule` (./nf_tables.ts): `meta` load and
 * set, `payload` load, `bitwise` mask, `cmp`, `lookup` in a map, and a
 * reference to a named counter (`objref`). Registers are the 4-byte ones
 * (`NFT_REG32_00` = 8 onwards), so concatenated keys are laid out field by
 * field, each padded to 4 bytes, as nft lays them out.
 *
 * @example
 * ```ts
 * import { NlBuilder } from "./builder.ts";
 * import { newRule } from "./nf_tables.ts";
 * import { cmpEq, metaLoad, META_NFPROTO, reg32 } from "./expressions.ts";
 * const b = new NlBuilder(512);
 * newRule(b, 1, "t", "c", [metaLoad(META_NFPROTO, reg32(0)), cmpEq(reg32(0), [2])]);
 * b.length > 0; // true
 * ```
 * @module
 */
import type { NlBuilder } from "./builder.ts";
import type { Expression } from "./nf_tables.ts";

/** `enum nft_meta_keys`: the packet mark. */
export const META_MARK = 3;
/** `enum nft_meta_keys`: the netfilter family of the packet (2 IPv4, 10 IPv6). */
export const META_NFPROTO = 15;
/** `enum nft_payload_bases`: the network header. */
export const PAYLOAD_NETWORK = 1;
/** `enum nft_payload_bases`: the transport header. */
export const PAYLOAD_TRANSPORT = 2;

/** The 4-byte register `i` (`NFT_REG32_00 + i`). */
export function reg32(i: number): number {
  return 8 + i;
}

const NFTA_DATA_VALUE = 1;

function value(b: NlBuilder, type: number, bytes: readonly number[]): void {
  b.open(type);
  b.bytesAttr(NFTA_DATA_VALUE, Uint8Array.from(bytes));
  b.close();
}

/** `meta load KEY => reg`. */
export function metaLoad(key: number, dreg: number): Expression {
  return {
    name: "meta",
    data: (b) => {
      b.u32(1, dreg); // NFTA_META_DREG
      b.u32(2, key); // NFTA_META_KEY
    },
  };
}

/** `meta set KEY with reg`. */
export function metaSet(key: number, sreg: number): Expression {
  return {
    name: "meta",
    data: (b) => {
      b.u32(2, key); // NFTA_META_KEY
      b.u32(3, sreg); // NFTA_META_SREG
    },
  };
}

/** `payload load LEN b @ BASE + OFFSET => reg` (the rest of the last register is zeroed). */
export function payloadLoad(base: number, offset: number, len: number, dreg: number): Expression {
  return {
    name: "payload",
    data: (b) => {
      b.u32(1, dreg); // NFTA_PAYLOAD_DREG
      b.u32(2, base); // NFTA_PAYLOAD_BASE
      b.u32(3, offset); // NFTA_PAYLOAD_OFFSET
      b.u32(4, len); // NFTA_PAYLOAD_LEN
    },
  };
}

/** `bitwise reg = (reg & MASK) ^ 0` over `mask.length` bytes. */
export function bitwiseAnd(reg: number, mask: readonly number[]): Expression {
  return {
    name: "bitwise",
    data: (b) => {
      b.u32(1, reg); // NFTA_BITWISE_SREG
      b.u32(2, reg); // NFTA_BITWISE_DREG
      b.u32(3, mask.length); // NFTA_BITWISE_LEN
      value(b, 4, mask); // NFTA_BITWISE_MASK
      value(b, 5, mask.map(() => 0)); // NFTA_BITWISE_XOR
    },
  };
}

/** `cmp eq reg BYTES`. */
export function cmpEq(sreg: number, bytes: readonly number[]): Expression {
  return {
    name: "cmp",
    data: (b) => {
      b.u32(1, sreg); // NFTA_CMP_SREG
      b.u32(2, 0); // NFTA_CMP_OP: NFT_CMP_EQ
      value(b, 3, bytes); // NFTA_CMP_DATA
    },
  };
}

/** `lookup reg set NAME dreg D`: a miss ends the rule, a hit loads the map's value into `dreg`. */
export function mapLookup(
  set: string,
  setId: number | undefined,
  sreg: number,
  dreg: number,
): Expression {
  return {
    name: "lookup",
    data: (b) => {
      b.strz(1, set); // NFTA_LOOKUP_SET
      b.u32(2, sreg); // NFTA_LOOKUP_SREG
      b.u32(3, dreg); // NFTA_LOOKUP_DREG
      // A set made in the same batch is found by its id (undefined: an existing set, by name).
      if (setId !== undefined) b.u32(4, setId); // NFTA_LOOKUP_SET_ID
    },
  };
}

/** `counter name NAME`: count in the named counter object. */
export function counterRef(name: string): Expression {
  return {
    name: "objref",
    data: (b) => {
      b.u32(1, 1); // NFTA_OBJREF_IMM_TYPE: NFT_OBJECT_COUNTER
      b.strz(2, name); // NFTA_OBJREF_IMM_NAME
    },
  };
}
