/**
 * Reading the rules of the network namespace the command runs in: the netfilter rule sets
 * (`iptables-save`, `ip6tables-save`, `nft`) and the policy routing (`ip rule`, `ip route`) of
 * each family, through the bounded tools of `cli/tools.ts`. `doctor` checks them (each tool
 * with a timeout); `activate` and `flow-set` read them to warn about a configuration that cannot
 * work (`lib/doctor/rules.ts` parses them), within a total budget of {@link WARNING_BUDGET_MS}
 * and reading at most {@link WARNING_MAX_BYTES} per tool: past either they say nothing, as they
 * do with {@link NO_WARNINGS_ENV}`=1`.
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
import { parseSocketAddress } from "../lib/ccompat/sockaddr.ts";
import type { Io } from "../daemon/io.ts";
import { dumpFwmarkRules } from "../ffi/rtnetlink.ts";
import { tool, type ToolLimits, type ToolOutput } from "./tools.ts";

export { tool, type ToolOutput };

/** The environment variable that turns the warnings of `activate` and `flow-set` off (`1`). */
export const NO_WARNINGS_ENV = "NFQLB_NO_CONFIG_WARNINGS";
/** The total time the warnings of one command may take (ms); past it they say nothing. */
export const WARNING_BUDGET_MS = 1000;
/** The most output of one tool the warnings read (bytes); past it they say nothing. */
export const WARNING_MAX_BYTES = 512 * 1024;

/** How the warnings read the namespace: tools' directories, budget, cap (tests shrink them). */
export interface WarningLimits {
  readonly dirs?: readonly string[];
  readonly budgetMs?: number;
  readonly maxBytes?: number;
  /** `activate`: read the rules with an rtnetlink dump (default), else with `ip` only. */
  readonly netlink?: boolean;
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
 * the iptables of these families are asked; nft always is), each bounded by `limits`.
 */
