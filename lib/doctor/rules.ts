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
  /** Families it applies to (4, 6). */
  readonly families: readonly (4 | 6)[];
  /** Queues it sends to: `first..last`. */
  readonly first: number;
  readonly last: number;
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

/** Addresses and prefixes in a list text (`10.0.0.1/32,10.0.0.2`, `{ a, b }`). */
function dstList(text: string): Dst[] {
  return text.replace(/[{}]/g, " ").split(/[\s,]+/).map(parseDst).filter((d): d is Dst =>
    d !== undefined
  );
}

/** The `-j NFQUEUE` rules of `iptables-save` (or `ip6tables-save`, `v6`) output. */
function iptablesQueueRules(text: string, v6: boolean): QueueRule[] {
  const out: QueueRule[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line.startsWith("-A ") || !/-j NFQUEUE\b/.test(line)) continue;
    if (/!\s+-d\s/.test(line)) continue; // "all but these": not a rule for them
    const d = /\s-d\s+(\S+)/.exec(line);
    const num = /--queue-num\s+(\d+)/.exec(line);
    const bal = /--queue-balance\s+(\d+):(\d+)/.exec(line);
    const first = bal ? Number(bal[1]) : num ? Number(num[1]) : 0;
    const last = bal ? Number(bal[2]) : first;
    out.push({
      dsts: d ? dstList(d[1]) : undefined,
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
    const line = raw.trim();
    const q = /(?:^|\s)queue(?:\s+flags\s+\S+)?(?:\s+(?:num|to)\s+(\d+)(?:-(\d+))?)?/.exec(line);
    if (q === null || /^(set|map|chain|type|elements)\b/.test(line)) continue;
    const first = q[1] === undefined ? 0 : Number(q[1]);
    const last = q[2] === undefined ? first : Number(q[2]);
    const d = /\b(ip6?)\s+daddr\s+(!=\s+)?(@\S+|\{[^}]*\}|\S+)/.exec(line);
    if (d && d[2] !== undefined) continue; // "daddr != X": not a rule for X
    let dsts: Dst[] | undefined;
    let families = tableFamilies;
    if (d) {
      families = d[1] === "ip" ? [4] : [6];
      dsts = d[3].startsWith("@") ? sets.get(`${table}/${d[3].slice(1)}`) ?? [] : dstList(d[3]);
    } else if (/\b(meta nfproto|nfproto)\s+ipv4\b/.test(line)) {
      families = [4];
    } else if (/\b(meta nfproto|nfproto)\s+ipv6\b/.test(line)) {
      families = [6];
    }
    out.push({ dsts, families, first, last, text: line });
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

/**
 * A rule that queues every address of `dst` (and, given `queues`, only to those queues); undefined
 * when none does. A prefix only partly inside a queued prefix is not queued.
 */
export function queueRuleFor(
  dst: Dst,
  rules: readonly QueueRule[],
  queues?: ReadonlySet<number>,
): QueueRule | undefined {
  const toQueues = (r: QueueRule) => {
    if (queues === undefined) return true;
    for (let q = r.first; q <= r.last; q++) if (!queues.has(q)) return false;
    return true;
  };
  return rules.find((r) =>
    r.families.includes(dst.v6 ? 6 : 4) &&
    (r.dsts === undefined || r.dsts.some((d) => dstContains(d, dst))) && toQueues(r)
  );
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

/** The fwmark rules of `ip rule show` (or `ip -6 rule show`) output. */
export function parseFwmarkRules(text: string): FwmarkRule[] {
  const out: FwmarkRule[] = [];
  for (
    const m of text.matchAll(
      /\bfwmark\s+(0x[0-9a-f]+|\d+)(?:\/(0x[0-9a-f]+|\d+))?.*?\blookup\s+(\S+)/gi,
    )
  ) {
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
