/**
 * Reading the rules of the network namespace the command runs in: the netfilter rule sets
 * (`iptables-save`, `ip6tables-save`, `nft list ruleset`, run in parallel) and the policy routing
 * (`ip rule`, `ip route`) of each family. `doctor` checks them; `activate` and `flow-set` read
 * them to warn about a configuration that cannot work (`lib/doctor/rules.ts` parses them). Each
 * read costs a few milliseconds (a subprocess per tool).
 * @module
 */
import {
  type FwmarkRule,
  parseFwmarkRules,
  parseQueueRules,
  type RuleSets,
} from "../lib/doctor/rules.ts";
import { dstFamilies, fwmarkRuleWarnings, unqueuedDstsWarning } from "../lib/doctor/warnings.ts";
import { LOG_WARNING, logLine } from "../lib/log/levels.ts";
import { parseNfqueueProc } from "../lib/nfqueue/proc.ts";
import type { Io } from "../daemon/io.ts";
import { exec } from "./exec.ts";

/** How one tool's run went: its output, or why there is none. */
export type ToolOutput = { ok: true; text: string } | { ok: false; why: string };

/** Run a tool; its stdout when it exits 0, else what went wrong (not installed, its error). */
export async function tool(argv: readonly string[]): Promise<ToolOutput> {
  try {
    const r = await exec(argv);
    if (r.code === 0) return { ok: true, text: r.stdout };
    const err = r.stderr.trim().split("\n")[0] ?? "";
    return { ok: false, why: `\`${argv.join(" ")}\` failed (${r.code})${err ? `: ${err}` : ""}` };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { ok: false, why: `${argv[0]} is not installed` };
    return { ok: false, why: `${argv[0]}: ${e instanceof Error ? e.message : e}` };
  }
}

/** The rule sets of this namespace, and the tools that could not be run (why). */
export interface ReadRuleSets {
  readonly sets: RuleSets;
  /** At least one tool worked: the rules it lists are all the namespace has of its kind. */
  readonly readable: boolean;
  /** Why a tool gave nothing, one entry per tool that failed. */
  readonly failures: readonly string[];
}

/**
 * `iptables-save`, `ip6tables-save` and `nft list ruleset` of this namespace (`families`: only
 * the iptables of these families are asked; nft always is).
 */
export async function readRuleSets(
  families: ReadonlySet<4 | 6> = new Set([4, 6]),
): Promise<ReadRuleSets> {
  const none: ToolOutput = { ok: true, text: "" };
  const [ip4, ip6, nft] = await Promise.all([
    families.has(4) ? tool(["iptables-save"]) : none,
    families.has(6) ? tool(["ip6tables-save"]) : none,
    tool(["nft", "list", "ruleset"]),
  ]);
  const text = (o: ToolOutput) => o.ok ? o.text : "";
  const all = [ip4, ip6, nft];
  return {
    sets: { ip4: text(ip4), ip6: text(ip6), nft: text(nft) },
    readable: all.some((o) => o.ok && o !== none),
    failures: all.flatMap((o) => o.ok ? [] : [o.why]),
  };
}

/** `ip -4 rule` or `ip -6 rule`: the fwmark rules, undefined when `ip` cannot tell. */
export async function readFwmarkRules(family: 4 | 6): Promise<FwmarkRule[] | undefined> {
  const r = await tool(["ip", `-${family}`, "rule", "show"]);
  return r.ok ? parseFwmarkRules(r.text) : undefined;
}

/** Whether routing table `table` of `family` has a route (`ip -4|-6 route show table T`). */
export async function tableHasRoute(family: 4 | 6, table: string): Promise<boolean> {
  const r = await tool(["ip", `-${family}`, "route", "show", "table", table]);
  return r.ok && r.text.trim() !== "";
}

/** Whether a daemon listens on a queue in this namespace (`/proc/net/netfilter/nfnetlink_queue`). */
function queuesBoundHere(): boolean {
  try {
    return parseNfqueueProc(Deno.readTextFileSync("/proc/net/netfilter/nfnetlink_queue")).size > 0;
  } catch {
    return false;
  }
}

/**
 * After `activate`: warn on `io` about the fwmarks no `ip rule` routes
 * (`lib/doctor/warnings.ts`; with no fwmark routed at all, only where a daemon listens on a
 * queue). Silent when `ip` cannot tell. About 5 ms (two `ip rule` runs).
 */
export async function warnFwmarkRules(io: Io, fwmarks: readonly number[]): Promise<void> {
  if (!fwmarks.some((f) => f >= 0)) return;
  const [v4, v6] = await Promise.all([readFwmarkRules(4), readFwmarkRules(6)]);
  for (const w of fwmarkRuleWarnings(fwmarks, v4, v6, queuesBoundHere())) {
    io.err(logLine(LOG_WARNING, w) + "\n");
  }
}

/**
 * After an `OK` to `flow-set`: warn on `io` when a destination of the flow is queued by no
 * NFQUEUE rule in this namespace. Silent without `--dsts` or when the rules cannot be read
 * (e.g. not root). The iptables of the dsts' families are read first (`nfqlb ruleset`'s default
 * style); nft only when they do not queue every dst: about 5 ms when they do, 10 when not.
 */
export async function warnUnqueuedDsts(
  io: Io,
  flow: string,
  dsts: string | undefined,
): Promise<void> {
  if (dsts === undefined) return;
  const families = dstFamilies(dsts);
  if (families.size === 0) return;
  const ipt = await Promise.all(
    [...families].map((f) => tool([f === 4 ? "iptables-save" : "ip6tables-save"])),
  );
  const text = (o: ToolOutput) => (o.ok ? o.text : "");
  const ip4 = families.has(4) ? text(ipt[0]) : "";
  const ip6 = families.has(6) ? text(ipt[ipt.length - 1]) : "";
  if (unqueuedDstsWarning(flow, dsts, parseQueueRules({ ip4, ip6, nft: "" })) === undefined) {
    return;
  }
  const nft = await tool(["nft", "list", "ruleset"]);
  if (!nft.ok && !ipt.some((o) => o.ok)) return;
  const w = unqueuedDstsWarning(flow, dsts, parseQueueRules({ ip4, ip6, nft: text(nft) }));
  if (w !== undefined) io.err(logLine(LOG_WARNING, w) + "\n");
}
