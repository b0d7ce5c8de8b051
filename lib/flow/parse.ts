/**
 * Parsing a flow definition from the raw fields of a control request
 * (docs/COMPATIBILITY.md#flows) into the immutable {@link Flow} of
 * `flow_types.ts`. Every function here is total: any input gives either a
 * value or the exact server error text of 6.8, never an exception.
 *
 * Deviations from 1.2.0 (docs/COMPATIBILITY.md#differences): names must be non-empty and made of
 * letters, digits, `-`, `+` and `_` only (#4, `Invalid name`); an invalid
 * `sports` value says `Invalid sports` (#3); the match bound check is exact
 * (#11).
 *
 * @example
 * ```ts
 * import { parseFlow } from "./parse.ts";
 * const r = parseFlow({ name: "f1", target: "lb-a", protocols: "tcp", dports: "80,81" });
 * if (r.ok) r.flow.dports; // [{ lo: 80, hi: 81 }]
 * parseFlow({ name: "f1", dports: "0" }); // { ok: false, error: "Invalid dports" }
 * ```
 * @module
 */
import { cAtoi, cScanU32, cStrtol0 } from "../ccompat/cnum.ts";
import { badValue, CIDRS_ACCEPTED, PORTS_ACCEPTED, PROTOCOLS_ACCEPTED } from "../hints/accepted.ts";
import {
  type Cidr,
  type Flow,
  type MatchProto,
  type MatchStatement,
  type PortRange,
  PROTO_SCTP,
  PROTO_TCP,
  PROTO_UDP,
} from "./types.ts";
import { parseIPv4, parseIPv6 } from "../ccompat/inet.ts";
import { SCTP_HEADER_LEN, TCP_HEADER_LEN, UDP_HEADER_LEN } from "../wire/l4.ts";

/**
 * The raw, unparsed fields of a `set` / `trace-set` request (docs/COMPATIBILITY.md#control-protocol).
 * `undefined` means the key was not in the request.
 */
export interface FlowFields {
  readonly name?: string;
  readonly target?: string;
  /** Read with `C_atoi`. */
  readonly priority?: string;
  readonly protocols?: string;
  readonly dsts?: string;
  readonly srcs?: string;
  readonly dports?: string;
  readonly sports?: string;
  readonly match?: string;
  /** Read with `C_atoi`, low 16 bits. */
  readonly udpencap?: string;
}

/** The outcome of a parse: a value, or the server's error reply text. */
export type Parsed<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly error: string };

/** The outcome of {@link parseFlow}. */
export type FlowResult =
  | { readonly ok: true; readonly flow: Flow }
  | {
    readonly ok: false;
    /** The reply text of 1.2.0 (`Invalid dports`). */
    readonly error: string;
    /** The bad value and what is accepted (`[80-]: accepted: ...`), for the reply's note. */
    readonly detail?: string;
  };

/** First character of internal SCTP-over-UDP helper flow names (docs/COMPATIBILITY.md#flows). */
export const HELPER_PREFIX = "#";
/** Flow names must be shorter than this many UTF-8 bytes (docs/COMPATIBILITY.md#flows). */
export const MAX_NAME_BYTES = 1024;
/** Most CIDRs in a `dsts` / `srcs` list (docs/COMPATIBILITY.md#flows). */
export const MAX_CIDRS = 32;
/** Longest byte-match statement, in bytes (docs/COMPATIBILITY.md#flows). */
export const MAX_MATCH_STATEMENT = 64;
/** L4 header sizes bounding byte-match statements (docs/COMPATIBILITY.md#flows). */
export const MATCH_HEADER_SIZE: Readonly<Record<MatchProto, number>> = {
  tcp: TCP_HEADER_LEN,
  udp: UDP_HEADER_LEN,
  sctp: SCTP_HEADER_LEN,
};

/** Server error texts (docs/COMPATIBILITY.md#flows; #differences D3, D4). */
export const ERR = {
  nameTooLong: "Name too long",
  invalidName: "Invalid name",
  protocols: "Invalid protocols",
  dports: "Invalid dports",
  sports: "Invalid sports",
  dsts: "Invalid dsts",
  srcs: "Invalid srcs",
  onlySctp: "FAIL: only sctp for updencap",
} as const;

const NAME_RE = /^[A-Za-z0-9+_-]+$/;
const utf8 = new TextEncoder();

/** UTF-8 length of `s` (what C's `strlen` sees). */
export function byteLength(s: string): number {
  return utf8.encode(s).length;
}

