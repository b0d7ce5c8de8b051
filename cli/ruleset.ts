/**
 * `nfqlb ruleset`: the netfilter rules that send VIP traffic to the queues
 * (`lib/ruleset/ruleset.ts`), printed, applied (`--apply`: the VIPs that are
 * missing added, the others kept) or removed (`--delete`: the VIPs given), in
 * nftables or iptables style, with a line per VIP on stdout; with `--tshm`, also
 * the policy-routing commands for the table's active fwmarks. The plan is
 * `lib/ruleset/plan.ts`'s; this module reads the rules in place and runs it.
 * @module
 */
import { queueInvalid } from "../lib/hints/accepted.ts";
import { parseQueueRange } from "../daemon/options.ts";
import { activeFwmarks } from "../daemon/open_table.ts";
import {
  IPTABLES_TABLES,
  type IptablesCmd,
  type IptablesState,
  type IptablesStep,
  type NftState,
  NO_NFT_TABLE,
  parseIptablesSave,
  parseNftState,
  planIptables,
  planNft,
  type Request,
  restoreInput,
  type SavedTable,
} from "../lib/ruleset/plan.ts";
import {
  iptablesCommands,
  nftRuleset,
  policyRouting,
  type RulesetOptions,
} from "../lib/ruleset/ruleset.ts";
import { parseVip, type Vip, vipsOverlap } from "../lib/ruleset/vip.ts";
import { explainNftError } from "../lib/ruleset/nft_errors.ts";
import { type Command, die } from "./command.ts";
import { RULESET_SPEC } from "./specs.ts";
import type { CommandResult } from "./exec.ts";
import { runTool, stoppedWhy, type ToolLimits } from "./tools.ts";

/**
 * How long `ruleset` lets one tool run (ms): `iptables-restore -w` waits for the xtables lock,
 * which another program may hold for a while.
 */
export const RULESET_TIMEOUT_MS = 30_000;

/** What `ruleset --apply/--delete` runs its tools with (tests give a directory and a timeout). */
export interface RulesetDeps {
  readonly tools: ToolLimits;
}

/** Seconds of a timeout as the messages say it (`30 s`, `0.2 s`). */
const seconds = (ms: number | undefined) => `${(ms ?? 0) / 1000} s`;

/**
 * The output of `argv` (its exit status, stdout, trimmed stderr), with `stdin` fed to it, bounded
 * by `tools`; a tool missing or stopped at its timeout ends the command (`changed`: what that
 * means for the rules).
 */
async function output(
  argv: readonly string[],
  tools: ToolLimits,
  changed: string,
  stdin?: string,
): Promise<CommandResult> {
  const r = await runTool(argv, tools, stdin);
  if (r.stopped === "missing") die(`ruleset: ${stoppedWhy(argv, r.stopped, tools)}`);
  if (r.stopped !== undefined) die(`ruleset: ${stoppedText(argv, r.stopped, tools)}: ${changed}`);
  return { ...r, stderr: r.stderr.trim() };
}

/** Why a run was stopped, the timeout said in seconds and the process killed. */
function stoppedText(argv: readonly string[], stopped: string, tools: ToolLimits): string {
  return stopped === "timeout"
    ? `\`${argv.join(" ")}\` did not finish in ${seconds(tools.timeoutMs)} (killed)`
    : stoppedWhy(argv, stopped as "aborted", tools);
}

const UNCHANGED = "nothing changed";

/** nfqlb's iptables tables of both families as they are (`iptables-save -t TABLE`). */
async function readIptables(tools: ToolLimits): Promise<IptablesState> {
  const state = new Map<string, SavedTable>();
  for (const cmd of ["iptables", "ip6tables"]) {
    for (const table of IPTABLES_TABLES) {
      const r = await output([`${cmd}-save`, "-t", table], tools, UNCHANGED);
      if (r.code !== 0) die(`ruleset: \`${cmd}-save -t ${table}\` failed: ${r.stderr}`);
      state.set(`${cmd} ${table}`, parseIptablesSave(r.stdout));
    }
  }
  return state;
}

