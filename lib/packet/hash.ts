/**
 * The djb2 hashes nfqlb uses to pick a Maglev bucket from a flow key (layout
 * in `key.ts`; docs/COMPATIBILITY.md#hashing-and-parsing).
 *
 * @example
 * ```ts
 * import { djb2 } from "./hash.ts";
 * import { KEY_LEN } from "./key.ts";
 * djb2(new Uint8Array(KEY_LEN)); // 4235337221
 * ```
 * @module
 */

import { IPPROTO_SCTP } from "../wire/ip_proto.ts";
import { KEY_ADDR_LEN, KEY_LEN, KEY_SPORT, keyProto } from "./key.ts";

/** `hash_mode` value that hashes only the ports of SCTP packets. */
export const HASH_MODE_SCTP_PORTS = 1;

const DJB2_SEED = 5381;

/** djb2 over `bytes[start, end)`: `h = h * 33 + b` modulo 2^32. */
export function djb2(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let h = DJB2_SEED;
  let i = start;
  // Four bytes per step: h·33⁴ + b0·33³ + b1·33² + b2·33 + b3 (mod 2^32). The products of
  // the bytes do not depend on h, so the serial chain is one multiply-add per four bytes
  // (1.3× faster than byte by byte; bench/maglev_bench.ts).
  for (; i + 4 <= end; i += 4) {
    h = (Math.imul(h, 1185921) + Math.imul(bytes[i], 35937) + Math.imul(bytes[i + 1], 1089) +
      bytes[i + 2] * 33 + bytes[i + 3]) | 0;
  }
  for (; i < end; i++) h = ((h << 5) + h + bytes[i]) | 0;
  return h >>> 0;
}

/**
 * The hash that selects a target for a packet (docs/COMPATIBILITY.md#hashing-and-parsing): SCTP with
 * `hashMode === 1` hashes the four port bytes only (so multi-homed SCTP
 * associations stay on one target); everything else hashes the whole key.
 * `hashMode` is taken modulo 2^16 as 1.2.0 does.
 */
export function hashKey(key: Uint8Array, hashMode: number): number {
  if (keyProto(key) === IPPROTO_SCTP && (hashMode & 0xffff) === HASH_MODE_SCTP_PORTS) {
    return djb2(key, KEY_SPORT, KEY_LEN);
  }
  return djb2(key, 0, KEY_LEN);
}

/** The address-only hash (first 32 key bytes), used for the LB tier and `fwmark` without `--proto`. */
export function addressHash(key: Uint8Array): number {
  return djb2(key, 0, KEY_ADDR_LEN);
}