/**
 * Check a user flow name: `Name too long` when ≥ 1024 bytes, `Invalid name`
 * when absent, empty or containing anything but letters, digits, `-`, `+`,
 * `_` (so `#` stays reserved for helper flows). Returns the error or
 * `undefined` when the name is fine.
 */
export function checkName(name: string | undefined): string | undefined {
  if (name !== undefined && byteLength(name) >= MAX_NAME_BYTES) return ERR.nameTooLong;
  if (name === undefined || !NAME_RE.test(name)) return ERR.invalidName;
  return undefined;
}

/** Split on `,` and space, dropping empty tokens (the split of protocols, CIDRs and ports). */
export function splitList(s: string): string[] {
  return s.split(/[, ]/).filter((t) => t !== "");
}

/** Priority: `C_atoi` of the raw value, 0 when absent (an i32). */
export function parsePriority(s: string | undefined): number {
  return s === undefined ? 0 : cAtoi(s);
}

/** udpencap: `C_atoi` of the raw value truncated to 16 bits, 0 when absent. */
export function parseUdpencap(s: string | undefined): number {
  return s === undefined ? 0 : cAtoi(s) & 0xffff;
}

/**
 * The server's udpencap precondition (docs/COMPATIBILITY.md#flows): with `udpencap != 0` the
 * protocol list must be exactly one entry, `sctp` in any case. Returns
 * `FAIL: only sctp for updencap` [sic] or `undefined`.
 */
export function checkUdpencap(udpencap: number, protocols: string | undefined): string | undefined {
  if (udpencap === 0) return undefined;
  const tokens = protocols === undefined ? [] : splitList(protocols);
  if (tokens.length !== 1 || tokens[0].toLowerCase() !== "sctp") return ERR.onlySctp;
  return undefined;
}

/**
 * Protocols (docs/COMPATIBILITY.md#flows): a bit set of `PROTO_*`; `undefined` (absent) when the
 * value has no tokens.
 */
export function parseProtocols(s: string): Parsed<number | undefined> {
  let bits = 0;
  for (const t of splitList(s)) {
    const p = t.toLowerCase();
    if (p === "tcp") bits |= PROTO_TCP;
    else if (p === "udp") bits |= PROTO_UDP;
    else if (p === "sctp") bits |= PROTO_SCTP;
    else return { ok: false, error: ERR.protocols };
  }
  return { ok: true, value: bits === 0 ? undefined : bits };
}

/**
 * One CIDR entry (docs/COMPATIBILITY.md#flows): an entry without `:` is IPv4 and becomes
 * `::ffff:<entry>` with prefix + 96 (u32 arithmetic, as in C); the prefix is
 * read like `sscanf("%u")` and must be ≤ 128; the address is stored masked.
 */
export function parseCidr(entry: string): Cidr | undefined {
  const v4 = !entry.includes(":");
  const slash = entry.indexOf("/");
  if (slash < 0) return undefined;
  const addr = parseIPv6((v4 ? "::ffff:" : "") + entry.slice(0, slash));
  const scanned = cScanU32(entry, slash + 1);
  if (addr === undefined || scanned === undefined) return undefined;
  const prefix = v4 ? (scanned.value + 96) >>> 0 : scanned.value;
  if (prefix > 128) return undefined;
  for (let i = 0; i < 16; i++) {
    const keep = Math.min(8, Math.max(0, prefix - 8 * i));
    addr[i] &= (0xff00 >> keep) & 0xff;
  }
  return { addr, prefix };
}

/** A `dsts` / `srcs` list; `undefined` (absent) when empty, `null` when invalid. */
function parseCidrList(s: string): readonly Cidr[] | undefined | null {
  const entries = splitList(s);
  if (entries.length === 0) return undefined;
  if (entries.length > MAX_CIDRS) return null;
  const out: Cidr[] = [];
  for (const e of entries) {
    const c = parseCidr(e);
    if (c === undefined) return null;
    out.push(c);
  }
  return out;
}

/** One port token: decimal digits only, `PORT` or `FIRST-LAST` (D64: no `80-`, `+7`, `7-9-11`). */
const PORT_TOKEN_RE = /^([0-9]{1,5})(?:-([0-9]{1,5}))?$/;

/**
 * One port token `a` or `a-b`, 1 ≤ a ≤ b ≤ 65535 (docs/COMPATIBILITY.md#flows), or undefined.
 * Stricter than 1.2.0's `sscanf("%u-%u")`, which ignores trailing text: `80-` was 80 there (D64).
 */
