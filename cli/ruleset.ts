/**
 * `nfqlb ruleset`: the netfilter rules that send VIP traffic to the queues
 * (`lib/ruleset/ruleset.ts`), printed, applied (`--apply`, idempotent) or
 * removed (`--delete`, exactly what `--apply` added), in nftables or iptables
 * style; with `--tshm`, also the policy-routing commands for the table's
 * active fwmarks.
 * @module
 */
import { parseQueueRange } from "../daemon/options.ts";
import { activeFwmarks } from "../daemon/open_table.ts";
import { parseIPv4, parseIPv6 } from "../lib/ccompat/inet.ts";
import {
  iptablesChains,
  iptablesCommands,
  nftRuleset,
  policyRouting,
  type RulesetOptions,
} from "../lib/ruleset/ruleset.ts";
import { type Command, die } from "./command.ts";

/** Exit status of `argv` (iptables waits for the xtables lock: `-w`), its stderr. */
async function status(argv: string[]): Promise<{ code: number; stderr: string }> {
  const [cmd, ...rest] = argv;
  const args = cmd.endsWith("tables") ? ["-w", ...rest] : rest;
  let r;
  try {
    r = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) die(`ruleset: ${cmd} is not installed`);
    throw e;
  }
  return { code: r.code, stderr: new TextDecoder().decode(r.stderr).trim() };
}

/** Whether a check (`-C`, `-nL`) finds the rule or chain: exit 0 yes, 1 no, anything else fails. */
async function exists(argv: string[]): Promise<boolean> {
  const r = await status(argv);
  if (r.code === 0) return true;
  if (r.code === 1) return false;
  die(`ruleset: \`${argv.join(" ")}\` failed (exit ${r.code}): ${r.stderr}`);
}

/** Run `argv`; a failure ends the command, saying that the rules may be half in place. */
async function must(argv: string[]): Promise<void> {
  const r = await status(argv);
  if (r.code !== 0) {
    die(
      `ruleset: \`${argv.join(" ")}\` failed: ${r.stderr}; the rules may be partly in place: ` +
        "run `nfqlb ruleset --delete` with the same --vip to remove them",
    );
  }
}

/** Feed `text` to `nft -f -` as one transaction. */
async function nft(text: string): Promise<void> {
  let child;
  try {
    child = new Deno.Command("nft", { args: ["-f", "-"], stdin: "piped", stderr: "piped" }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) die("ruleset: nft is not installed");
    throw e;
  }
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(text));
  await w.close();
  const res = await child.output();
  if (!res.success) {
    die(`ruleset: nft -f failed (nothing changed): ${new TextDecoder().decode(res.stderr).trim()}`);
  }
}

/** A VIP or VIP prefix: an address, optionally `/len`. */
function validVip(v: string): boolean {
  const [addr, len, more] = v.split("/");
  if (more !== undefined) return false;
  const v6 = addr.includes(":");
  if ((v6 ? parseIPv6(addr) : parseIPv4(addr)) === undefined) return false;
  return len === undefined || (/^\d+$/.test(len) && Number(len) <= (v6 ? 128 : 32));
}

export const rulesetCommand: Command = {
  name: "ruleset",
  help: "ruleset --vip=VIP[,VIP...] [--queue=N|first:last] [--style=iptables|nft] [--fastpath]\n" +
    "        [--apply|--delete]\n" +
    "  [--tshm=NAME]\n" +
    "  Print (or apply, or remove) the rules that send the VIPs' traffic to the queues:\n" +
    "  prerouting to NFQUEUE, locally generated ICMP to the VIPs too, and the VIPs exempted\n" +
    "  from conntrack (notrack). --apply is idempotent; --delete removes exactly what it added.",
  options: [
    { name: "vip", desc: "VIPs (or prefixes), comma-separated", required: true },
    { name: "queue", desc: "NFQUEUE number N or range first:last (default 0:3)" },
    { name: "style", desc: "iptables (default; this kernel has no nft queue) or nft" },
    { name: "tun", desc: "tun device of lb/flowlb --tun (its rp_filter must not be strict)" },
    { name: "tshm", desc: "Also print the policy routing for this table's active fwmarks" },
    {
      name: "fastpath",
      desc: "For lb/flowlb --fastpath: queue only packets not yet marked",
      flag: true,
    },
    { name: "apply", desc: "Apply the rules in this network namespace", flag: true },
    { name: "delete", desc: "Remove the rules --apply added", flag: true },
  ],
  async run(inv) {
    const o = inv.opts;
    const vips = (o.get("vip") ?? "").split(",").filter((v) => v !== "");
    const bad = vips.find((v) => !validVip(v));
    if (vips.length === 0 || bad !== undefined) die(`ruleset: invalid --vip [${bad ?? ""}]`);
    const queueText = o.get("queue") ?? "0:3";
    const q = parseQueueRange(queueText);
    if (q === undefined) die(`queue invalid [${queueText}]`);
    const style = o.get("style") ?? "iptables";
    if (style !== "iptables" && style !== "nft") die(`ruleset: invalid --style [${style}]`);
    if (o.has("apply") && o.has("delete")) die("ruleset: --apply and --delete exclude each other");
    const r: RulesetOptions = { vips, first: q[0], last: q[1], fastpath: o.has("fastpath") };
    const tun = o.get("tun");

    if (o.has("apply") || o.has("delete")) {
      if (style === "nft") {
        // One transaction: the table is replaced (or removed) atomically, and it is no error
        // when it did not exist ("table … {}" creates it first).
        await nft(
          "table inet nfqlb {}\ndelete table inet nfqlb\n" + (o.has("apply") ? nftRuleset(r) : ""),
        );
        return 0;
      }
      // Both families, always: a family without VIPs now loses the chains an earlier --apply made.
      const mine = new Map(iptablesChains(r).map((c) => [`${c.cmd} ${c.table} ${c.chain}`, c]));
      const all = iptablesChains({ ...r, vips: ["0.0.0.0/32", "::/128"] });
      for (const c of all) {
        const t = [c.cmd, "-t", c.table];
        const own = o.has("apply") ? mine.get(`${c.cmd} ${c.table} ${c.chain}`) : undefined;
        // A jump to a chain that does not exist cannot be there (and `-C` would fail with 2).
        const chainThere = await exists([...t, "-nL", c.chain]);
        if (own === undefined) {
          if (!chainThere) continue;
          while (await exists([...t, "-C", c.hook, "-j", c.chain])) {
            await must([...t, "-D", c.hook, "-j", c.chain]);
          }
          await must([...t, "-F", c.chain]);
          await must([...t, "-X", c.chain]);
          continue;
        }
        // --apply: the chain with exactly these rules, and one jump to it.
        await must([...t, chainThere ? "-F" : "-N", c.chain]);
        for (const rule of own.rules) await must([...t, "-A", c.chain, ...rule]);
        if (!(await exists([...t, "-C", c.hook, "-j", c.chain]))) {
          await must([...t, "-A", c.hook, "-j", c.chain]);
        }
      }
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
