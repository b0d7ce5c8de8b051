/**
 * The netfilter rules that send VIP traffic to nfqlb's queues, in the shape a
 * Kubernetes frontend uses (seed: Meridio's `nft list ruleset`): VIP
 * traffic to the queues in prerouting, locally generated ICMP to the VIPs too
 * (a local-output chain), and the VIPs exempted from connection tracking. In
 * the nft style the exemption runs before nf_defrag (priority -500, as the
 * frontend's `pre-defrag` chain), so their fragments are never reassembled;
 * iptables' raw table runs after nf_defrag, so there the exemption keeps VIP
 * traffic out of conntrack but reassembly is avoided only when no rule in the
 * namespace uses conntrack (`nfqlb doctor` checks). Two styles:
 * an nftables ruleset, and iptables/ip6tables commands in chains of their own
 * (for kernels without the nft `queue` expression), which can be added and
 * removed exactly. Pure: commands are returned as argument lists.
 *
 * @example
 * ```ts
 * import { iptablesCommands, nftRuleset } from "./ruleset.ts";
 * const r = { vips: ["10.0.0.1"], first: 0, last: 3 };
 * nftRuleset(r).includes("ip daddr @ipv4-vips counter queue to 0-3"); // true
 * iptablesCommands(r)[1]; // "iptables -t mangle -A nfqlb -d 10.0.0.1 -j NFQUEUE --queue-balance 0:3"
 * ```
 * @module
 */

/** What the rules are for. */
export interface RulesetOptions {
  /** VIPs or VIP prefixes (`10.0.0.1`, `1000::/64`). */
  readonly vips: readonly string[];
  /** Queues first..last (`--queue`). */
  readonly first: number;
  readonly last: number;
  /**
   * `lb/flowlb --fastpath` (docs/FASTPATH.md): the prerouting queue rules skip packets the
   * daemon's fast-path table has already marked (`-m mark --mark 0`, `meta mark 0`).
   */
  readonly fastpath?: boolean;
}

const isV6 = (vip: string) => vip.includes(":");

/** nfqlb's chains (table, chain, hook chain that jumps to it), in the order they are handled. */
export const IPTABLES_CHAINS: readonly (readonly [table: string, chain: string, hook: string])[] = [
  ["mangle", "nfqlb", "PREROUTING"],
  ["mangle", "nfqlb-local", "OUTPUT"],
  ["raw", "nfqlb-defrag", "PREROUTING"],
  ["raw", "nfqlb-defrag-local", "OUTPUT"],
];

/** The arguments of one VIP's rule in nfqlb's iptables `chain` (after `-A chain`). */
export function iptablesRule(
  chain: string,
  vip: string,
  r: Pick<RulesetOptions, "first" | "last" | "fastpath">,
): string {
  const q = r.first === r.last
    ? `-j NFQUEUE --queue-num ${r.first}`
    : `-j NFQUEUE --queue-balance ${r.first}:${r.last}`;
  switch (chain) {
    case "nfqlb":
      return `-d ${vip} ${r.fastpath ? "-m mark --mark 0 " : ""}${q}`;
    case "nfqlb-local":
      return `-p ${isV6(vip) ? "ipv6-icmp" : "icmp"} -d ${vip} ${q}`;
    default:
      return `-d ${vip} -j NOTRACK`;
  }
}

/** The iptables style as the commands an operator would type. */
export function iptablesCommands(r: RulesetOptions): string[] {
  const fams: [string, boolean][] = [["iptables", false], ["ip6tables", true]];
  return fams.filter(([, v6]) => r.vips.some((v) => isV6(v) === v6)).flatMap(([cmd, v6]) =>
    IPTABLES_CHAINS.flatMap(([table, chain, hook]) => [
      `${cmd} -t ${table} -N ${chain}`,
      ...r.vips.filter((v) => isV6(v) === v6).map((v) =>
        `${cmd} -t ${table} -A ${chain} ${iptablesRule(chain, v, r)}`
      ),
      `${cmd} -t ${table} -A ${hook} -j ${chain}`,
    ])
  );
}

/** The same rules as an nftables ruleset (`nft -f`), in the frontend's shape. */
export function nftRuleset(r: RulesetOptions): string {
  const v4 = r.vips.filter((v) => !isV6(v));
  const v6 = r.vips.filter(isV6);
  const queues = r.first === r.last ? `${r.first}` : `${r.first}-${r.last}`;
  const unmarked = r.fastpath ? "meta mark 0 " : "";
  const set = (name: string, type: string, el: readonly string[]) =>
    `\tset ${name} {\n\t\ttype ${type}\n\t\tflags interval\n` +
    (el.length === 0 ? "" : `\t\telements = { ${el.join(", ")} }\n`) + "\t}\n";
  const sets = set("ipv4-vips", "ipv4_addr", v4) + set("ipv6-vips", "ipv6_addr", v6);
  return `table inet nfqlb {\n${sets}` +
    "\tchain nfqlb {\n\t\ttype filter hook prerouting priority filter; policy accept;\n" +
    `\t\t${unmarked}ip daddr @ipv4-vips counter queue to ${queues}\n` +
    `\t\t${unmarked}ip6 daddr @ipv6-vips counter queue to ${queues}\n\t}\n` +
    "\tchain nfqlb-local {\n\t\ttype filter hook output priority filter; policy accept;\n" +
    `\t\tmeta l4proto icmp ip daddr @ipv4-vips counter queue to ${queues}\n` +
    `\t\tmeta l4proto ipv6-icmp ip6 daddr @ipv6-vips counter queue to ${queues}\n\t}\n` +
    // Before nf_defrag (priority -400): an untracked packet is not reassembled.
    "\tchain defrag {\n\t\ttype filter hook prerouting priority -500; policy accept;\n" +
    "\t\tip daddr @ipv4-vips notrack\n\t\tip6 daddr @ipv6-vips notrack\n\t}\n" +
    "\tchain defrag-local {\n\t\ttype filter hook output priority -500; policy accept;\n" +
    "\t\tip daddr @ipv4-vips notrack\n\t\tip6 daddr @ipv6-vips notrack\n\t}\n}\n";
}

/** Policy routing for the active fwmarks of a table: a rule and a table per fwmark. */
export function policyRouting(fwmarks: readonly number[]): string[] {
  return fwmarks.flatMap((m) => [
    `ip rule add fwmark ${m} table ${m}`,
    `ip route add default via <address of the target with fwmark ${m}> table ${m}`,
    `ip -6 rule add fwmark ${m} table ${m}`,
    `ip -6 route add default via <IPv6 address of that target> table ${m}`,
  ]);
}
