/**
 * What the netfilter and policy-routing rules of a namespace say, read from the text the tools
 * print: the NFQUEUE rules (`iptables-save`, `ip6tables-save`, `nft list ruleset`) as
 * destination prefix → queues, and the `ip rule` fwmark rules as fwmark → routing table.
 * `nfqlb doctor` checks VIPs and flows against them; `activate` and `flow-set` warn with them.
 *
 * @example
 * ```ts
 * import { parseDst, parseQueueRules, queueRuleFor } from "./rules.ts";
 * const rules = parseQueueRules({
 *   ip4: "-A nfqlb -d 10.0.0.0/24 -j NFQUEUE --queue-balance 0:3\n",
 *   ip6: "",
 *   nft: "",
 * });
 * queueRuleFor(parseDst("10.0.0.7")!, rules)?.first; // 0
 * ```
 * @module
 */
import { formatIPv6, parseIPv4, parseIPv6 } from "../ccompat/inet.ts";

/** An address prefix of one family (host bits are ignored). */
export interface Dst {
  readonly v6: boolean;
  /** The address as a number (32 or 128 bits). */
  readonly addr: bigint;
  /** Prefix length. */
  readonly len: number;
}

/** One rule that sends packets to NFQUEUE. */
export interface QueueRule {
  /** Destinations it queues; undefined: every destination of its families. */
  readonly dsts?: readonly Dst[];
  /**
   * Its destinations cannot be read from the rule (an ipset `-m set`, a concatenation, a set not
   * listed): it may queue any destination of its families, or none; nothing is claimed either way.
   */
  readonly dstsUnknown?: boolean;
  /** Families it applies to (4, 6). */
  readonly families: readonly (4 | 6)[];
  /** Queues it sends to: `first..last` (0 and 0 when {@link QueueRule.queuesUnknown}). */
  readonly first: number;
  readonly last: number;
  /** The queue is chosen at run time (`queue to numgen ...`, `jhash`, a map): some queue. */
  readonly queuesUnknown?: boolean;
  /** The rule as the tool printed it. */
  readonly text: string;
}

/** The rule sets as read: `iptables-save`, `ip6tables-save`, `nft list ruleset` output. */
export interface RuleSets {
  readonly ip4: string;
  readonly ip6: string;
  readonly nft: string;
}

const toBig = (b: Uint8Array) => b.reduce((n, x) => (n << 8n) | BigInt(x), 0n);

/**
 * `ADDR` or `ADDR/LEN`, IPv4 or IPv6; an IPv4-mapped IPv6 prefix (as `flow-list` prints IPv4
 * dsts, `::ffff:10.0.0.0/120`) is the IPv4 prefix. Undefined when it is neither.
 */
export function parseDst(text: string): Dst | undefined {
  const [a, lenText, more] = text.trim().split("/");
  if (more !== undefined) return undefined;
  const v6 = a.includes(":");
  const bytes = v6 ? parseIPv6(a) : parseIPv4(a);
  if (bytes === undefined) return undefined;
  const bits = v6 ? 128 : 32;
  if (lenText !== undefined && !/^\d{1,3}$/.test(lenText)) return undefined;
  const len = lenText === undefined ? bits : Number(lenText);
  if (len > bits) return undefined;
  return v6 ? cidrDst(bytes, len) : { v6, addr: toBig(bytes), len };
}

/** An IPv6 address and prefix length as a prefix; IPv4-mapped (`::ffff:a.b.c.d/96+n`) is IPv4. */
export function cidrDst(bytes: Uint8Array, len: number): Dst {
  const addr = toBig(bytes);
  if (len >= 96 && addr >> 32n === 0xffffn) {
    return { v6: false, addr: addr & 0xffffffffn, len: len - 96 };
  }
  return { v6: true, addr, len };
}