export function parsePortToken(t: string): PortRange | undefined {
  const m = PORT_TOKEN_RE.exec(t);
  if (m === null) return undefined;
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  return lo < 1 || hi > 65535 || hi < lo ? undefined : { lo, hi };
}

/**
 * Port ranges (docs/COMPATIBILITY.md#flows): tokens {@link parsePortToken}, sorted and merged
 * when overlapping or adjacent. An empty value gives an empty set (which matches nothing).
 * `undefined` when a token is invalid.
 */
export function parsePortRanges(s: string): PortRange[] | undefined {
  const ranges: PortRange[] = [];
  for (const t of splitList(s)) {
    const r = parsePortToken(t);
    if (r === undefined) return undefined;
    ranges.push(r);
  }
  ranges.sort((x, y) => x.lo - y.lo);
  const merged: PortRange[] = [];
  for (const r of ranges) {
    const last = merged[merged.length - 1];
    if (last !== undefined && r.lo <= last.hi + 1) {
      if (r.hi > last.hi) merged[merged.length - 1] = { lo: last.lo, hi: r.hi };
    } else {
      merged.push(r);
    }
  }
  return merged;
}

/**
 * The POSIX ERE of docs/COMPATIBILITY.md#flows as a JS RegExp. Without back-references and
 * anchored at both ends, POSIX leftmost-longest and JS backtracking accept
 * exactly the same strings; `$` is end of input only (no `m` flag, as
 * without `REG_NEWLINE`).
 */
export const MATCH_RE =
  /^(sctp|tcp|udp)\[([0-9]+) *: *([124])\]( *& *(0x[0-9a-f]+))? *= *([0-9]+|0x[0-9a-f]+)$/;

/**
 * C `strtol(s, NULL, 0)` of a digit string the regexp has accepted, in exact
 * arithmetic (a leading `0` means octal and parsing stops at the first
 * non-octal digit; `0x` means hex).
 */
function exactStrtol0(s: string): bigint {
  if (s.startsWith("0x")) return BigInt(s);
  if (s.startsWith("0")) {
    const m = /^[0-7]*/.exec(s)![0];
    return m === "" ? 0n : BigInt("0o" + m);
  }
  return BigInt(s);
}

/**
 * One byte-match statement (already split and left-trimmed), docs/COMPATIBILITY.md#flows.
 * Errors are the reasons `String too long`, `Doesn't match regexp`,
 * `Out of bounds` (without the `Match [...]` wrapper).
 */
export function parseMatchStatement(stmt: string): Parsed<MatchStatement> {
  if (byteLength(stmt) > MAX_MATCH_STATEMENT) return { ok: false, error: "String too long" };
  const m = MATCH_RE.exec(stmt);
  if (m === null) return { ok: false, error: "Doesn't match regexp" };
  const proto = m[1] as MatchProto;
  const offset = exactStrtol0(m[2]);
  const nbytes = Number(m[3]);
  if (offset + BigInt(nbytes) > BigInt(MATCH_HEADER_SIZE[proto])) {
    return { ok: false, error: "Out of bounds" };
  }
  const mask = m[5] === undefined ? 0 : cStrtol0(m[5]).value >>> 0;
  const value = cStrtol0(m[6]).value >>> 0;
  return { ok: true, value: { proto, offset: Number(offset), nbytes, mask, value } };
}

/**
 * A `match` value: statements split on `,`, leading spaces removed;
 * statements that are empty after that are skipped, so a value without
 * statements is absent (`undefined`). Errors are `Match [<statement>] <reason>`.
 */
export function parseMatch(s: string): Parsed<readonly MatchStatement[] | undefined> {
  const out: MatchStatement[] = [];
  for (const raw of s.split(",")) {
    const stmt = raw.replace(/^ +/, "");
    if (stmt === "") continue;
    const r = parseMatchStatement(stmt);
    if (!r.ok) return { ok: false, error: `Match [${stmt}] ${r.error}` };
    out.push(r.value);
  }
  return { ok: true, value: out.length === 0 ? undefined : out };
}

/** The note of `Invalid protocols`: the first bad token and the accepted names. */
function protocolsDetail(s: string): string {
  const bad = splitList(s).find((t) => !["tcp", "udp", "sctp"].includes(t.toLowerCase()));
  return `protocols ${badValue(bad ?? s, PROTOCOLS_ACCEPTED)}`;
}

/** The note of `Invalid dports` / `Invalid sports`: the first bad token and the accepted forms. */
function portsDetail(field: string, s: string): string {
  const bad = splitList(s).find((t) => parsePortToken(t) === undefined);
  return `${field} ${badValue(bad ?? s, PORTS_ACCEPTED)}`;
}

