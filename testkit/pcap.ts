/**
 * Minimal reader for classic libpcap files (microsecond or nanosecond, either
 * byte order), enough for the test captures: every record's captured bytes.
 *
 * @example
 * ```ts
 * import { readPcap, ethertype, ETH_HEADER_LEN } from "./pcap.ts";
 * const { linktype, frames } = readPcap(Deno.readFileSync("tests/testdata/pcap/crafted.pcap"));
 * linktype; // 1 (Ethernet)
 * ethertype(frames[0]); // 0x0800
 * frames[0].subarray(ETH_HEADER_LEN); // the IP packet
 * ```
 * @module
 */

/** Length of an Ethernet II header (no VLAN tag). */
export const ETH_HEADER_LEN = 14;
/** Link type of Ethernet captures. */
export const LINKTYPE_ETHERNET = 1;

/** A parsed capture: its link type and each record's captured bytes (views into the input). */
export interface Pcap {
  /** Link-layer type from the global header (1 = Ethernet). */
  linktype: number;
  /** Each record's captured bytes, in file order. */
  frames: Uint8Array[];
}

/** Parses a classic pcap file; throws on a bad magic number or a truncated record. */
export function readPcap(data: Uint8Array): Pcap {
  if (data.length < 24) throw new Error("pcap: short global header");
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const magic = dv.getUint32(0, true);
  let le: boolean;
  if (magic === 0xa1b2c3d4 || magic === 0xa1b23c4d) le = true;
  else if (magic === 0xd4c3b2a1 || magic === 0x4d3cb2a1) le = false;
  else throw new Error(`pcap: bad magic 0x${magic.toString(16)}`);
  const linktype = dv.getUint32(20, le);
  const frames: Uint8Array[] = [];
  let off = 24;
  while (off < data.length) {
    if (off + 16 > data.length) throw new Error("pcap: truncated record header");
    const incl = dv.getUint32(off + 8, le);
    off += 16;
    if (off + incl > data.length) throw new Error("pcap: truncated record");
    frames.push(data.subarray(off, off + incl));
    off += incl;
  }
  return { linktype, frames };
}

/** The Ethernet type of a frame (bytes 12–13, BE), or -1 if the frame is shorter. */
export function ethertype(frame: Uint8Array): number {
  return frame.length < ETH_HEADER_LEN ? -1 : (frame[12] << 8) | frame[13];
}
