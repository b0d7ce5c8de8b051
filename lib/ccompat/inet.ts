/**
 * IPv4/IPv6 text forms with glibc `inet_pton` / `inet_ntop` semantics
 * (docs/COMPATIBILITY.md#hashing-and-parsing): strict dotted quads, IPv6 with `::` and an optional trailing
 * dotted quad, and output with the first longest zero run compressed and
 * IPv4-mapped/-compatible addresses printed with a dotted quad.
 *
 * @example
 * ```ts
 * import { formatIPv6, mapIPv4, parseIPv4, parseIPv6 } from "./inet.ts";
 * formatIPv6(mapIPv4(parseIPv4("10.0.0.1")!)); // "::ffff:10.0.0.1"
 * formatIPv6(parseIPv6("2001:db8:0:0:1:0:0:1")!); // "2001:db8::1:0:0:1"
 * ```
 * @module
 */

/** Parse a dotted-quad IPv4 address as `inet_pton(AF_INET)` does (no leading zeros). */
export function parseIPv4(s: string): Uint8Array | undefined {
  const parts = s.split(".");
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i];
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const v = Number(p);
    if (v > 255) return undefined;
    out[i] = v;
  }
  return out;
}

/** Parse an IPv6 literal as `inet_pton(AF_INET6)` does (no zone id, no brackets). */
export function parseIPv6(s: string): Uint8Array | undefined {
  const out = new Uint8Array(16);
  const dbl = s.indexOf("::");
  if (dbl >= 0 && s.indexOf("::", dbl + 1) >= 0) return undefined;
  const head = dbl >= 0 ? s.slice(0, dbl) : s;
  const tail = dbl >= 0 ? s.slice(dbl + 2) : "";
  const headWords = parseGroups(head, dbl < 0);
  const tailWords = dbl >= 0 ? parseGroups(tail, true) : [];
  if (headWords === undefined || tailWords === undefined) return undefined;
  const total = headWords.length + tailWords.length;
  if (dbl < 0 ? total !== 8 : total > 7) return undefined;
  headWords.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  const base = 8 - tailWords.length;
  tailWords.forEach((w, i) => {
    out[2 * (base + i)] = w >> 8;
    out[2 * (base + i) + 1] = w & 0xff;
  });
  return out;
}

/** Colon-separated hex groups; the last may be a dotted quad when `quadAllowed`. */
function parseGroups(s: string, quadAllowed: boolean): number[] | undefined {
  if (s === "") return [];
  const groups = s.split(":");
  const words: number[] = [];
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i];
    if (i === groups.length - 1 && quadAllowed && g.includes(".")) {
      const q = parseIPv4(g);
      if (q === undefined) return undefined;
      words.push((q[0] << 8) | q[1], (q[2] << 8) | q[3]);
    } else {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      words.push(parseInt(g, 16));
    }
  }
  return words;
}

/** The IPv4-mapped IPv6 form `::ffff:a.b.c.d` of a 4-byte address. */
export function mapIPv4(v4: Uint8Array): Uint8Array {
  const out = new Uint8Array(16);
  out[10] = 0xff;
  out[11] = 0xff;
  out.set(v4.subarray(0, 4), 12);
  return out;
}

/** Format 16 bytes at `off` like glibc `inet_ntop(AF_INET6)`. */
export function formatIPv6(b: Uint8Array, off = 0): string {
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push((b[off + 2 * i] << 8) | b[off + 2 * i + 1]);
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestLen < 2) bestStart = -1;
  const quad = `${b[off + 12]}.${b[off + 13]}.${b[off + 14]}.${b[off + 15]}`;
  const embedsV4 = bestStart === 0 &&
    ((bestLen === 6 && w[6] !== 0) || (bestLen === 5 && w[5] === 0xffff));
  let s = "";
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      s += i === 0 ? "::" : ":";
      i += bestLen - 1;
      continue;
    }
    if (embedsV4 && i === 6) return s + quad;
    s += w[i].toString(16);
    if (i < 7) s += ":";
  }
  return s;
}