export async function readRuleSets(
  families: ReadonlySet<4 | 6> = new Set([4, 6]),
  limits: ToolLimits = {},
): Promise<ReadRuleSets> {
  const none: ToolOutput = { ok: true, text: "" };
  const [ip4, ip6, nft] = await Promise.all([
    families.has(4) ? tool(["iptables-save"], limits) : none,
    families.has(6) ? tool(["ip6tables-save"], limits) : none,
    tool(["nft", "list", "ruleset"], limits),
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
export async function readFwmarkRules(
  family: 4 | 6,
  limits: ToolLimits = {},
): Promise<FwmarkRule[] | undefined> {
  const r = await tool(["ip", `-${family}`, "rule", "show"], limits);
  return r.ok ? parseFwmarkRules(r.text) : undefined;
}

/**
 * Whether routing table `table` of `family` has a route (`ip -4|-6 route show table T`);
 * undefined when `ip` cannot tell (why).
 */
export async function tableHasRoute(
  family: 4 | 6,
  table: string,
  limits: ToolLimits = {},
): Promise<boolean | string> {
  const r = await tool(["ip", `-${family}`, "route", "show", "table", table], limits);
  if (!r.ok && /FIB table does not exist/.test(r.why)) return false; // no route ever added
  return r.ok ? r.text.trim() !== "" : r.why;
}

/** Whether a daemon listens on a queue in this namespace (`/proc/net/netfilter/nfnetlink_queue`). */
function queuesBoundHere(): boolean {
  try {
    return parseNfqueueProc(Deno.readTextFileSync("/proc/net/netfilter/nfnetlink_queue")).size > 0;
  } catch {
    return false;
  }
}

/** Whether the warnings are turned off (`NFQLB_NO_CONFIG_WARNINGS=1`). */
function warningsOff(): boolean {
  try {
    return Deno.env.get(NO_WARNINGS_ENV) === "1";
  } catch {
    return false;
  }
}

/**
 * Run `read` with tool limits whose shared deadline fires after the budget; undefined when it
 * did (every tool still running is killed).
 */
async function withinBudget<T>(
  limits: WarningLimits,
  read: (tools: ToolLimits, expired: () => boolean) => Promise<T>,
): Promise<T | undefined> {
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), limits.budgetMs ?? WARNING_BUDGET_MS);
  try {
    const tools: ToolLimits = {
      dirs: limits.dirs,
      signal: deadline.signal,
      maxBytes: limits.maxBytes ?? WARNING_MAX_BYTES,
    };
    const r = await read(tools, () => deadline.signal.aborted);
    return deadline.signal.aborted ? undefined : r;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The fwmark rules of both families from one rtnetlink dump each (`ffi/rtnetlink.ts`), within
 * `timeoutMs` per answer; undefined when the socket fails (then `ip` is asked).
 */
function dumpBoth(timeoutMs: number): [FwmarkRule[], FwmarkRule[]] | undefined {
  try {
    return [dumpFwmarkRules(4, timeoutMs), dumpFwmarkRules(6, timeoutMs)];
  } catch {
    return undefined;
  }
}

/**
 * After `activate`: warn on `io` about the fwmarks no `ip rule` routes
 * (`lib/doctor/warnings.ts`; with no fwmark routed at all, only where a daemon listens on a
 * queue). The rules come from one rtnetlink dump per family (tens of µs), or, when that socket
 * fails, from `ip -4|-6 rule` (about 5 ms). Silent when neither can tell within the budget, or
 * with {@link NO_WARNINGS_ENV}.
 */
export async function warnFwmarkRules(
  io: Io,
  fwmarks: readonly number[],
  limits: WarningLimits = {},
): Promise<void> {
  if (!fwmarks.some((f) => f >= 0) || warningsOff()) return;
  // One budget for both ways: what the dump took is not given again to `ip`.
  const budget = limits.budgetMs ?? WARNING_BUDGET_MS;
  const start = performance.now();
  const dumped = limits.netlink === false ? undefined : dumpBoth(budget / 4);
  const left = budget - (performance.now() - start);
  if (dumped === undefined && left <= 0) return;
  const read = dumped ?? await withinBudget(
    { ...limits, budgetMs: left },
    (t) => Promise.all([readFwmarkRules(4, t), readFwmarkRules(6, t)]),
  );
  if (read === undefined) return;
  for (const w of fwmarkRuleWarnings(fwmarks, read[0], read[1], queuesBoundHere())) {
    io.err(logLine(LOG_WARNING, w) + "\n");
  }
}

/** The iptables tables of iptables-nft: in nft's list, but read (as such) by iptables-save. */
const XT_TABLES = new Set(["filter", "mangle", "raw", "nat", "security"]);

/**
 * The nft tables (`FAMILY NAME`) that may hold a queue rule for `families` and that the
 * iptables-save outputs `saved` (by family) did not already list: all but iptables-nft's own.
 */
function nftTablesToRead(
  chains: string,
  families: ReadonlySet<4 | 6>,
  saved: ReadonlyMap<4 | 6, string>,
): string[] {
  const out: string[] = [];
  for (const m of chains.matchAll(/^table\s+(\S+)\s+(\S+)\s*\{/gm)) {
    const [family, name] = [m[1], m[2]];
    const f = family === "ip" ? 4 : family === "ip6" ? 6 : undefined;
    if (family === "arp" || (f !== undefined && !families.has(f))) continue;
    const save = f === undefined ? undefined : saved.get(f);
    const byIptables = save !== undefined && XT_TABLES.has(name) &&
      /\(nf_tables\)/.test(save) && new RegExp(`^\\*${name}$`, "m").test(save);
    if (!byIptables) out.push(`${family} ${name}`);
  }
  return out;
}

/** The most nft tables the flow-set warning reads one by one (more: it says nothing). */
const MAX_NFT_TABLES = 32;

/**
 * Every NFQUEUE rule of this namespace that can queue `families`, or undefined when one source
 * could not be read in full (a tool missing, failing, too slow, or too verbose). The iptables
 * tables are read whole (NFQUEUE may be in any); of nft, the tables that are not iptables-nft's
 * (`nft list chains`, then `nft list table` each: cheaper than `nft list ruleset`, which
 * translates every iptables-nft rule).
 */
async function readAllQueueRules(
  families: ReadonlySet<4 | 6>,
  t: ToolLimits,
): Promise<RuleSets | undefined> {
  const fams = [...families];
  const [chains, ...saves] = await Promise.all([
    tool(["nft", "list", "chains"], t),
    ...fams.map((f) => tool([f === 4 ? "iptables-save" : "ip6tables-save"], t)),
  ]);
  if (!chains.ok || saves.some((s) => !s.ok)) return undefined;
  const saved = new Map(fams.map((f, i) => [f, (saves[i] as { text: string }).text]));
  const tables = nftTablesToRead(chains.text, families, saved);
  if (tables.length > MAX_NFT_TABLES) return undefined;
  const lists = await Promise.all(
    tables.map((tb) => tool(["nft", "list", "table", ...tb.split(" ")], t)),
  );
  if (lists.some((l) => !l.ok)) return undefined;
  return {
    ip4: saved.get(4) ?? "",
    ip6: saved.get(6) ?? "",
    nft: lists.map((l) => (l as { text: string }).text).join("\n"),
  };
}

/**
 * After an `OK` to `flow-set`: warn on `io` when a destination of the flow is queued by no
 * NFQUEUE rule in this namespace. Silent without `--dsts`, when the flowlb is reached over TCP
 * (`address`: it may run in another namespace), with {@link NO_WARNINGS_ENV}, and unless every
 * rule source was read (within the budget and the cap). The mangle tables of the dsts' families
 * (where `nfqlb ruleset` writes), as `nft list table ip mangle` shows iptables-nft's, are read
 * first: when they queue every dst, nothing more is read.
 */
export async function warnUnqueuedDsts(
  io: Io,
  flow: string,
  dsts: string | undefined,
  address?: string,
  limits: WarningLimits = {},
): Promise<void> {
  if (dsts === undefined || warningsOff()) return;
  if (address !== undefined && parseSocketAddress(address)?.kind === "tcp") return;
  const families = dstFamilies(dsts);
  if (families.size === 0) return;
  const w = await withinBudget(limits, async (t, expired) => {
    // The mangle tables as nft lists them (iptables-nft's, where `nfqlb ruleset` writes): one
    // table read, not the whole rule set that iptables-save fetches.
    const mangle = await Promise.all(
      [...families].map((f) => tool(["nft", "list", "table", f === 4 ? "ip" : "ip6", "mangle"], t)),
    );
    const nft = mangle.map((m) => (m.ok ? m.text : "")).join("\n");
    const sets = { ip4: "", ip6: "", nft };
    if (unqueuedDstsWarning(flow, dsts, parseQueueRules(sets)) === undefined) return undefined;
    if (expired()) return undefined;
    const all = await readAllQueueRules(families, t);
    return all === undefined ? undefined : unqueuedDstsWarning(flow, dsts, parseQueueRules(all));
  });
  if (w !== undefined) io.err(logLine(LOG_WARNING, w) + "\n");
}
