/**
 * Number parsing with the exact semantics of the C functions nfqlb 1.2.0 uses
 * on option strings (docs/COMPATIBILITY.md#hashing-and-parsing, #flows), so that every input gives the same value.
 *
 * @example
 * ```ts
 * import { cAtoi, toU32 } from "./cnum.ts";
 * cAtoi("99999999999"); // 1215752191
 * toU32(cAtoi("-1"));   // 4294967295
 * ```
 * @module
 */

const INT64_MAX = (1n << 63n) - 1n;
const INT64_MIN = -(1n << 63n);

function isCSpace(c: string): boolean {
  return c === " " || c === "\t" || c === "\n" || c === "\v" || c === "\f" || c === "\r";
}

/**
 * C `atoi` as 1.2.0 uses it: leading white space, optional sign, decimal
 * digits up to the first other character (none gives 0), computed as a
 * saturating 64-bit value and truncated to a signed 32-bit integer.
 */
export function cAtoi(s: string): number {
  let i = 0;
  while (i < s.length && isCSpace(s[i])) i++;
  let neg = false;
  if (s[i] === "+" || s[i] === "-") {
    neg = s[i] === "-";
    i++;
  }
  let v = 0n;
  let saturated = false;
  for (; i < s.length; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) break;
    if (!saturated) {
      v = v * 10n + BigInt(d);
      if (v > INT64_MAX + 1n) saturated = true;
    }
  }
  let r = neg ? -v : v;
  if (saturated || r > INT64_MAX) r = neg ? INT64_MIN : INT64_MAX;
  if (r < INT64_MIN) r = INT64_MIN;
  return Number(BigInt.asIntN(32, r));
}

/** Reinterpret a signed 32-bit value as unsigned (C conversion to `unsigned`). */
export function toU32(v: number): number {
  return v >>> 0;
}

/**
 * C `strtol(s, NULL, 0)` truncated to 32 bits: white space, sign, then `0x`
 * hex, leading-`0` octal or decimal; stops at the first invalid digit.
 * Returns the value and how many characters were consumed (0 when no digits).
 */
export function cStrtol0(s: string): { value: number; end: number } {
  let i = 0;
  while (i < s.length && isCSpace(s[i])) i++;
  let neg = false;
  if (s[i] === "+" || s[i] === "-") {
    neg = s[i] === "-";
    i++;
  }
  let base = 10;
  if (s[i] === "0" && (s[i + 1] === "x" || s[i + 1] === "X") && hexDigit(s[i + 2]) >= 0) {
    base = 16;
    i += 2;
  } else if (s[i] === "0") {
    base = 8;
  }
  const start = i;
  let v = 0n;
  const b = BigInt(base);
  for (; i < s.length; i++) {
    const d = hexDigit(s[i]);
    if (d < 0 || d >= base) break;
    if (v <= INT64_MAX) v = v * b + BigInt(d);
  }
  if (i === start) return { value: 0, end: 0 };
  let r = neg ? -v : v;
  if (r > INT64_MAX) r = INT64_MAX;
  if (r < INT64_MIN) r = INT64_MIN;
  return { value: Number(BigInt.asIntN(32, r)), end: i };
}

function hexDigit(c: string | undefined): number {
  if (c === undefined) return -1;
  const x = c.charCodeAt(0);
  if (x >= 48 && x <= 57) return x - 48;
  if (x >= 97 && x <= 102) return x - 87;
  if (x >= 65 && x <= 70) return x - 55;
  return -1;
}

/**
 * C `sscanf("%u")` on the start of `s`: white space, optional sign, decimal
 * digits; the value wraps modulo 2^32 (a minus sign negates modulo 2^32).
 * Returns `undefined` when there are no digits, else the value and the index
 * just past the digits.
 */
export function cScanU32(s: string, from = 0): { value: number; end: number } | undefined {
  let i = from;
  while (i < s.length && isCSpace(s[i])) i++;
  let neg = false;
  if (s[i] === "+" || s[i] === "-") {
    neg = s[i] === "-";
    i++;
  }
  const start = i;
  let v = 0n;
  let overflow = false;
  for (; i < s.length; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) break;
    v = v * 10n + BigInt(d);
    if (v > 0xffffffffn) overflow = true;
  }
  if (i === start) return undefined;
  // glibc's %u goes through strtoul: out of range saturates to ULONG_MAX (64-bit), then is
  // stored in an unsigned int, i.e. 0xffffffff.
  let r = overflow ? 0xffffffffn : v;
  if (neg) r = -r;
  return { value: Number(BigInt.asUintN(32, r)), end: i };
}

/**
 * A strict decimal integer: optional sign and digits only, within
 * `[min, max]`; `undefined` otherwise. Used where 1.2.0's `atoi` would
 * silently turn bad input ("abc", "7x", "-1" for a size) into a number.
 */
export function parseStrictInt(s: string, min: number, max: number): number | undefined {
  if (!/^[+-]?[0-9]{1,20}$/.test(s)) return undefined;
  const v = BigInt(s);
  if (v < BigInt(min) || v > BigInt(max)) return undefined;
  return Number(v);
}
