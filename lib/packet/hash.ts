/**
 * The 40-byte flow key and the djb2 hashes nfqlb uses to pick a Maglev bucket.
 *
 * Key layout (SPEC 4.1): bytes 0–15 source address, 16–31 destination address
 * (IPv4 as `::ffff:a.b.c.d`), then either the port form (user-defined u16,
 * protocol u16 little-endian, source and destination port as wire bytes) or
 * the id form used for fragments (a little-endian u64 id).
 *
 * @example
 * ```ts
 * import { djb2, KEY_LEN } from "./hash.ts";
 * djb2(new Uint8Array(KEY_LEN)); // 4235337221
 * ```
 * @module
 */

/** Length of a flow key in bytes. */
export const KEY_LEN = 40;
/** Offset of the 16-byte source address. */
export const KEY_SRC = 0;
/** Offset of the 16-byte destination address. */
export const KEY_DST = 16;
/** Offset of the user-defined u16 (ICMP echo identifier lands here). */
export const KEY_USER = 32;
/** Offset of the protocol, u16 little-endian. */
export const KEY_PROTO = 34;
/** Offset of the source port (wire bytes). */
export const KEY_SPORT = 36;
/** Offset of the destination port (wire bytes). */
export const KEY_DPORT = 38;
/** Offset of the id form (u64 little-endian) used for fragments. */
export const KEY_ID = 32;
/** Length of the address part hashed by {@link addressHash}. */
export const KEY_ADDR_LEN = 32;

/** IP protocol numbers nfqlb knows by name. */
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ICMPV6 = 58;
export const IPPROTO_SCTP = 132;

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

/** The protocol number stored in a key (u16 little-endian at byte 34). */
export function keyProto(key: Uint8Array): number {
  return key[KEY_PROTO] | (key[KEY_PROTO + 1] << 8);
}

/**
 * The hash that selects a target for a packet (SPEC 4.2): SCTP with
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
