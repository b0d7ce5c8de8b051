/**
 * The golden per-packet vectors of nfqlb 1.2.0 (`testdata/packets.jsonl`):
 * one row per packet of the captures and hash mode / udpencap setting.
 * @module
 */

/** What 1.2.0 computed for a packet (hex key, unsigned hashes). */
export interface GoldenExpect {
  rc: number;
  key: string;
  hash: number;
  addr_hash: number;
  fragid: number;
}

/** One golden row; `fixed` holds the corrected values where 1.2.0 has a defect (docs/COMPATIBILITY.md#differences D22–D23). */
export interface GoldenRow extends GoldenExpect {
  file: string;
  index: number;
  udpencap: number;
  hash_mode: number;
  /** The packet (from the IP header on), in hex. */
  packet: string;
  defect?: string;
  fixed?: GoldenExpect;
}

/** Every row, in file order. */
export const goldenRows: readonly GoldenRow[] = Deno.readTextFileSync(
  new URL("../tests/testdata/packets.jsonl", import.meta.url),
).split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l));

/** Bytes of a hex string. */
export function unhex(s: string): Uint8Array {
  const out = new Uint8Array(s.length >>> 1);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(i * 2, 2), 16);
  return out;
}
