/**
 * The checks of `nfqlb doctor`: what silently breaks a stateless load
 * balancer in a network namespace (the seeds' "unwanted re-assembly" and
 * friends), each as a pure function of facts the command gathers (rule sets,
 * sysctl values, `/proc` and `ip` output). Each result says what was found
 * and, when it fails, what to do.
 *
 * @example
 * ```ts
 * import { checkConntrack } from "./checks.ts";
 * checkConntrack("-A FORWARD -m conntrack --ctstate INVALID -j DROP\n").ok; // false
 * checkConntrack("-A PREROUTING -j NOTRACK\n").ok; // true
 * ```
 * @module
 */
import {
  formatDst,
  type FwmarkRule,
  fwmarkRuleFor,
  parseDst,
  type QueueRule,
  queueRuleFor,
  queuesText,
  uncertainRuleFor,
} from "./rules.ts";
import { suggestedTable } from "./warnings.ts";

/**
 * How a check came out: `pass`, `fail` (exit status 1), or `skip`: it could not run (the
 * detail says why); a skip does not fail the exit status.
 */
export type CheckStatus = "pass" | "fail" | "skip";

/** One line of the doctor's report. */
export interface CheckResult {
  /** Short name, e.g. `conntrack`. */
  readonly check: string;
  readonly status: CheckStatus;
  /** Not a failure (`pass` or `skip`); kept for scripts that read `--json` before `status`. */
  readonly ok: boolean;
  /** What was found, or why the check could not run. */
  readonly detail: string;
  /** What to do (failures; skips: how to make the check run). */
  readonly fix?: string;
}

const pass = (check: string, detail: string): CheckResult => ({
  check,
  status: "pass",
  ok: true,
  detail,
});
/** A failed check: what was found and the fix. */
export const fail = (check: string, detail: string, fix: string): CheckResult => ({
  check,
  status: "fail",
  ok: false,
  detail,
  fix,
});
/** A check that could not run: `detail` says why, `fix` (if any) how to make it run. */
export const skip = (check: string, detail: string, fix?: string): CheckResult => ({
  check,
  status: "skip",
  ok: true,
  detail,
  ...(fix === undefined ? {} : { fix }),
});

/** Rule lines (iptables-save `-A …`, nft rule lines) that make the kernel track connections. */
const CONNTRACK_RULE =
  /(-m (conntrack|state)\b|--ctstate|-j (DNAT|SNAT|MASQUERADE|REDIRECT|CONNMARK)\b|\bct (state|status|mark)\b|\b(masquerade|dnat|snat)\b)/;

/**
 * Rules that use conntrack (or NAT) make the kernel reassemble fragments in
 * this namespace before the queue. `rules` is the iptables-save/ip6tables-save
 * output and the nft ruleset, undefined when no tool could list them: then the check is skipped
 * with `failures` (why each tool gave nothing) and, as the fix, what `root` (doctor runs as root)
 * and the failures point at.
 */
export function checkConntrack(
  rules: string | undefined,
  failures: readonly string[] = [],
  root = false,
): CheckResult {
  if (rules === undefined) {
    const missing = failures.length > 0 && failures.every((f) => / is not installed\b/.test(f));
    return skip(
      "conntrack",
      `the rule sets could not be read: ${failures.join("; ") || "no tool ran"}`,
      missing
        ? "install iptables (iptables-save) or nftables (nft)"
        : root
        ? "the tools' errors above say why (a kernel without nf_tables or ip_tables?)"
        : "run doctor as root or with CAP_NET_ADMIN",
    );
  }
  const hits = rules.split("\n").map((l) => l.trim()).filter((l) =>
    l !== "" && !l.startsWith("#") && !/notrack/i.test(l) && CONNTRACK_RULE.test(l)
  );
  if (hits.length === 0) {
    return pass("conntrack", "no rule in this namespace uses conntrack or NAT");
  }
  return fail(
    "conntrack",
    `${hits.length} rule(s) use conntrack or NAT, e.g. \`${
      hits[0]
    }\`: the kernel reassembles fragments before the queue`,
    "keep conntrack and NAT out of the LB's namespace, or exempt VIP traffic before nf_defrag " +
      "(nft `notrack` at priority -500, as `nfqlb ruleset --style=nft` writes; iptables' raw " +
      "table runs after defrag); README: Fragments",
  );
}

