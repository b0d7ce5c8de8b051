/**
 * The shared-memory layout of a Maglev target table (docs/COMPATIBILITY.md#shared-memory), as a
 * zero-copy view over the bytes of the mapped object. All integers are
 * little-endian (x86-64).
 *
 * | offset          | type        | field                     |
 * |-----------------|-------------|---------------------------|
 * | 0               | i32         | ownFwmark                 |
 * | 4               | u32         | M                         |
 * | 8               | u32         | N                         |
 * | 12              | u32         | len = size − 4            |
 * | 16              | i32[M]      | lookup                    |
 * | 16+4M           | u32[N][M]   | permutation rows          |
 * | 16+4M+4MN       | i32[N]      | active fwmarks            |
 * | 16+4M+4MN+4N    | 12 bytes    | zero padding              |
 *
 * @example
 * ```ts
 * import { MaglevTable, tableSize } from "./table.ts";
 * const t = MaglevTable.format(new ArrayBuffer(tableSize(7, 3)), 7, 3, 0);
 * t.lookup.length; // 7
 * ```
 * @module
 */

/** Byte offset of `ownFwmark` (i32). */
export const OFF_OWN_FWMARK = 0;
/** Byte offset of `M` (u32). */
export const OFF_M = 4;
/** Byte offset of `N` (u32). */
export const OFF_N = 8;
/** Byte offset of `len` (u32): the object size minus 4. */
export const OFF_LEN = 12;
/** Byte offset of the lookup array. */
export const OFF_LOOKUP = 16;
/** Bytes of the fixed header plus trailing padding. */
const FIXED_BYTES = 28;
/** Smallest M the reference accepts (`init` raises smaller requests to 3). */
export const MIN_M = 3;
/** Largest M: `primeBelow` never returns more. */
export const MAX_M = 993997;

/** Size in bytes of a table with lookup size `m` and `n` slots. */
export function tableSize(m: number, n: number): number {
  return FIXED_BYTES + 4 * (m * n + m + n);
}

/** A table's bytes do not describe a valid table. */
export class TableFormatError extends Error {
  /** An error whose `message` says what is wrong with the table. */
  constructor(message: string) {
    super(message);
    this.name = "TableFormatError";
  }
}

/**
 * Typed views over a table's bytes. The views alias the buffer: over a shared
 * mapping, reads see other processes' writes immediately.
 *
 * Fields are `declare`d and set once in the constructor: with TypeScript's
 * define semantics for class fields, V8 first stores `undefined` and then
 * generalises the field representation, which made per-packet reads of
 * `m`/`lookup`/`active` 8× slower (measured in bench/maglev_bench.ts).
 */
export class MaglevTable {
  /** Lookup-table size (a prime). */
  declare readonly m: number;
  /** Number of target slots. */
  declare readonly n: number;
  /** `lookup[j]`: slot index for hash bucket j, or −1. */
  declare readonly lookup: Int32Array;
  /** Row-major `permutation[i * m + j]`. */
  declare readonly permutation: Uint32Array;
  /** `active[i]`: fwmark of slot i; negative = inactive. */
  declare readonly active: Int32Array;
  /** The four header words: ownFwmark, M, N, len. */
  declare readonly header: Int32Array;

  private constructor(buffer: ArrayBuffer, m: number, n: number) {
    this.m = m;
    this.n = n;
    this.header = new Int32Array(buffer, 0, 4);
    this.lookup = new Int32Array(buffer, OFF_LOOKUP, m);
    this.permutation = new Uint32Array(buffer, OFF_LOOKUP + 4 * m, m * n);
    this.active = new Int32Array(buffer, OFF_LOOKUP + 4 * m + 4 * m * n, n);
  }

  /** The LB-tier "own fwmark" (docs/COMPATIBILITY.md#packet-decisions). */
  get ownFwmark(): number {
    return this.header[0];
  }

  /**
   * View an existing table, checking that its header matches its size.
   * Throws {@link TableFormatError} describing the mismatch.
   */
  static view(buffer: ArrayBuffer): MaglevTable {
    const size = buffer.byteLength;
    if (size < FIXED_BYTES + 4 * MIN_M) {
      throw new TableFormatError(`size ${size} is too small for a Maglev table`);
    }
    const h = new DataView(buffer, 0, 16);
    const m = h.getUint32(OFF_M, true);
    const n = h.getUint32(OFF_N, true);
    const len = h.getUint32(OFF_LEN, true);
    if (m < MIN_M || m > MAX_M) throw new TableFormatError(`M=${m} is out of range`);
    if (n > m) throw new TableFormatError(`N=${n} is larger than M=${m}`);
    const expected = tableSize(m, n);
    if (expected !== size) {
      throw new TableFormatError(`M=${m}, N=${n} need ${expected} bytes, the object has ${size}`);
    }
    if (len !== size - 4) {
      throw new TableFormatError(`len=${len} does not match the size ${size}`);
    }
    return new MaglevTable(buffer, m, n);
  }

  /**
   * Write the header of an `m`×`n` table into `buffer` (which must be exactly
   * {@link tableSize} bytes) and return its view; the arrays are left as they
   * are (see `initTable` in maglev.ts for the full contents).
   */
  static format(buffer: ArrayBuffer, m: number, n: number, ownFwmark: number): MaglevTable {
    const size = tableSize(m, n);
    if (buffer.byteLength !== size) {
      throw new TableFormatError(`buffer has ${buffer.byteLength} bytes, need ${size}`);
    }
    const h = new DataView(buffer, 0, 16);
    h.setInt32(OFF_OWN_FWMARK, ownFwmark, true);
    h.setUint32(OFF_M, m, true);
    h.setUint32(OFF_N, n, true);
    h.setUint32(OFF_LEN, size - 4, true);
    new Uint8Array(buffer, size - 12, 12).fill(0);
    return new MaglevTable(buffer, m, n);
  }
}