/** The nft style's table as it is (`nft -j list table inet nfqlb`). */
async function readNft(tools: ToolLimits): Promise<NftState> {
  const r = await output(["nft", "-j", "list", "table", "inet", "nfqlb"], tools, UNCHANGED);
  if (r.code !== 0) {
    if (/No such file or directory/.test(r.stderr)) return NO_NFT_TABLE;
    die(`ruleset: \`nft -j list table inet nfqlb\` failed: ${r.stderr}`);
  }
  try {
    return parseNftState(r.stdout);
  } catch (e) {
    die(`ruleset: cannot read nft's listing of table inet nfqlb: ${(e as Error).message}`);
  }
}

/** Run one `iptables-restore --noflush` transaction; its error text, or undefined when it worked. */
export type Restore = (cmd: IptablesCmd, input: string) => Promise<string | undefined>;

/**
 * `iptables-restore --noflush -w` bounded by `tools`: a run stopped at the timeout is a failed
 * transaction (killed while it waited, for the xtables lock most likely), undone like any other.
 */
export function restoreWith(tools: ToolLimits): Restore {
  return async (cmd, input) => {
    const argv = [`${cmd}-restore`, "--noflush", "-w"];
    const r = await runTool(argv, tools, input);
    if (r.stopped === "missing") return stoppedWhy(argv, r.stopped, tools);
    if (r.stopped === "timeout") {
      return `${stoppedText(argv, r.stopped, tools)} (waiting for the xtables lock, most likely)`;
    }
    if (r.stopped !== undefined) return stoppedText(argv, r.stopped, tools);
    return r.code === 0 ? undefined : r.stderr.trim() || `exit status ${r.code}`;
  };
}

/**
 * Run the steps in order, each one transaction; when one fails, undo the ones before it (last
 * first) and end the command saying so, or, if an undo fails too, which steps are still in place.
 */
export async function runIptablesSteps(
  steps: readonly IptablesStep[],
  restore: Restore = restoreWith({ timeoutMs: RULESET_TIMEOUT_MS }),
): Promise<void> {
  const name = (s: IptablesStep) => `${s.cmd}-restore (table ${s.table})`;
  for (let i = 0; i < steps.length; i++) {
    const err = await restore(steps[i].cmd, restoreInput(steps[i].table, steps[i].ops));
    if (err === undefined) continue;
    const failed = `ruleset: ${name(steps[i])} failed: ${err}`;
    for (let j = i - 1; j >= 0; j--) {
      const undoErr = await restore(steps[j].cmd, restoreInput(steps[j].table, steps[j].undo));
      if (undoErr !== undefined) {
        die(
          `${failed}\nruleset: undoing the earlier changes failed too (${
            name(steps[j])
          }: ${undoErr});` +
            ` the changes to ${steps.slice(0, j + 1).map(name).join(", ")} are in place:` +
            " run the same command again to complete them, or --delete to remove them",
        );
      }
    }
    const undone = i > 0 ? " (the earlier changes were undone)" : "";
    if (/\(killed\)/.test(err)) {
      // Killed: it may have committed before it was (the kernel applies a table's batch at once).
      die(
        `${failed}\nruleset: ${name(steps[i])} may have been applied before it was killed${
          undone === "" ? "" : `; the earlier steps were undone`
        }: check with ${steps[i].cmd}-save -t ${
          steps[i].table
        }; the same command again completes ` +
          "or keeps what is there",
      );
    }
    die(`${failed}\nruleset: nothing changed${undone}`);
  }
}

/** Run the nft style's script (one transaction). */
async function runNft(script: string, tools: ToolLimits): Promise<void> {
  const r = await output(
    ["nft", "-f", "-"],
    tools,
    "nft -f is one transaction, and it may have been applied before nft was killed: check with " +
      "nft list table inet nfqlb; the same command again completes or keeps what is there",
    script,
  );
  if (r.code !== 0) die(`ruleset: nft -f failed (nothing changed): ${explainNftError(r.stderr)}`);
}

/** End the command when the plan is refused: nothing was changed. */
function refuse(refusals: readonly string[]): void {
  if (refusals.length > 0) {
    die(`ruleset: refused, nothing changed:\n${refusals.map((l) => `  ${l}`).join("\n")}`);
  }
}