/**
 * The queues of a daemon's statistics object (`queues`, from its counters) that have no listener
 * in this network namespace (`bound`: the queues of `/proc/net/netfilter/nfnetlink_queue` here),
 * as text (`0:3`); when there are any, the object is evidently not of a daemon of this namespace
 * (another namespace's, or a stopped one's: `/dev/shm` is shared by the host's namespaces).
 * Undefined when every queue has a listener, the object names no queue (1.2.0's layout), or
 * `bound` is not known (the file could not be read). `doctor` and `stats` both judge with it.
 */
export function foreignQueues(
  queues: readonly number[],
  bound: ReadonlySet<number> | undefined,
): string | undefined {
  if (bound === undefined) return undefined;
  const missing = queues.filter((q) => !bound.has(q));
  return missing.length > 0 ? queuesText(missing) : undefined;
}

/**
 * The daemon's count of queued packets longer than `--mtu` (undefined: no `ftshm` found). `foreign`
 * set: the object is not of a daemon in this namespace (its queues, listed, have no listener
 * here), so its count says nothing about this namespace.
 */
export function checkReassembled(
  count: number | undefined,
  ftShm: string,
  foreign?: string,
): CheckResult {
  if (count === undefined) {
    return skip(
      "reassembled",
      `no statistics object ${ftShm}: no daemon has run with --ft_shm=${ftShm}`,
      "doctor --ft_shm=NAME with the --ft_shm of this namespace's daemon",
    );
  }
  if (foreign !== undefined) {
    return skip(
      "reassembled",
      `/dev/shm/${ftShm} belongs to a daemon of another network namespace (or a stopped one): ` +
        `its queue ${foreign} has no listener here (/dev/shm is shared by the host's namespaces)`,
      "doctor --ft_shm=NAME with the --ft_shm of this namespace's daemon",
    );
  }
  if (count === 0) return pass("reassembled", "the daemon has seen no reassembled packet");
  return fail(
    "reassembled",
    `the daemon saw ${count} packets longer than --mtu: something reassembles before the queue`,
    "look for conntrack rules (above), GRO/LRO (`ethtool -K DEV gro off lro off`), bridges",
  );
}

/** `bridge-nf-call-iptables`/`ip6tables` (undefined: br_netfilter not loaded). */
export function checkBridgeNetfilter(v4: string | undefined, v6: string | undefined): CheckResult {
  if (v4 === undefined && v6 === undefined) {
    return pass("bridge-netfilter", "br_netfilter is not loaded");
  }
  const on = [["iptables", v4], ["ip6tables", v6]].filter(([, v]) => v?.trim() === "1");
  if (on.length === 0) return pass("bridge-netfilter", "bridge-nf-call-* are off");
  return fail(
    "bridge-netfilter",
    `${on.map(([n]) => `net.bridge.bridge-nf-call-${n}`).join(" and ")} = 1: bridged packets ` +
      "go through netfilter and conntrack, which reassembles them",
    on.map(([n]) => `sysctl -w net.bridge.bridge-nf-call-${n}=0`).join("; "),
  );
}

/**
 * Strict reverse-path filtering (1) drops what an LB must pass: re-injected
 * fragments from the tun device, replies from the VIP on target links.
 * `values`: interface name (and `all`) → rp_filter. The effective value of an
 * interface is the larger of its own and `all`.
 */
export function checkRpFilter(values: ReadonlyMap<string, number>): CheckResult {
  const all = values.get("all") ?? 0;
  const strict = [...values].filter(([n, v]) =>
    n !== "all" && n !== "default" && n !== "lo" && Math.max(v, all) === 1
  ).map(([n]) => n);
  if (strict.length === 0) return pass("rp_filter", "no interface filters reverse paths strictly");
  return fail(
    "rp_filter",
    `strict rp_filter on ${
      strict.join(", ")
    }: packets from the tun device and asymmetric replies are dropped`,
    `sysctl -w net.ipv4.conf.all.rp_filter=2 and ${
      strict.map((n) => `net.ipv4.conf.${n}.rp_filter=2`).join(", ")
    } (loose), or 0`,
  );
}

