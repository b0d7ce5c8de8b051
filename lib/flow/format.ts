/**
 * Printing flows: the normalised field forms of docs/COMPATIBILITY.md#flows and the exact JSON
 * layouts of `flow-list` (6.9) and `flow-list-names` (1.9).
 *
 * Strings are always printed as valid JSON strings: with the name rule
 * (docs/COMPATIBILITY.md#differences D4) flow names need no escaping, but target names (and names from
 * any other source) may contain `"`, `\` or control characters, which are
 * escaped instead of printed raw as 1.2.0 does.
 *
 * @example
 * ```ts
 * import { formatFlowList, formatNameList } from "./format.ts";
 * formatFlowList([]); // "[]\n"
 * formatNameList(["a", "b"]); // '[\n  "a",\n  "b"\n]\n'
 * ```
 * @module
 */
import {
  type Cidr,
  type Flow,
  type MatchStatement,
  type PortRange,
  PROTO_SCTP,
  PROTO_TCP,
  PROTO_UDP,
} from "./types.ts";
import { formatIPv6 } from "../ccompat/inet.ts";

/** A flow with its current `matches_count`, as listed. */
export interface FlowListEntry {
  readonly flow: Flow;
  /** u32. */
  readonly matchesCount: number;
  /** The flow waits for its table (docs/COMPATIBILITY.md#differences D58); absent: it does not. */
  readonly pending?: boolean;
}

/** Which list a flow belongs to: trace flows are printed without `user_ref`. */
export type FlowKind = "flow" | "trace";

/** A JSON string literal: `"` + text with `"`, `\` and control characters escaped + `"`. */
export function jsonString(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += "\\\\";
    else if (c < 0x20) out += "\\u" + c.toString(16).padStart(4, "0");
    else out += s[i];
  }
  return out + '"';
}

/** A CIDR as `<masked address in IPv6 text form>/<prefix>` (docs/COMPATIBILITY.md#flows). */
export function formatCidr(c: Cidr): string {
  return `${formatIPv6(c.addr)}/${c.prefix}`;
}

/** A port range as `a` or `a-b` (docs/COMPATIBILITY.md#flows). */
export function formatPortRange(r: PortRange): string {
  return r.lo === r.hi ? `${r.lo}` : `${r.lo}-${r.hi}`;
}

/** A match statement as `proto[off:n]=0xV` or `proto[off:n]&0xM=0xV` (docs/COMPATIBILITY.md#flows). */
export function formatMatch(m: MatchStatement): string {
  const mask = m.mask === 0 ? "" : `&0x${(m.mask >>> 0).toString(16)}`;
  return `${m.proto}[${m.offset}:${m.nbytes}]${mask}=0x${(m.value >>> 0).toString(16)}`;
}

/** Protocol names of a `PROTO_*` bit set, in the fixed order tcp, udp, sctp. */
export function protocolNames(bits: number): string[] {
  const out: string[] = [];
  if (bits & PROTO_TCP) out.push("tcp");
  if (bits & PROTO_UDP) out.push("udp");
  if (bits & PROTO_SCTP) out.push("sctp");
  return out;
}

/** A multi-line list member: `"key": [\n    "a",\n    "b"\n  ]` (empty: `[\n\n  ]`). */
function listLine(key: string, items: readonly string[]): string {
  return `  "${key}": [\n${items.map((i) => "    " + jsonString(i)).join(",\n")}\n  ]`;
}

/**
 * One flow object exactly as in docs/COMPATIBILITY.md#flows, without a trailing newline: keys
 * `name`, `priority` (unsigned), `protocols` (one line), `dests`, `dports`,
 * `srcs`, `sports`, `match`, `udpencap` (if > 0), `matches_count`, and for
 * normal flows `user_ref` (the target, or `NULL` for helper flows); a `pending` flow (not in
 * 1.2.0, D58) gets a last key `"pending": true`.
 */
export function formatFlow(
  flow: Flow,
  matchesCount: number,
  kind: FlowKind = "flow",
  pending = false,
): string {
  const lines = [
    `  "name": ${jsonString(flow.name)}`,
    `  "priority": ${flow.priority >>> 0}`,
  ];
  if (flow.protocols !== undefined) {
    lines.push(
      `  "protocols": [ ${protocolNames(flow.protocols).map((p) => `"${p}"`).join(", ")} ]`,
    );
  }
  if (flow.dsts !== undefined) lines.push(listLine("dests", flow.dsts.map(formatCidr)));
  if (flow.dports !== undefined) lines.push(listLine("dports", flow.dports.map(formatPortRange)));
  if (flow.srcs !== undefined) lines.push(listLine("srcs", flow.srcs.map(formatCidr)));
  if (flow.sports !== undefined) lines.push(listLine("sports", flow.sports.map(formatPortRange)));
  if (flow.match !== undefined) lines.push(listLine("match", flow.match.map(formatMatch)));
  if (flow.udpencap > 0) lines.push(`  "udpencap": ${flow.udpencap}`);
  lines.push(`  "matches_count": ${matchesCount >>> 0}`);
  if (kind === "flow") lines.push(`  "user_ref": ${jsonString(flow.target ?? "NULL")}`);
  if (pending) lines.push(`  "pending": true`);
  return `{\n${lines.join(",\n")}\n}`;
}

/** The whole list: `[` + flows joined by `,\n` + `]\n`; empty: `[]\n` (docs/COMPATIBILITY.md#flows). */
export function formatFlowList(entries: readonly FlowListEntry[], kind: FlowKind = "flow"): string {
  return `[${
    entries.map((e) => formatFlow(e.flow, e.matchesCount, kind, e.pending)).join(",\n")
  }]\n`;
}

/** The names list of `flow-list-names`: `[]\n`, or one indented name per line (docs/COMPATIBILITY.md#control-protocol). */
export function formatNameList(names: readonly string[]): string {
  if (names.length === 0) return "[]\n";
  return `[\n${names.map((n) => "  " + jsonString(n)).join(",\n")}\n]\n`;
}
