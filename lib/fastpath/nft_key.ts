/**
 * The fast-path map key of a packet, made from its 40-byte flow key
 * (lib/packet/key.ts) in the layout nft uses for the concatenation
 * `saddr . daddr . inet_proto . inet_service . inet_service`: each field
 * padded to 4 bytes, addresses and ports in network order, the protocol
 * byte first in its word. IPv4 keys are 20 bytes (the address is the last
 * 4 bytes of the `::ffff:a.b.c.d` form), IPv6 keys 44.
 *
 * @example
 * ```ts
 * import { encodeKey } from "./nft_key.ts";
 * const key = new Uint8Array(40);
 * key.set([10, 0, 0, 1], 12); key.set([10, 0, 0, 2], 28);
 * key[34] = 17; key.set([0x30, 0x39], 36); key.set([0, 80], 38);
 * const out = new Uint8Array(44);
 * encodeKey(key, false, out, 0); // 20
 * [...out.subarray(0, 20)].join(","); // "10,0,0,1,10,0,0,2,17,0,0,0,48,57,0,0,0,80,0,0"
 * ```
 * @module
 */
import { KEY_DPORT, KEY_DST, KEY_PROTO, KEY_SPORT, KEY_SRC } from "../packet/key.ts";

/** The longest key (IPv6). */
export const MAX_KEY_LEN = 44;

/** Write the map key of flow key `key` (IPv6 if `v6`) to `out` at `at`; returns its length. */
export function encodeKey(key: Uint8Array, v6: boolean, out: Uint8Array, at: number): number {
  let o = at;
  const alen = v6 ? 16 : 4;
  const skip = 16 - alen;
  for (let i = 0; i < alen; i++) out[o + i] = key[KEY_SRC + skip + i];
  o += alen;
  for (let i = 0; i < alen; i++) out[o + i] = key[KEY_DST + skip + i];
  o += alen;
  out[o] = key[KEY_PROTO];
  out[o + 1] = 0;
  out[o + 2] = 0;
  out[o + 3] = 0;
  out[o + 4] = key[KEY_SPORT];
  out[o + 5] = key[KEY_SPORT + 1];
  out[o + 6] = 0;
  out[o + 7] = 0;
  out[o + 8] = key[KEY_DPORT];
  out[o + 9] = key[KEY_DPORT + 1];
  out[o + 10] = 0;
  out[o + 11] = 0;
  return o + 12 - at;
}