/** `net.ipv4.fwmark_reflect` and `net.ipv6.fwmark_reflect`: needed so ICMP the LB sends is routed by mark. */
export function checkFwmarkReflect(v4: string | undefined, v6: string | undefined): CheckResult {
  const off = [["ipv4", v4], ["ipv6", v6]].filter(([, v]) => v !== undefined && v.trim() !== "1");
  if (off.length === 0) return pass("fwmark_reflect", "on for IPv4 and IPv6");
  return fail(
    "fwmark_reflect",
    `${off.map(([f]) => `net.${f}.fwmark_reflect`).join(" and ")} = 0: ICMP errors the LB ` +
      "sends (PMTU) ignore the fwmark",
    off.map(([f]) => `sysctl -w net.${f}.fwmark_reflect=1`).join("; "),
  );
}

/** The queues the daemon listens on, and where doctor found them (said in the report). */
export interface DaemonQueues {
  readonly queues: readonly number[];
  /** E.g. `--queue`, `the listeners of /proc/net/netfilter/nfnetlink_queue`. */
  readonly source: string;
}

/** The queue numbers of rules, each with the first rule that sends to it. */
function ruleQueues(rules: readonly QueueRule[]): Map<number, QueueRule> {
  const m = new Map<number, QueueRule>();
  for (const r of rules) {
    if (r.queuesUnknown) continue; // chosen at run time: no queue can be named
    for (let q = r.first; q <= r.last; q++) if (!m.has(q)) m.set(q, r);
  }
  return m;
}

const DEFAULTS_NOTE = "(`nfqlb ruleset` queues to 0:3 by default, lb and flowlb listen on 2)";

/**
 * Every queue of the daemon (`daemon`: undefined when none was given or found) and every queue
 * an NFQUEUE rule sends to has a listener in `/proc/net/netfilter/nfnetlink_queue` (`bound`).
 */
export function checkQueues(
  daemon: DaemonQueues | undefined,
  bound: ReadonlySet<number>,
  rules: readonly QueueRule[] = [],
): CheckResult {
  const byRule = ruleQueues(rules);
  const ruled = queuesText(byRule.keys());
  if (daemon === undefined) {
    return fail(
      "queues",
      "no queue has a listener in this namespace: no lb or flowlb runs here" +
        (byRule.size > 0
          ? `, yet NFQUEUE rules send to queue ${ruled} (e.g. \`${
            [...byRule.values()][0].text
          }\`): the kernel drops those packets`
          : ""),
      `start \`nfqlb lb\` or \`nfqlb flowlb\` in this namespace with --queue=${
        byRule.size > 0 && /^\d+(:\d+)?$/.test(ruled) ? ruled : "0:3 (as `nfqlb ruleset`)"
      }`,
    );
  }
  const own = queuesText(daemon.queues);
  const missing = daemon.queues.filter((q) => !bound.has(q));
  const unheard = [...byRule].filter(([q]) => !bound.has(q));
  if (missing.length === 0 && unheard.length === 0) {
    return pass(
      "queues",
      `queue ${own} (from ${daemon.source}): every queue has a listener` +
        (byRule.size > 0 ? `, and so has every queue the NFQUEUE rules send to (${ruled})` : ""),
    );
  }
  const problems: string[] = [];
  if (missing.length > 0) {
    problems.push(`no listener on queue ${missing.join(", ")} (from ${daemon.source})`);
  }
  if (unheard.length > 0) {
    problems.push(
      `NFQUEUE rules send to queue ${queuesText(unheard.map(([q]) => q))}, where no one ` +
        `listens (e.g. \`${unheard[0][1].text}\`)`,
    );
  }
  const fix = unheard.length > 0
    ? `make the daemon's --queue and the rules' queues agree ${DEFAULTS_NOTE}: start lb/flowlb ` +
      `with --queue=${ruled}, or \`nfqlb ruleset --vip=VIP,... --queue=${own} --apply --replace\`` +
      " (name every VIP: --replace removes the others)"
    : `start \`nfqlb lb\` or \`nfqlb flowlb\` with --queue=${own} in this namespace`;
  return fail(
    "queues",
    `${problems.join("; ")}: the kernel drops what is queued there (or accepts it unmarked ` +
      "with --queue-bypass)",
    fix,
  );
}

