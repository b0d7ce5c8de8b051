/**
 * The 40-byte flow key nfqlb hashes to pick a Maglev bucket
 * (docs/COMPATIBILITY.md#hashing-and-parsing): bytes 0–15 source address,
 * 16–31 destination address (IPv4 as `::ffff:a.b.c.d`), then either the port
 * form (user-defined u16, protocol u16 little-endian, source and destination
 * port as wire bytes) or the id form used for fragments (a little-endian u64
 * id at byte 32).
 *
 * @example
 * ```ts
 * import { KEY_LEN, KEY_PROTO, keyProto } from "./key.ts";
 * const key = new Uint8Array(KEY_LEN);
 * key[KEY_PROTO] = 17;
 * keyProto(key); // 17
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
/** Length of the address part (source and destination). */
export const KEY_ADDR_LEN = 32;

/**
 * The protocol number stored in a key (u16 little-endian at {@link KEY_PROTO}).
 * Allocation-free and small enough to be inlined on the hot path.
 */
export function keyProto(key: Uint8Array): number {
  return key[KEY_PROTO] | (key[KEY_PROTO + 1] << 8);
}
