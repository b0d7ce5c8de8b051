/**
 * VIPs of `nfqlb ruleset`: an address or a prefix, in one canonical text (so that `10.0.0.1`,
 * `10.0.0.1/32` and iptables' `10.0.0.1/32` are the same VIP), and whether two VIPs overlap.
 *
 * @example
 * ```ts
 * import { parseVip, vipsOverlap } from "./vip.ts";
 * const a = parseVip("10.0.0.1/32"); // { text: "10.0.0.1", v6: false, ... }
 * const b = parseVip("10.0.0.0/24");
 * typeof a !== "string" && typeof b !== "string" && vipsOverlap(a, b); // true
 * ```
 * @module
 */
import { formatIPv6, parseIPv4, parseIPv6 } from "../ccompat/inet.ts";

/** A VIP or VIP prefix. */
export interface Vip {
  /** Canonical text: `10.0.0.1`, `10.0.0.0/24`, `1000::1`, `1000::/64`. */
  readonly text: string;
  /** An IPv6 VIP. */
  readonly v6: boolean;
  /** The network address as a number (32 or 128 bits). */
  readonly addr: bigint;
  /** Prefix length (32 or 128 for an address). */
  readonly len: number;
}

const toBig = (b: Uint8Array) => b.reduce((n, x) => (n << 8n) | BigInt(x), 0n);

/**
 * Parse `text` (`ADDR` or `ADDR/LEN`); returns the VIP, or why it is not one (a prefix with host
 * bits set is refused rather than silently widened, as iptables would).
 */
export function parseVip(text: string): Vip | string {
  const [addr, lenText, more] = text.split("/");
  if (more !== undefined) return "not an address or prefix";
  const v6 = addr.includes(":");
  const bytes = v6 ? parseIPv6(addr) : parseIPv4(addr);
  if (bytes === undefined) return "not an address or prefix";
  const bits = v6 ? 128 : 32;
  if (lenText !== undefined && !/^\d{1,3}$/.test(lenText)) return "bad prefix length";
  const len = lenText === undefined ? bits : Number(lenText);
  if (len > bits) return "bad prefix length";
  const n = toBig(bytes);
  const host = (1n << BigInt(bits - len)) - 1n;
  if ((n & host) !== 0n) {
    const net = n & ~host;
    return `host bits set (the prefix is ${format(net, v6)}/${len})`;
  }
  return { text: len === bits ? format(n, v6) : `${format(n, v6)}/${len}`, v6, addr: n, len };
}

function format(n: bigint, v6: boolean): string {
  const bytes = new Uint8Array(v6 ? 16 : 4);
  for (let i = bytes.length - 1; i >= 0; i--) {
    bytes[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return v6 ? formatIPv6(bytes) : bytes.join(".");
}

/** Whether `a` and `b` (same family) share an address: one contains the other. */
export function vipsOverlap(a: Vip, b: Vip): boolean {
  if (a.v6 !== b.v6) return false;
  const shift = BigInt((a.v6 ? 128 : 32) - Math.min(a.len, b.len));
  return a.addr >> shift === b.addr >> shift;
}