/**
 * The `--queue` of `nfqlb ruleset` for the daemon's queues (a single range); without a daemon
 * (or queues that are not one range) a placeholder to fill in, as the flow-set warning's.
 */
function queueOption(daemon: DaemonQueues | undefined): string {
  const t = daemon === undefined ? "" : queuesText(daemon.queues);
  return /^\d+(:\d+)?$/.test(t) ? ` --queue=${t}` : " --queue=<lb/flowlb's --queue>";
}

/**
 * Each of `dsts` is queued by an NFQUEUE rule to the daemon's queues: the names of the prefixes
 * no rule queues, of those queued elsewhere, and of those only a rule with unreadable
 * destinations (an ipset) may queue. With `unread` (a rule source could not be read) a prefix no
 * rule read queues is not known to be missing either.
 */
function unqueued(
  dsts: readonly string[],
  rules: readonly QueueRule[],
  daemon: DaemonQueues | undefined,
  unread: string | undefined,
): { missing: string[]; elsewhere: string[]; unknown: string[] } {
  const set = daemon === undefined ? undefined : new Set(daemon.queues);
  const missing: string[] = [];
  const elsewhere: string[] = [];
  const unknown: string[] = [];
  for (const text of dsts) {
    const d = parseDst(text);
    const name = d === undefined ? text : formatDst(d);
    if (d === undefined) missing.push(name);
    else if (queueRuleFor(d, rules) === undefined) {
      (uncertainRuleFor(d, rules) !== undefined || unread !== undefined ? unknown : missing)
        .push(name);
    } else if (set !== undefined && queueRuleFor(d, rules, set) === undefined) elsewhere.push(name);
  }
  return { missing, elsewhere, unknown };
}

/** Why the queueing of `unknown` prefixes cannot be told. */
function unknownText(unknown: readonly string[], unread: string | undefined): string {
  return `${unknown.join(", ")}: ` +
    (unread !== undefined
      ? `no rule read queues them, but not every rule set could be read (${unread})`
      : "only rules whose destinations doctor cannot read (an ipset, a concatenation) may queue them");
}

/**
 * Each VIP has a rule that sends it to NFQUEUE, to the daemon's queues when they are known
 * (`rules`: undefined when the rule sets could not be read). A VIP inside a queued prefix is
 * queued; a prefix only partly inside one is not.
 */
export function checkVipRules(
  vips: readonly string[],
  rules: readonly QueueRule[] | undefined,
  daemon?: DaemonQueues,
  unread?: string,
): CheckResult {
  if (rules === undefined) return skip("vip-rules", "the rule sets could not be read (conntrack)");
  const { missing, elsewhere, unknown } = unqueued(vips, rules, daemon, unread);
  if (missing.length === 0 && elsewhere.length === 0 && unknown.length > 0) {
    return skip("vip-rules", unknownText(unknown, unread));
  }
  if (missing.length === 0 && elsewhere.length === 0) {
    return pass(
      "vip-rules",
      `${vips.join(", ")}: sent to NFQUEUE` +
        (daemon === undefined ? "" : ` (queue ${queuesText(daemon.queues)})`),
    );
  }
  const problems: string[] = [];
  if (missing.length > 0) problems.push(`no NFQUEUE rule for ${missing.join(", ")}`);
  if (elsewhere.length > 0) {
    problems.push(
      `${elsewhere.join(", ")} queued to queues other than the daemon's ${
        queuesText(daemon!.queues)
      }`,
    );
  }
  return fail(
    "vip-rules",
    `${problems.join("; ")}: that traffic is not load balanced`,
    missing.length > 0
      ? `nfqlb ruleset --vip=${missing.join(",")}${queueOption(daemon)} --apply`
      : `start lb/flowlb on the rules' queues, or \`nfqlb ruleset --vip=VIP,...${
        queueOption(daemon)
      } --apply --replace\` (name every VIP: --replace removes the others) ${DEFAULTS_NOTE}`,
  );
}