/**
 * The note of `Invalid dsts` / `Invalid srcs`: the field, the first bad entry (a bare address gets
 * its one-address prefix suggested), or the count, and the form.
 */
function cidrsDetail(field: "dsts" | "srcs", s: string): string {
  const entries = splitList(s);
  if (entries.length > MAX_CIDRS) {
    return `${field}: ${entries.length} entries, at most ${MAX_CIDRS}; ${CIDRS_ACCEPTED}`;
  }
  const bad = entries.find((e) => parseCidr(e) === undefined) ?? s;
  const prefix = parseIPv4(bad) !== undefined ? 32 : parseIPv6(bad) !== undefined ? 128 : undefined;
  const one = prefix === undefined ? "" : `; one address is ${bad}/${prefix}`;
  return `${field} ${badValue(bad, CIDRS_ACCEPTED)}${one}`;
}

/**
 * Parse a whole flow in the server's validation order (docs/COMPATIBILITY.md#flows step 4):
 * name, protocols, dports, sports, dsts, srcs, match. The target is copied
 * as given (the store checks it); priority and udpencap never fail.
 * The udpencap precondition is {@link checkUdpencap}, checked by the store.
 */
export function parseFlow(fields: FlowFields): FlowResult {
  const nameError = checkName(fields.name);
  if (nameError !== undefined) return { ok: false, error: nameError };
  let protocols: number | undefined;
  if (fields.protocols !== undefined) {
    const p = parseProtocols(fields.protocols);
    if (!p.ok) return { ...p, detail: protocolsDetail(fields.protocols) };
    protocols = p.value;
  }
  const dports = fields.dports === undefined ? undefined : parsePortRanges(fields.dports);
  if (fields.dports !== undefined && dports === undefined) {
    return { ok: false, error: ERR.dports, detail: portsDetail("dports", fields.dports) };
  }
  const sports = fields.sports === undefined ? undefined : parsePortRanges(fields.sports);
  if (fields.sports !== undefined && sports === undefined) {
    return { ok: false, error: ERR.sports, detail: portsDetail("sports", fields.sports) };
  }
  const dsts = fields.dsts === undefined ? undefined : parseCidrList(fields.dsts);
  if (dsts === null) {
    return { ok: false, error: ERR.dsts, detail: cidrsDetail("dsts", fields.dsts!) };
  }
  const srcs = fields.srcs === undefined ? undefined : parseCidrList(fields.srcs);
  if (srcs === null) {
    return { ok: false, error: ERR.srcs, detail: cidrsDetail("srcs", fields.srcs!) };
  }
  let match: readonly MatchStatement[] | undefined;
  if (fields.match !== undefined) {
    const r = parseMatch(fields.match);
    if (!r.ok) return r;
    match = r.value;
  }
  const flow: Flow = {
    name: fields.name!,
    priority: parsePriority(fields.priority),
    target: fields.target,
    protocols,
    dsts,
    srcs,
    dports,
    sports,
    match,
    udpencap: parseUdpencap(fields.udpencap),
  };
  return { ok: true, flow: freezeFlow(flow) };
}

/**
 * The SCTP-over-UDP helper flow `#<name>` of a main flow with udpencap P
 * (docs/COMPATIBILITY.md#flows): same priority, dsts and srcs; protocols udp; dports [P];
 * no sports, match or target; udpencap P.
 */
export function helperFlow(main: Flow): Flow {
  return freezeFlow({
    name: HELPER_PREFIX + main.name,
    priority: main.priority,
    target: undefined,
    protocols: PROTO_UDP,
    dsts: main.dsts,
    srcs: main.srcs,
    dports: [{ lo: main.udpencap, hi: main.udpencap }],
    sports: undefined,
    match: undefined,
    udpencap: main.udpencap,
  });
}

/** Whether `flow` is an internal helper flow (no target, `#` name). */
export function isHelperFlow(flow: Flow): boolean {
  return flow.target === undefined && flow.name.startsWith(HELPER_PREFIX);
}

/** Freeze a flow and its lists (CIDR address bytes stay typed arrays; never mutate them). */
function freezeFlow(f: Flow): Flow {
  for (const list of [f.dsts, f.srcs, f.dports, f.sports, f.match]) {
    if (list !== undefined) {
      for (const item of list) Object.freeze(item);
      Object.freeze(list);
    }
  }
  return Object.freeze(f);
}