/** The VIPs of `--vip`: canonical, without duplicates, none overlapping another. */
function parseVips(text: string): Vip[] {
  const out: Vip[] = [];
  for (const t of text.split(",").filter((v) => v !== "")) {
    const v = parseVip(t);
    if (typeof v === "string") die(`ruleset: invalid --vip [${t}]: ${v}`);
    if (out.some((o) => o.text === v.text)) continue;
    const other = out.find((o) => vipsOverlap(o, v));
    if (other !== undefined) die(`ruleset: invalid --vip: ${t} overlaps ${other.text}`);
    out.push(v);
  }
  if (out.length === 0) die(`ruleset: invalid --vip [${text}]`);
  return out;
}

/** `nfqlb ruleset`, its tools found and bounded as `deps` says (tests shrink the timeout). */
export function makeRulesetCommand(
  deps: RulesetDeps = { tools: { timeoutMs: RULESET_TIMEOUT_MS } },
): Command {
  return {
    ...RULESET_SPEC,
    async run(inv) {
      const o = inv.opts;
      const vips = parseVips(o.get("vip") ?? "");
      const queueText = o.get("queue") ?? "0:3";
      const q = parseQueueRange(queueText);
      if (q === undefined) die(queueInvalid(queueText));
      const style = o.get("style") ?? "iptables";
      if (style !== "iptables" && style !== "nft") die(`ruleset: invalid --style [${style}]`);
      if (o.has("apply") && o.has("delete")) {
        die("ruleset: --apply and --delete exclude each other");
      }
      if (o.has("replace") && !o.has("apply")) die("ruleset: --replace goes with --apply");
      const r: RulesetOptions = {
        vips: vips.map((v) => v.text),
        first: q[0],
        last: q[1],
        fastpath: o.has("fastpath"),
      };
      const tun = o.get("tun");

      if (o.has("apply") || o.has("delete")) {
        // --tshm and --tun only print advice: with --apply/--delete it would be dropped unsaid.
        const printOnly = ["tshm", "tun"].filter((n) => o.has(n));
        if (printOnly.length > 0) {
          die(
            `ruleset: --${printOnly.join(" and --")} only print${
              printOnly.length === 1 ? "s" : ""
            }` +
              " (policy routing, rp_filter advice), nothing of it is applied: run without" +
              " --apply/--delete to see it",
          );
        }
        const req: Request = {
          vips,
          spec: { first: q[0], last: q[1], fastpath: o.has("fastpath") },
          mode: o.has("apply") ? "apply" : "delete",
          replace: o.has("replace"),
        };
        let lines: readonly string[];
        if (style === "nft") {
          const plan = planNft(await readNft(deps.tools), req);
          refuse(plan.refusals);
          for (const step of plan.steps) await runNft(step, deps.tools);
          lines = plan.lines;
        } else {
          const plan = planIptables(await readIptables(deps.tools), req);
          refuse(plan.refusals);
          await runIptablesSteps(plan.steps, restoreWith(deps.tools));
          lines = plan.lines;
        }
        inv.io.out(lines.map((l) => l + "\n").join(""));
        return 0;
      }

      let text = style === "nft" ? nftRuleset(r) : iptablesCommands(r).join("\n") + "\n";
      if (tun !== undefined) {
        text += `# re-injected fragments come from ${tun}: the VIP rules above queue them too;\n` +
          `# reverse-path filtering must let them in:\nsysctl -w net.ipv4.conf.${tun}.rp_filter=2\n`;
      }
      const tshm = o.get("tshm");
      if (tshm !== undefined) {
        let marks: number[] = [];
        try {
          marks = activeFwmarks(tshm);
        } catch (e) {
          die(`ruleset: --tshm=${tshm}: ${e instanceof Error ? e.message : e}`);
        }
        text += `# policy routing for the active fwmarks of ${tshm}:\n${
          policyRouting(marks).join("\n")
        }\n`;
      }
      inv.io.out(text);
      return 0;
    },
  };
}

/** `nfqlb ruleset`. */
export const rulesetCommand: Command = makeRulesetCommand();
