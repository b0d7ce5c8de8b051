/**
 * Fragments and id-form keys built byte by byte from the behaviour description
 * (docs/COMPATIBILITY.md#hashing-and-parsing, #fragments), for the fragment
 * table's tests: IPv4 and IPv6 fragments, their keys, and the parse `lb`
 * hands the table.
 * @module
 */
import type { FragTable } from "../lib/frag/table.ts";
import { ETH_P_IP, ETH_P_IPV6, KeyParse, parseKeyAt } from "../lib/packet/parse.ts";

/** Nanoseconds in a millisecond. */
export const MS = 1_000_000;
/** An arbitrary monotonic start time (ns). */
export const T0 = 5_000 * MS;

export const SRC4 = [10, 0, 0, 1];
export const DST4 = [10, 0, 0, 2];

/** IPv4 fragment: 20-byte header, `payload` bytes; offset in 8-byte units. */
export function ipv4Frag(
  id: number,
  offset8: number,
  mf: boolean,
  payload: number,
  opts: { src?: number[]; totalLen?: number; fill?: number } = {},
): Uint8Array {
  const len = 20 + payload;
  const p = new Uint8Array(len);
  const total = opts.totalLen ?? len;
  const ff = (mf ? 0x2000 : 0) | offset8;
  p.set([
    0x45,
    0,
    total >> 8,
    total & 0xff,
    id >> 8,
    id & 0xff,
    ff >> 8,
    ff & 0xff,
    64,
    17,
    0,
    0,
    ...(opts.src ?? SRC4),
    ...DST4,
  ]);
  p.fill(opts.fill ?? 0xab, 20);
  return p;
}

/** Id-form key of an IPv4 fragment: mapped addresses, bytes 32–33 = id wire bytes. */
export function ipv4Key(id: number, src: number[] = SRC4): Uint8Array {
  const k = new Uint8Array(40);
  k[10] = 0xff;
  k[11] = 0xff;
  k.set(src, 12);
  k[26] = 0xff;
  k[27] = 0xff;
  k.set(DST4, 28);
  k[32] = id >> 8;
  k[33] = id & 0xff;
  return k;
}

export const SRC6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
export const DST6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/**
 * IPv6 fragment: fixed header (next header 44, or 0 with `hbh` = an 8-byte
 * hop-by-hop header first), 8-byte fragment header (next header 17),
 * `payload` bytes after it. `offset` in bytes (multiple of 8).
 */
export function ipv6Frag(
  ident: number[],
  offset: number,
  m: boolean,
  payload: number,
  hbh = false,
): Uint8Array {
  const ext = hbh ? 8 : 0;
  const len = 40 + ext + 8 + payload;
  const p = new Uint8Array(len);
  const plen = len - 40;
  p.set([0x60, 0, 0, 0, plen >> 8, plen & 0xff, hbh ? 0 : 44, 64, ...SRC6, ...DST6]);
  if (hbh) p.set([44, 0, 1, 4, 0, 0, 0, 0], 40); // hop-by-hop, len 0 (8 bytes), PadN
  const offlg = offset | (m ? 1 : 0);
  p.set([17, 0, offlg >> 8, offlg & 0xff, ...ident], 40 + ext);
  p.fill(0xcd, 40 + ext + 8);
  return p;
}

/** Id-form key of an IPv6 fragment: addresses, bytes 32–35 = ident wire bytes. */
export function ipv6Key(ident: number[]): Uint8Array {
  const k = new Uint8Array(40);
  k.set(SRC6, 0);
  k.set(DST6, 16);
  k.set(ident, 32);
  return k;
}

/**
 * The parse `lb` hands the table with a fragment: `pkt[0, len)` parsed (family
 * from the version nibble), its key replaced by `key` (the id-form key under test).
 */
export function fragParse(key: Uint8Array, pkt: Uint8Array, len: number): KeyParse {
  const kp = new KeyParse();
  const v = pkt.length > 0 ? pkt[0] >> 4 : 0;
  parseKeyAt(kp, pkt, 0, len, v === 4 ? ETH_P_IP : v === 6 ? ETH_P_IPV6 : 0, 0);
  kp.key.set(key);
  return kp;
}

/** `ft.nonFirst` for the fragment `pkt[0, len)` with id-form key `key`. */
export function nonFirst(
  ft: FragTable,
  key: Uint8Array,
  pkt: Uint8Array,
  len: number,
  now: number,
) {
  return ft.nonFirst(fragParse(key, pkt, len), pkt, 0, len, now);
}

/** `ft.first` for the first fragment `pkt[0, len)` with id-form key `key`. */
export function first(
  ft: FragTable,
  key: Uint8Array,
  fw: number,
  pkt: Uint8Array,
  len: number,
  now: number,
) {
  return ft.first(fragParse(key, pkt, len), fw, pkt, 0, len, now);
}