/** A prefix as text: `10.0.0.1`, `10.0.0.0/24`, `1000::/64`. */
export function formatDst(d: Dst): string {
  const bytes = new Uint8Array(d.v6 ? 16 : 4);
  let n = d.addr;
  for (let i = bytes.length - 1; i >= 0; i--) {
    bytes[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  const a = d.v6 ? formatIPv6(bytes) : bytes.join(".");
  return d.len === (d.v6 ? 128 : 32) ? a : `${a}/${d.len}`;
}

/** Whether prefix `outer` holds every address of `inner`. */
export function dstContains(outer: Dst, inner: Dst): boolean {
  if (outer.v6 !== inner.v6 || outer.len > inner.len) return false;
  const shift = BigInt((outer.v6 ? 128 : 32) - outer.len);
  return outer.addr >> shift === inner.addr >> shift;
}

/** The prefixes that together hold exactly the addresses `first..last` (one family). */
export function rangeDsts(v6: boolean, first: bigint, last: bigint): Dst[] {
  const bits = v6 ? 128 : 32;
  const out: Dst[] = [];
  let a = first;
  while (a <= last) {
    let len = bits;
    // The largest aligned block starting at `a` that ends at or before `last`.
    while (len > 0) {
      const size = 1n << BigInt(bits - len + 1);
      if (a % size !== 0n || a + size - 1n > last) break;
      len--;
    }
    out.push({ v6, addr: a, len });
    a += 1n << BigInt(bits - len);
  }
  return out;
}

/** `A-B` (an nft interval element, an iprange): its prefixes; undefined when it is not one. */
function parseRange(text: string): Dst[] | undefined {
  const [a, b, more] = text.split("-");
  if (b === undefined || more !== undefined) return undefined;
  const lo = parseDst(a);
  const hi = parseDst(b);
  if (lo === undefined || hi === undefined || lo.v6 !== hi.v6) return undefined;
  if (lo.len !== (lo.v6 ? 128 : 32) || hi.len !== lo.len || lo.addr > hi.addr) return undefined;
  return rangeDsts(lo.v6, lo.addr, hi.addr);
}

/**
 * Addresses, prefixes and ranges in a list text (`10.0.0.1/32,10.0.0.2`, `{ a, b-c }`); what is
 * none of them (element options as `timeout 1h`) is passed over.
 */
export function dstList(text: string): Dst[] {
  const out: Dst[] = [];
  for (const word of text.replace(/[{}]/g, " ").split(/[\s,]+/)) {
    if (word === "") continue;
    const d = parseDst(word);
    if (d !== undefined) out.push(d);
    else out.push(...(parseRange(word) ?? []));
  }
  return out;
}

/** The `-j NFQUEUE` rules of `iptables-save` (or `ip6tables-save`, `v6`) output. */
function iptablesQueueRules(text: string, v6: boolean): QueueRule[] {
  const out: QueueRule[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line.startsWith("-A ") || !/-j NFQUEUE\b/.test(line)) continue;
    // "All but these" is not a rule for them.
    if (/!\s+(-d|--dst-range)\s/.test(line)) continue;
    const d = /\s-d\s+(\S+)/.exec(line);
    const range = /\s--dst-range\s+(\S+)/.exec(line);
    const num = /--queue-num\s+(\d+)/.exec(line);
    const bal = /--queue-balance\s+(\d+):(\d+)/.exec(line);
    const first = bal ? Number(bal[1]) : num ? Number(num[1]) : 0;
    const last = bal ? Number(bal[2]) : first;
    const inRange = range ? parseRange(range[1]) : undefined;
    // An ipset (`-m set --match-set S dst`): its addresses are not in the rule.
    const unknown = /\s--match-set\s/.test(line) || (range !== null && inRange === undefined);
    out.push({
      dsts: unknown ? [] : d ? dstList(d[1]) : inRange,
      ...(unknown ? { dstsUnknown: true } : {}),
      families: [v6 ? 6 : 4],
      first,
      last,
      text: line,
    });
  }
  return out;
}

/** The named sets of `nft list ruleset` output, `TABLE/NAME` → their elements. */
function nftSets(text: string): Map<string, Dst[]> {
  const sets = new Map<string, Dst[]>();
  let table = "";
  let set: string | undefined;
  let elements: string | undefined;
  for (const line of text.split("\n")) {
    const t = /^table\s+(\S+)\s+(\S+)\s*\{/.exec(line);
    if (t) table = `${t[1]} ${t[2]}`;
    const s = /^\s+(?:set|map)\s+(\S+)\s*\{/.exec(line);
    if (s) set = `${table}/${s[1]}`;
    if (set === undefined) continue;
    const e = /elements\s*=\s*\{(.*)$/.exec(line);
    if (e) elements = e[1];
    else if (elements !== undefined) elements += " " + line;
    if (elements !== undefined && elements.includes("}")) {
      sets.set(set, dstList(elements.slice(0, elements.indexOf("}"))));
      elements = undefined;
      set = undefined;
    } else if (elements === undefined && /^\s+\}\s*$/.test(line)) {
      sets.set(set, sets.get(set) ?? []);
      set = undefined;
    }
  }
  return sets;
}

/**
 * The queue statement of an nft rule line (quoted strings already blanked): `queue`,
 * `queue num 2`, `queue flags bypass,fanout to 0-3`, `queue to numgen ...` (queues chosen at run
 * time: unknown). Undefined when the line has none; a chain named `queue` after `jump`/`goto`
 * (in a verdict map too) is no queue statement.
 */
export function nftQueueStatement(
  line: string,
): { first: number; last: number; unknown: boolean } | undefined {
  const words = line.split(/\s+/);
  for (let i = 0; i < words.length; i++) {
    if (words[i] !== "queue" || /^(jump|goto)$/.test(words[i - 1] ?? "")) continue;
    let j = i + 1;
    if (words[j] === "flags") j += 2;
    if (words[j] !== "num" && words[j] !== "to") return { first: 0, last: 0, unknown: false };
    const n = /^(\d+)(?:-(\d+))?$/.exec(words[j + 1] ?? "");
    if (n === null) return { first: 0, last: 0, unknown: true };
    // Older nft prints the flags after the numbers (`queue num 0-3 bypass,fanout`).
    const first = Number(n[1]);
    return { first, last: n[2] === undefined ? first : Number(n[2]), unknown: false };
  }
  return undefined;
}

/** The destinations of an nft rule's `ip daddr`/`ip6 daddr` match. */
type NftDaddr =
  | { kind: "none" }
  | { kind: "not" }
  | { kind: "dsts"; family: 4 | 6; dsts: Dst[] }
  | { kind: "unknown"; family: 4 | 6 };

/** The `ip daddr X` / `ip6 daddr X` of a rule line, with the named sets of its table. */
function nftDaddr(line: string, table: string, sets: ReadonlyMap<string, Dst[]>): NftDaddr {
  const d = /\b(ip6?)\s+daddr\s+(!=\s+)?(@\S+|\{[^}]*\}|\S+)(\s+\.)?/.exec(line);
  if (d === null) return { kind: "none" };
  if (d[2] !== undefined) return { kind: "not" };
  const family = d[1] === "ip" ? 4 : 6;
  if (d[4] !== undefined || d[3] === ".") return { kind: "unknown", family }; // concatenation
  if (d[3].startsWith("@")) {
    const set = sets.get(`${table}/${d[3].slice(1)}`);
    return set === undefined ? { kind: "unknown", family } : { kind: "dsts", family, dsts: set };
  }
  if (d[3].startsWith("{")) return { kind: "dsts", family, dsts: dstList(d[3]) };
  const one = dstList(d[3]);
  return one.length > 0 ? { kind: "dsts", family, dsts: one } : { kind: "unknown", family };
}

/** The rules with a `queue` statement of `nft list ruleset` output. */
function nftQueueRules(text: string): QueueRule[] {
  const sets = nftSets(text);
  const out: QueueRule[] = [];
  let table = "";
  let tableFamilies: (4 | 6)[] = [4, 6];
  for (const raw of text.split("\n")) {
    const t = /^table\s+(\S+)\s+(\S+)\s*\{/.exec(raw);
    if (t) {
      table = `${t[1]} ${t[2]}`;
      tableFamilies = t[1] === "ip" ? [4] : t[1] === "ip6" ? [6] : [4, 6];
    }
    const line = raw.trim().replace(/"[^"]*"/g, '""');
    if (/^(set|map|chain|type|elements|table|flags)\b/.test(line)) continue;
    const q = nftQueueStatement(line);
    if (q === undefined) continue;
    const queues = q.unknown
      ? { first: 0, last: 0, queuesUnknown: true as const }
      : { first: q.first, last: q.last };
    const d = nftDaddr(line, table, sets);
    if (d.kind === "not") continue; // "daddr != X": not a rule for X
    let dsts: Dst[] | undefined;
    let families = tableFamilies;
    let unknown = false;
    if (d.kind === "dsts" || d.kind === "unknown") {
      families = [d.family];
      dsts = d.kind === "dsts" ? d.dsts : [];
      unknown = d.kind === "unknown";
    } else if (/\b(meta nfproto|nfproto)\s+ipv4\b/.test(line)) {
      families = [4];
    } else if (/\b(meta nfproto|nfproto)\s+ipv6\b/.test(line)) {
      families = [6];
    }
    out.push({
      dsts,
      ...(unknown ? { dstsUnknown: true } : {}),
      families,
      ...queues,
      text: raw.trim(),
    });
  }
  return out;
}

/** Every NFQUEUE rule of the three rule sets. */
export function parseQueueRules(sets: RuleSets): QueueRule[] {
  return [
    ...iptablesQueueRules(sets.ip4, false),
    ...iptablesQueueRules(sets.ip6, true),
    ...nftQueueRules(sets.nft),
  ];
}

/** The addresses of a prefix as `[first, last]`. */
function bounds(d: Dst): [bigint, bigint] {
  const host = BigInt((d.v6 ? 128 : 32) - d.len);
  const first = (d.addr >> host) << host;
  return [first, first + (1n << host) - 1n];
}

/** Whether the prefixes `outer` together hold every address of `inner` (ranges, adjacent ones). */
function covered(inner: Dst, outer: readonly Dst[]): boolean {
  if (outer.some((d) => dstContains(d, inner))) return true;
  const [lo, hi] = bounds(inner);
  const parts = outer.filter((d) => d.v6 === inner.v6).map(bounds).filter(([a, b]) =>
    b >= lo && a <= hi
  ).sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  let next = lo;
  for (const [a, b] of parts) {
    if (a > next) return false;
    if (b >= next) next = b + 1n;
    if (next > hi) return true;
  }
  return false;
}

/**
 * A rule that queues every address of `dst` (and, given `queues`, only to those queues: a rule
 * whose queue is chosen at run time counts as theirs); undefined when none does. A prefix only
 * partly inside the rule's destinations is not queued; a rule whose destinations cannot be read
 * queues nothing here (see {@link uncertainRuleFor}).
 */
export function queueRuleFor(
  dst: Dst,
  rules: readonly QueueRule[],
  queues?: ReadonlySet<number>,
): QueueRule | undefined {
  const toQueues = (r: QueueRule) => {
    if (queues === undefined || r.queuesUnknown) return true;
    for (let q = r.first; q <= r.last; q++) if (!queues.has(q)) return false;
    return true;
  };
  return rules.find((r) =>
    r.families.includes(dst.v6 ? 6 : 4) && !r.dstsUnknown &&
    (r.dsts === undefined || covered(dst, r.dsts)) && toQueues(r)
  );
}

/**
 * A rule of `dst`'s family whose destinations cannot be read (an ipset, a concatenation): it may
 * queue `dst`, so "no rule queues it" cannot be said.
 */
export function uncertainRuleFor(dst: Dst, rules: readonly QueueRule[]): QueueRule | undefined {
  return rules.find((r) => r.dstsUnknown === true && r.families.includes(dst.v6 ? 6 : 4));
}

/** A queue range as text: `2`, `0:3`. */
export function rangeText(first: number, last: number): string {
  return first === last ? `${first}` : `${first}:${last}`;
}

/** Queue numbers as text: ranges of consecutive numbers, `0:3`, `0:1,5`. */
export function queuesText(queues: Iterable<number>): string {
  const s = [...new Set(queues)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < s.length;) {
    let j = i;
    while (j + 1 < s.length && s[j + 1] === s[j] + 1) j++;
    parts.push(rangeText(s[i], s[j]));
    i = j + 1;
  }
  return parts.join(",");
}

/** One `ip rule` with a fwmark: value, mask, and the routing table it looks up. */
export interface FwmarkRule {
  readonly fwmark: number;
  readonly mask: number;
  readonly table: string;
}

/**
 * The fwmark rules of `ip rule show` (or `ip -6 rule show`) output. A `not` rule (it matches
 * the packets *without* the mark) routes no marked packet and is left out.
 */
export function parseFwmarkRules(text: string): FwmarkRule[] {
  const out: FwmarkRule[] = [];
  for (const line of text.split("\n")) {
    if (/(^|\s)not(\s|$)/.test(line)) continue;
    const m = /\bfwmark\s+(0x[0-9a-f]+|\d+)(?:\/(0x[0-9a-f]+|\d+))?.*?\blookup\s+(\S+)/i.exec(
      line,
    );
    if (m === null) continue;
    out.push({
      fwmark: Number(m[1]) >>> 0,
      mask: m[2] === undefined ? 0xffffffff : Number(m[2]) >>> 0,
      table: m[3],
    });
  }
  return out;
}

/** The first rule that matches packets marked `fwmark`, undefined when none does. */
export function fwmarkRuleFor(
  fwmark: number,
  rules: readonly FwmarkRule[],
): FwmarkRule | undefined {
  return rules.find((r) => ((fwmark & r.mask) >>> 0) === ((r.fwmark & r.mask) >>> 0));
}
