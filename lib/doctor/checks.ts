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

/** One line of the doctor's report. */
export interface CheckResult {
  /** Short name, e.g. `conntrack`. */
  readonly check: string;
  readonly ok: boolean;
  /** What was found. */
  readonly detail: string;
  /** What to do (failures only). */
  readonly fix?: string;
}

const pass = (check: string, detail: string): CheckResult => ({ check, ok: true, detail });
const fail = (check: string, detail: string, fix: string): CheckResult => ({
  check,
  ok: false,
  detail,
  fix,
});

/** Rule lines (iptables-save `-A …`, nft rule lines) that make the kernel track connections. */
const CONNTRACK_RULE =
  /(-m (conntrack|state)\b|--ctstate|-j (DNAT|SNAT|MASQUERADE|REDIRECT|CONNMARK)\b|\bct (state|status|mark)\b|\b(masquerade|dnat|snat)\b)/;

/**
 * Rules that use conntrack (or NAT) make the kernel reassemble fragments in
 * this namespace before the queue. `rules` is the iptables-save/ip6tables-save
 * output and the nft ruleset.
 */
export function checkConntrack(rules: string | undefined): CheckResult {
  if (rules === undefined) {
    return fail(
      "conntrack",
      "the rule sets could not be read (iptables-save and nft both failed)",
      "run doctor as root or with CAP_NET_ADMIN, with iptables or nftables installed",
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

/** The daemon's count of queued packets longer than `--mtu` (undefined: no `ftshm` found). */
export function checkReassembled(count: number | undefined, ftShm: string): CheckResult {
  if (count === undefined) return pass("reassembled", `no statistics object ${ftShm} (no daemon?)`);
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

/** Every queue of `first..last` has a listener in `/proc/net/netfilter/nfnetlink_queue`. */
export function checkQueues(
  first: number,
  last: number,
  bound: ReadonlySet<number>,
): CheckResult {
  const missing: number[] = [];
  for (let q = first; q <= last; q++) if (!bound.has(q)) missing.push(q);
  const range = first === last ? `${first}` : `${first}:${last}`;
  if (missing.length === 0) return pass("queues", `queue ${range}: every queue has a listener`);
  return fail(
    "queues",
    `no listener on queue ${
      missing.join(", ")
    }: the kernel drops what is queued there (or accepts it unmarked with fail-open)`,
    `start \`nfqlb lb\` or \`nfqlb flowlb\` with --queue=${range} in this namespace`,
  );
}

/**
 * Each VIP has a rule that sends it to NFQUEUE (iptables `-d VIP … -j NFQUEUE`, nft `… VIP …
 * queue`, or a queue rule on a set listing it). A VIP inside a queued prefix is not recognised.
 */
export function checkVipRules(vips: readonly string[], rules: string): CheckResult {
  const lines = rules.split("\n");
  const queueing = (l: string) => /NFQUEUE|\bqueue\b/.test(l);
  // The address as a whole token: not 10.0.0.1 inside 110.0.0.1 or 10.0.0.10.
  const token = (bare: string) =>
    new RegExp(`(^|[\\s,{=])${bare.replace(/[.]/g, "\\.")}(/\\d+)?([\\s,}]|$)`);
  const queued = (vip: string) => {
    const t = token(vip.replace(/\/\d+$/, ""));
    // A rule naming the VIP, or a queue rule on a set whose elements hold it.
    return lines.some((l) => queueing(l) && t.test(l)) ||
      (lines.some((l) => queueing(l) && /@[\w-]+/.test(l)) &&
        lines.some((l) => /elements = /.test(l) && t.test(l)));
  };
  const missing = vips.filter((v) => !queued(v));
  if (missing.length === 0) return pass("vip-rules", `${vips.join(", ")}: sent to NFQUEUE`);
  return fail(
    "vip-rules",
    `no NFQUEUE rule for ${missing.join(", ")}: that traffic is routed without load balancing`,
    "`nfqlb ruleset`-style rule, e.g. `iptables -t mangle -A PREROUTING -d VIP -j NFQUEUE --queue-balance 0:3`",
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
 * Each active fwmark of the table has an `ip rule fwmark` (in `rules`, the
 * output of `ip rule` and `ip -6 rule`) and its routing table has a route
 * (`routes`: fwmark → whether `ip route show table <t>` printed anything).
 */
export function checkFwmarkRoutes(
  table: string,
  fwmarks: readonly number[],
  rules: string,
  routes: (table: string) => boolean,
): CheckResult {
  const problems: string[] = [];
  for (const fw of fwmarks) {
    const re = new RegExp(
      `fwmark (0x0*${fw.toString(16)}|${fw})(/0x[0-9a-f]+)? lookup (\\S+)`,
      "i",
    );
    const m = re.exec(rules);
    if (m === null) problems.push(`fwmark ${fw}: no ip rule`);
    else if (!routes(m[3])) problems.push(`fwmark ${fw}: routing table ${m[3]} is empty`);
  }
  if (fwmarks.length === 0) return pass("fwmark-routes", `${table}: no active target`);
  if (problems.length === 0) {
    return pass("fwmark-routes", `${table}: every active fwmark has a rule and a route`);
  }
  return fail(
    "fwmark-routes",
    `${table}: ${problems.join("; ")}: such packets are routed as if unmarked`,
    "for each fwmark M: `ip rule add fwmark M table M; ip route add default via TARGET table M` (and -6)",
  );
}

/** Free space in /dev/shm (KiB); tables must fit, and a full /dev/shm fails `init`. */
export function checkShmSpace(availableKiB: number | undefined, neededKiB = 1024): CheckResult {
  if (availableKiB === undefined) return pass("dev-shm", "free space unknown (df failed)");
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
  if (features === undefined) return pass("offloads", "ethtool not installed: GRO/LRO not checked");
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

/** The report as text: one `PASS`/`FAIL` line per check, the fix indented under a failure. */
export function formatReport(results: readonly CheckResult[]): string {
  return results.map((r) =>
    `${r.ok ? "PASS" : "FAIL"} ${r.check}: ${r.detail}\n${r.ok ? "" : `     fix: ${r.fix}\n`}`
  ).join("");
}