/** A flow as `flow-list` gives it: its name and destination prefixes (none: every destination). */
export interface FlowDsts {
  readonly name: string;
  readonly dsts: readonly string[];
  /** Its target table (`user_ref`), when it has one. */
  readonly target?: string;
}

/**
 * Every destination of every flow of the running flowlb is sent to the daemon's queues by an
 * NFQUEUE rule: a flow whose dsts no rule queues never sees a packet. `flows` is either the
 * flows or why they could not be listed; `rules` is undefined when the rule sets could not be
 * read.
 */
export function checkFlowRules(
  flows: readonly FlowDsts[] | string,
  rules: readonly QueueRule[] | undefined,
  daemon?: DaemonQueues,
  unread?: string,
): CheckResult {
  if (typeof flows === "string") return skip("flow-rules", flows);
  if (rules === undefined) return skip("flow-rules", "the rule sets could not be read (conntrack)");
  if (flows.length === 0) return pass("flow-rules", "the flowlb has no flow");
  const bad: string[] = [];
  const missingAll = new Set<string>();
  let elsewhereAny = false;
  const unknownAll: string[] = [];
  const any = flows.filter((f) => f.dsts.length === 0).map((f) => f.name);
  for (const f of flows) {
    const { missing, elsewhere, unknown } = unqueued(f.dsts, rules, daemon, unread);
    if (unknown.length > 0) unknownAll.push(...unknown.map((u) => `flow ${f.name} ${u}`));
    if (missing.length > 0) bad.push(`flow ${f.name}: no NFQUEUE rule for ${missing.join(", ")}`);
    if (elsewhere.length > 0) {
      bad.push(`flow ${f.name}: ${elsewhere.join(", ")} queued to queues other than the daemon's`);
      elsewhereAny = true;
    }
    for (const d of missing) missingAll.add(d);
  }
  const anyNote = any.length > 0 ? ` (${any.join(", ")} match every destination: not checked)` : "";
  if (bad.length === 0 && unknownAll.length > 0) {
    return skip("flow-rules", unknownText(unknownAll, unread) + anyNote);
  }
  if (bad.length === 0) {
    return pass("flow-rules", `the dsts of ${flows.length} flow(s) are queued${anyNote}`);
  }
  const fixes: string[] = [];
  if (missingAll.size > 0) {
    fixes.push(`nfqlb ruleset --vip=${[...missingAll].join(",")}${queueOption(daemon)} --apply`);
  }
  if (elsewhereAny) {
    fixes.push(
      `queue them to the daemon's queues ${queuesText(daemon!.queues)} ${DEFAULTS_NOTE}: ` +
        "`nfqlb ruleset --vip=VIP,... --queue=... --apply --replace` (name every VIP)",
    );
  }
  return fail(
    "flow-rules",
    `${bad.join("; ")}: those packets never reach the flowlb${anyNote}`,
    fixes.join("; "),
  );
}

/** The `--tun` device: `flags` is the content of /sys/class/net/NAME/flags (undefined: no device). */
export function checkTun(name: string, flags: string | undefined): CheckResult {
  if (flags === undefined) {
    return fail(
      "tun",
      `no device ${name} in this namespace`,
      `ip tuntap add ${name} mode tun && ip link set ${name} up`,
    );
  }
  if ((parseInt(flags.trim(), 16) & 1) === 0) {
    return fail("tun", `${name} is down`, `ip link set ${name} up`);
  }
  return pass("tun", `${name} exists and is up`);
}

/**
 * Each active fwmark of the table has an `ip rule fwmark` whose routing table has a route, in
 * each family of `families` (those of the VIPs and flows' dsts; empty: not known, one family
 * with a rule and a route will do). `rules` holds each family's fwmark rules (undefined: `ip`
 * could not tell); `routes(family, table)` says whether the table has a route.
 */
