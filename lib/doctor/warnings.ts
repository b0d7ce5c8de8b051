/**
 * The warnings of commands whose configuration cannot work as given (printed on stderr, the exit
 * status unchanged): `activate` of a fwmark that no `ip rule` routes, `flow-set` of destinations
 * no NFQUEUE rule sends to the queues. Pure: the rules come in as read.
 *
 * @example
 * ```ts
 * import { fwmarkRuleWarnings } from "./warnings.ts";
 * fwmarkRuleWarnings([104], [], []);
 * // ["fwmark 104 has no ip rule (ip rule add fwmark 104 table 104; ip -6 rule add ...) ..."]
 * ```
 * @module
 */
import {
  cidrDst,
  type Dst,
  formatDst,
  type FwmarkRule,
  fwmarkRuleFor,
  type QueueRule,
  queueRuleFor,
  uncertainRuleFor,
} from "./rules.ts";
import { parseCidr, splitList } from "../flow/parse.ts";

/**
 * For each fwmark (negative ones are not targets): a warning when no `ip rule` of either family
 * routes it, or when one family has fwmark rules for other marks but none for it (that family is
 * policy routed, this target forgotten). A family whose rules are undefined (`ip` could not tell)
 * is not judged; with neither known, nothing is said. Where no fwmark is routed at all, only
 * `lbHere` (a daemon listens on a queue in this namespace) makes it worth a warning: a table
 * filled elsewhere (a demo, a namespace without a daemon) is not this namespace's concern.
 */
/** Highest routing table id (`ip rule ... table T`: 32 bits). */
const MAX_TABLE = 2 ** 32 - 1;

/**
 * The routing table suggested for fwmark `fw`: `fw` itself, unless it is a reserved table
 * (0 unspec, 253 default, 254 main, 255 local) or no table id; then 1000+fw (or 1000), with a
 * note saying it is a free one of the operator's choosing.
 */
export function suggestedTable(fw: number): { table: number; note: string } {
  if (fw > 0 && fw <= MAX_TABLE && (fw < 253 || fw > 255)) return { table: fw, note: "" };
  const table = fw >= 0 && 1000 + fw <= MAX_TABLE ? 1000 + fw : 1000;
  return {
    table,
    note: ` (table ${table}, a free routing table id other than 253-255: table ${fw} ` +
      (fw > MAX_TABLE ? "is no table id" : fw === 0 ? "is no table" : "is a system table") + ")",
  };
}

export function fwmarkRuleWarnings(
  fwmarks: readonly number[],
  v4: readonly FwmarkRule[] | undefined,
  v6: readonly FwmarkRule[] | undefined,
  lbHere = true,
): string[] {
  if (v4 === undefined && v6 === undefined) return [];
  if (!lbHere && (v4?.length ?? 0) === 0 && (v6?.length ?? 0) === 0) return [];
  const out: string[] = [];
  for (const fw of new Set(fwmarks)) {
    if (fw < 0) continue;
    const has4 = v4 === undefined || fwmarkRuleFor(fw, v4) !== undefined;
    const has6 = v6 === undefined || fwmarkRuleFor(fw, v6) !== undefined;
    const { table: t, note } = suggestedTable(fw);
    if (!has4 && !has6) {
      out.push(
        `fwmark ${fw} has no ip rule (ip rule add fwmark ${fw} table ${t}; ip -6 rule add ` +
          `fwmark ${fw} table ${t}; and a route in table ${t})${note}: its packets are routed ` +
          "as if unmarked; `nfqlb doctor --tshm=NAME` checks every target",
      );
    } else if (!has4 && v4!.length > 0) {
      out.push(
        `fwmark ${fw} has no ip rule for IPv4 (ip rule add fwmark ${fw} table ${t})${note}, ` +
          "other fwmarks have: its IPv4 packets are routed as if unmarked",
      );
    } else if (!has6 && v6!.length > 0) {
      out.push(
        `fwmark ${fw} has no ip -6 rule (ip -6 rule add fwmark ${fw} table ${t})${note}, other ` +
          "fwmarks have: its IPv6 packets are routed as if unmarked",
      );
    }
  }
  return out;
}

/**
 * A warning when some of a flow's `dsts` (the `--dsts` text) are queued by no NFQUEUE rule of
 * `rules` (all the rules of the namespace): the flow never sees their packets. Undefined when all
 * are (or none is given: the flow matches every destination), and for a dst a rule whose
 * destinations cannot be read (an ipset) may queue.
 */
export function unqueuedDstsWarning(
  flow: string,
  dsts: string,
  rules: readonly QueueRule[],
): string | undefined {
  const missing: string[] = [];
  for (const d of flowDsts(dsts)) {
    if (queueRuleFor(d, rules) === undefined && uncertainRuleFor(d, rules) === undefined) {
      missing.push(formatDst(d));
    }
  }
  if (missing.length === 0) return undefined;
  return `flow ${flow}: no NFQUEUE rule in this namespace sends ${missing.join(", ")} to a ` +
    `queue: the flow never sees those packets; nfqlb ruleset --vip=${missing.join(",")} ` +
    "--queue=<flowlb's --queue> --apply";
}

/** The prefixes of a `--dsts` text, read as flowlb reads them (`lib/flow/parse.ts`). */
export function flowDsts(dsts: string): Dst[] {
  const out: Dst[] = [];
  for (const entry of splitList(dsts)) {
    const c = parseCidr(entry);
    if (c !== undefined) out.push(cidrDst(c.addr, c.prefix));
  }
  return out;
}

/** The families of a `--dsts` text (none: no valid prefix). */
export function dstFamilies(dsts: string): Set<4 | 6> {
  return new Set(flowDsts(dsts).map((d) => (d.v6 ? 6 : 4) as 4 | 6));
}