export function checkFwmarkRoutes(
  table: string,
  fwmarks: readonly number[],
  families: readonly (4 | 6)[],
  rules: ReadonlyMap<4 | 6, readonly FwmarkRule[] | undefined>,
  routes: (family: 4 | 6, table: string) => boolean,
): CheckResult {
  if (fwmarks.length === 0) {
    return fail(
      "fwmark-routes",
      `${table}: no active target: packets load balanced with it are dropped (/healthz answers 503)`,
      `nfqlb activate --shm=${table} FWMARK...`,
    );
  }
  const asked: (4 | 6)[] = families.length > 0 ? [...families] : [4, 6];
  const known = asked.filter((f) => rules.get(f) !== undefined);
  if (known.length === 0) return skip("fwmark-routes", "`ip rule` could not be run");
  const ip = (f: 4 | 6) => (f === 4 ? "ip" : "ip -6");
  const problems: string[] = [];
  const fixes: string[] = [];
  for (const fw of fwmarks) {
    const found = known.map((f) => {
      const r = fwmarkRuleFor(fw, rules.get(f)!);
      const routed = r !== undefined && routes(f, r.table);
      return { f, r, routed };
    });
    const broken = families.length > 0
      ? found.filter((x) => !x.routed)
      : found.some((x) => x.routed)
      ? []
      : found;
    for (const { f, r } of broken) {
      if (r === undefined) {
        const { table: t, note } = suggestedTable(fw);
        problems.push(`fwmark ${fw}: no ${ip(f)} rule`);
        fixes.push(`${ip(f)} rule add fwmark ${fw} table ${t}${note}`);
        fixes.push(`${ip(f)} route add default via TARGET table ${t}`);
      } else {
        problems.push(`fwmark ${fw}: ${ip(f)} routing table ${r.table} is empty`);
        fixes.push(`${ip(f)} route add default via TARGET table ${r.table}`);
      }
    }
  }
  const which = families.length > 0
    ? `IPv${families.join(" and IPv")}`
    : "one family (the VIPs' families are not known: --vip names them)";
  if (problems.length === 0) {
    return pass("fwmark-routes", `${table}: every active fwmark has a rule and a route (${which})`);
  }
  return fail(
    "fwmark-routes",
    `${table}: ${problems.join("; ")}: such packets are routed as if unmarked`,
    fixes.join("; ") + " (TARGET: the target's address of that family)",
  );
}

/** Free space in /dev/shm (KiB); tables must fit, and a full /dev/shm fails `init`. */
export function checkShmSpace(availableKiB: number | undefined, neededKiB = 1024): CheckResult {
  if (availableKiB === undefined) return skip("dev-shm", "free space unknown (df failed)");
  if (availableKiB >= neededKiB) return pass("dev-shm", `${availableKiB} KiB free in /dev/shm`);
  return fail(
    "dev-shm",
    `only ${availableKiB} KiB free in /dev/shm: new tables cannot be created`,
    "give the container a larger /dev/shm (e.g. `--shm-size`, a sizeLimit on the emptyDir)",
  );
}

/**
 * GRO/LRO on the interfaces (`features`: interface → `ethtool -k` output; undefined: ethtool is not
 * installed): the NIC or the stack merges fragments and segments into one large packet before the
 * queue.
 */
export function checkOffloads(features: ReadonlyMap<string, string> | undefined): CheckResult {
  if (features === undefined) {
    return skip("offloads", "ethtool is not installed: GRO/LRO not checked", "install ethtool");
  }
  const on: string[] = [];
  for (const [dev, text] of features) {
    for (const f of ["generic-receive-offload", "large-receive-offload", "rx-gro-hw"]) {
      if (new RegExp(`^${f}: on`, "m").test(text)) on.push(`${dev} ${f}`);
    }
  }
  if (on.length === 0) return pass("offloads", "no receive offload (GRO/LRO) on any interface");
  return fail(
    "offloads",
    `receive offload on: ${on.join(", ")}: packets reach the queue merged`,
    [...new Set(on.map((x) => x.split(" ")[0]))].map((d) => `ethtool -K ${d} gro off lro off`)
      .join("; "),
  );
}

/**
 * The report as text: one `PASS`/`FAIL`/`SKIP` line per check, the fix indented under a failure
 * (and under a skip that says how to make the check run).
 */
export function formatReport(results: readonly CheckResult[]): string {
  return results.map((r) =>
    `${r.status.toUpperCase()} ${r.check}: ${r.detail}\n${
      r.status !== "pass" && r.fix !== undefined ? `     fix: ${r.fix}\n` : ""
    }`
  ).join("");
}
