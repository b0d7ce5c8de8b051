/**
 * The doctor's checks (lib/doctor/checks.ts) over literal inputs in the forms the tools print
 * them (iptables-save, nft list ruleset, /proc, ip rule): each passes and fails where it should,
 * and a failure carries a fix.
 */
import assert from "node:assert/strict";
import {
  checkBridgeNetfilter,
  checkConntrack,
  checkFlowRules,
  checkFwmarkReflect,
  checkFwmarkRoutes,
  checkOffloads,
  checkQueues,
  checkReassembled,
  checkRpFilter,
  checkShmSpace,
  checkTun,
  checkVipRules,
  type DaemonQueues,
  foreignQueues,
  formatReport,
} from "../../../lib/doctor/checks.ts";
import { type FwmarkRule, parseFwmarkRules, parseQueueRules } from "../../../lib/doctor/rules.ts";

const IPTABLES_OK = `*raw
:PREROUTING ACCEPT [0:0]
-A PREROUTING -d 10.0.0.1/32 -j NOTRACK
COMMIT
*mangle
-A PREROUTING -d 10.0.0.1/32 -j NFQUEUE --queue-balance 0:3
COMMIT
`;

Deno.test("conntrack: iptables and nft rules that track or NAT fail; notrack passes", () => {
  assert.equal(checkConntrack(IPTABLES_OK).ok, true);
  for (
    const rule of [
      "-A FORWARD -m conntrack --ctstate INVALID -j DROP",
      "-A INPUT -m state --state ESTABLISHED -j ACCEPT",
      "-A POSTROUTING -o eth0 -j MASQUERADE",
      "-A PREROUTING -d 10.0.0.1/32 -p tcp -j DNAT --to-destination 10.1.0.1",
      "\t\tct state established,related accept",
      "\t\tip daddr 10.0.0.1 dnat to 10.1.0.1",
    ]
  ) {
    const r = checkConntrack(IPTABLES_OK + rule + "\n");
    assert.equal(r.ok, false, rule);
    assert.ok(r.detail.includes(rule.trim()) && r.fix !== undefined, rule);
  }
  assert.equal(checkConntrack("\t\tip daddr @vips notrack\n").ok, true);
  assert.equal(checkConntrack("").status, "pass", "no rules at all (tools ran, printed nothing)");
});

Deno.test("conntrack: rules that could not be read are a SKIP that says why, with the fix for that cause", () => {
  const notRoot = checkConntrack(undefined, ["`iptables-save` failed (1): Permission denied"]);
  assert.equal(notRoot.status, "skip", "unreadable rules are not a pass");
  assert.match(
    notRoot.detail,
    /could not be read: `iptables-save` failed \(1\): Permission denied/,
  );
  assert.match(notRoot.fix!, /run doctor as root/);
  const asRoot = checkConntrack(undefined, ["`nft list ruleset` failed (1): x"], true);
  assert.doesNotMatch(asRoot.fix!, /as root/, "no 'run as root' advice to root");
  const absent = checkConntrack(undefined, [
    "iptables-save is not installed",
    "nft is not installed",
  ], true);
  assert.match(absent.fix!, /install iptables/);
});

const sets = (ip4: string, nft = "", ip6 = "") => parseQueueRules({ ip4, ip6, nft });
const Q03: DaemonQueues = { queues: [0, 1, 2, 3], source: "--queue" };

Deno.test("vip rules: iptables -d VIP -j NFQUEUE, nft queue on a set holding the VIP", () => {
  assert.equal(checkVipRules(["10.0.0.1"], sets(IPTABLES_OK)).ok, true);
  assert.equal(checkVipRules(["10.0.0.2"], sets(IPTABLES_OK)).ok, false);
  const nft =
    `table inet meridio {\n\tset vips {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.9 }\n\t}\n` +
    `\tchain pre {\n\t\tip daddr @vips counter queue num 0-3\n\t}\n}\n`;
  assert.equal(checkVipRules(["10.0.0.9"], sets("", nft)).ok, true);
  assert.equal(
    checkVipRules(
      ["1000::1"],
      sets("", "", "-A PREROUTING -d 1000::1/128 -j NFQUEUE --queue-num 2"),
    )
      .ok,
    true,
  );
  // Whole addresses only: 10.0.0.1 is neither in 110.0.0.1 nor in 10.0.0.10.
  assert.equal(
    checkVipRules(["10.0.0.1"], sets("-A nfqlb -d 110.0.0.1/32 -j NFQUEUE --queue-num 2")).ok,
    false,
  );
  const other = "table inet t {\n\tset vips {\n\t\telements = { 10.0.0.10 }\n\t}\n" +
    "\tchain c {\n\t\tip daddr @vips queue to 0-3\n\t}\n}\n";
  assert.equal(checkVipRules(["10.0.0.1"], sets("", other)).ok, false);
});

Deno.test("vip rules: the fix is `nfqlb ruleset --apply` with the daemon's queues; wrong queues fail", () => {
  const r = checkVipRules(["10.0.0.2", "1000::2"], sets(IPTABLES_OK), Q03);
  assert.equal(r.status, "fail");
  assert.equal(r.fix, "nfqlb ruleset --vip=10.0.0.2,1000::2 --queue=0:3 --apply");
  const q2: DaemonQueues = { queues: [2], source: "--queue" };
  const elsewhere = checkVipRules(["10.0.0.1"], sets(IPTABLES_OK), q2);
  assert.equal(elsewhere.status, "fail", "queued to 0:3, the daemon listens on 2");
  assert.match(elsewhere.detail, /10\.0\.0\.1 queued to queues other than the daemon's 2/);
  assert.match(elsewhere.fix!, /ruleset` queues to 0:3 by default, lb and flowlb listen on 2/);
  assert.equal(checkVipRules(["10.0.0.1"], sets(IPTABLES_OK), Q03).status, "pass");
  assert.equal(checkVipRules(["10.0.0.1"], undefined).status, "skip");
});

Deno.test("flow rules: each flow's dsts queued to the daemon's queues; no flowlb is a SKIP", () => {
  const flows = [
    { name: "web", dsts: ["::ffff:10.0.0.1/128"] },
    { name: "all", dsts: [] },
  ];
  const ok = checkFlowRules(flows, sets(IPTABLES_OK), Q03);
  assert.equal(ok.status, "pass");
  assert.match(ok.detail, /all match every destination: not checked/);
  const bad = checkFlowRules(
    [{ name: "v6", dsts: ["1000::/64"] }, { name: "web", dsts: ["::ffff:10.0.0.0/120"] }],
    sets(IPTABLES_OK),
    Q03,
  );
  assert.equal(bad.status, "fail");
  assert.match(
    bad.detail,
    /flow v6: no NFQUEUE rule for 1000::\/64; flow web: no NFQUEUE rule for 10\.0\.0\.0\/24/,
  );
  assert.equal(bad.fix, "nfqlb ruleset --vip=1000::/64,10.0.0.0/24 --queue=0:3 --apply");
  assert.equal(checkFlowRules("no flowlb answers", sets(IPTABLES_OK)).status, "skip");
  assert.equal(checkFlowRules(flows, undefined).status, "skip");
});

Deno.test("sysctls: bridge netfilter, rp_filter (effective = max of all and the device), fwmark_reflect", () => {
  assert.equal(checkBridgeNetfilter(undefined, undefined).ok, true);
  assert.equal(checkBridgeNetfilter("0\n", "0\n").ok, true);
  assert.match(checkBridgeNetfilter("1\n", "0\n").fix!, /bridge-nf-call-iptables=0/);
  assert.equal(checkRpFilter(new Map([["all", 0], ["lo", 1], ["eth0", 2]])).ok, true);
  const strictAll = checkRpFilter(new Map([["all", 1], ["lo", 0], ["eth0", 0], ["nfqlb0", 0]]));
  assert.equal(strictAll.ok, false);
  assert.match(strictAll.detail, /eth0, nfqlb0/);
  assert.equal(checkRpFilter(new Map([["all", 0], ["eth1", 1]])).ok, false);
  assert.equal(checkFwmarkReflect("1\n", "1\n").ok, true);
  assert.match(checkFwmarkReflect("0\n", "1\n").fix!, /net\.ipv4\.fwmark_reflect=1/);
});

Deno.test("queues, tun, fwmark routes, /dev/shm, the reassembled counter", () => {
  assert.equal(checkQueues(Q03, new Set([0, 1, 2, 3])).ok, true);
  assert.match(checkQueues(Q03, new Set([0, 2])).detail, /queue 1, 3 \(from --queue\)/);
  assert.equal(checkTun("t0", undefined).ok, false);
  assert.equal(checkTun("t0", "0x1002\n").ok, false, "IFF_UP clear");
  assert.equal(checkTun("t0", "0x1003\n").ok, true);
  const v4 = parseFwmarkRules(
    "0:\tfrom all lookup local\n32765:\tfrom all fwmark 0x65 lookup 101\n",
  );
  const only4 = new Map<4 | 6, FwmarkRule[] | undefined>([[4, v4], [6, []]]);
  const routed = (_f: 4 | 6, t: string) => t === "101";
  assert.equal(checkFwmarkRoutes("t", [101], [4], only4, routed).ok, true);
  assert.match(checkFwmarkRoutes("t", [101], [4], only4, () => false).detail, /table 101 is empty/);
  assert.match(
    checkFwmarkRoutes("t", [101, 102], [4], only4, () => true).detail,
    /fwmark 102: no ip rule/,
  );
  assert.equal(checkShmSpace(4096).ok, true);
  assert.equal(checkShmSpace(100).ok, false);
  assert.equal(checkShmSpace(undefined).status, "skip");
  assert.equal(checkReassembled(0, "ftshm").ok, true);
  assert.equal(checkReassembled(7, "ftshm").ok, false);
  assert.equal(checkReassembled(undefined, "ftshm").status, "skip", "no daemon: did not run");
  assert.equal(checkReassembled(0, "ftshm", "0").status, "skip", "another namespace's daemon");
  assert.equal(checkShmSpace(4096).ok, true);
  assert.equal(checkShmSpace(100).ok, false);
  assert.equal(checkReassembled(0, "ftshm").ok, true);
  assert.equal(checkReassembled(7, "ftshm").ok, false);
  const text = formatReport([checkTun("t0", undefined), checkShmSpace(4096)]);
  assert.match(
    text,
    /^FAIL tun: no device t0 in this namespace\n {5}fix: ip tuntap add t0 mode tun/,
  );
  assert.match(text, /\nPASS dev-shm: 4096 KiB free in \/dev\/shm\n$/);
  assert.match(
    formatReport([checkReassembled(undefined, "ft1")]),
    /^SKIP reassembled: no statistics object ft1: .*\n {5}fix: /,
  );
});

Deno.test("fwmark routes per family: an IPv4 rule does not pass an IPv6 VIP", () => {
  const v4 = parseFwmarkRules("32765:\tfrom all fwmark 0x65 lookup 101\n");
  const rules = new Map<4 | 6, FwmarkRule[] | undefined>([[4, v4], [6, []]]);
  const all = () => true;
  assert.equal(checkFwmarkRoutes("t", [101], [4], rules, all).status, "pass");
  const both = checkFwmarkRoutes("t", [101], [4, 6], rules, all);
  assert.equal(both.status, "fail");
  assert.match(both.detail, /fwmark 101: no ip -6 rule/);
  assert.match(
    both.fix!,
    /^ip -6 rule add fwmark 101 table 101; ip -6 route add default via TARGET table 101/,
  );
  // Families unknown: one family with a rule and a route will do, and the report says so.
  const unknown = checkFwmarkRoutes("t", [101], [], rules, all);
  assert.equal(unknown.status, "pass");
  assert.match(unknown.detail, /--vip names them/);
  const v6route = new Map<4 | 6, FwmarkRule[] | undefined>([[4, v4], [
    6,
    parseFwmarkRules("1: from all fwmark 0x65/0xff lookup 7\n"),
  ]]);
  assert.equal(checkFwmarkRoutes("t", [101], [4, 6], v6route, all).status, "pass", "masked mark");
  const noIp = new Map<4 | 6, FwmarkRule[] | undefined>([[4, undefined], [6, undefined]]);
  assert.equal(checkFwmarkRoutes("t", [101], [4], noIp, all).status, "skip");
});

Deno.test("queues: the rules' queues need a listener too (ruleset's 0:3 against lb's 2)", () => {
  const rules = sets(IPTABLES_OK);
  const q2: DaemonQueues = { queues: [2], source: "--queue" };
  const r = checkQueues(q2, new Set([2]), rules);
  assert.equal(r.status, "fail");
  assert.match(r.detail, /NFQUEUE rules send to queue 0:1,3, where no one listens/);
  assert.match(r.fix!, /--queue=0:3/);
  const none = checkQueues(undefined, new Set(), rules);
  assert.match(none.detail, /no lb or flowlb runs here, yet NFQUEUE rules send to queue 0:3/);
  assert.match(none.fix!, /with --queue=0:3$/);
  const found: DaemonQueues = { queues: [0, 1, 2, 3], source: "the listeners of /proc/x" };
  assert.match(
    checkQueues(found, new Set([0, 1, 2, 3]), rules).detail,
    /^queue 0:3 \(from the listeners of \/proc\/x\)/,
  );
});

Deno.test("offloads: GRO or LRO on fails with the ethtool fix; no ethtool is a SKIP", () => {
  assert.equal(checkOffloads(undefined).status, "skip");
  const off = "generic-receive-offload: off\nlarge-receive-offload: off [fixed]\n";
  assert.equal(checkOffloads(new Map([["eth0", off]])).ok, true);
  const r = checkOffloads(new Map([["eth0", "generic-receive-offload: on\n"], ["eth1", off]]));
  assert.equal(r.ok, false);
  assert.equal(r.fix, "ethtool -K eth0 gro off lro off");
});

Deno.test("fwmark routes: a table without an active target fails; system tables not suggested", () => {
  const none = checkFwmarkRoutes("lbt", [], [4], new Map([[4, []], [6, []]]), () => true);
  assert.equal(none.status, "fail");
  assert.match(none.detail, /^lbt: no active target/);
  assert.equal(none.fix, "nfqlb activate --shm=lbt FWMARK...");
  const r = checkFwmarkRoutes("t", [254], [4], new Map([[4, []], [6, []]]), () => true);
  assert.match(
    r.fix!,
    /^ip rule add fwmark 254 table 1254 \(table 1254, a free routing table id other than 253-255.*; ip route add default via TARGET table 1254/,
  );
});

Deno.test("vip and flow rules: --queue always in the fix; what cannot be told is a SKIP", () => {
  const noRule = checkVipRules(["10.0.0.2"], sets(IPTABLES_OK));
  assert.equal(noRule.fix, "nfqlb ruleset --vip=10.0.0.2 --queue=<lb/flowlb's --queue> --apply");
  const unread = checkVipRules(["10.0.0.2"], sets(IPTABLES_OK), Q03, "nft is not installed");
  assert.equal(unread.status, "skip");
  assert.match(unread.detail, /not every rule set could be read \(nft is not installed\)/);
  assert.equal(
    checkVipRules(["10.0.0.1"], sets(IPTABLES_OK), Q03, "nft is not installed").status,
    "pass",
    "a rule read is a rule",
  );
  const ipset = sets("-A PREROUTING -m set --match-set vips dst -j NFQUEUE --queue-num 0");
  assert.equal(checkVipRules(["10.0.0.2"], ipset, Q03).status, "skip");
  const flows = checkFlowRules([{ name: "web", dsts: ["10.0.0.2/32"] }], ipset, Q03);
  assert.equal(flows.status, "skip");
  assert.match(flows.detail, /flow web 10\.0\.0\.2: only rules whose destinations/);
});

Deno.test("reassembled: another namespace's statistics object, said plainly", () => {
  const r = checkReassembled(0, "ftshm", "0:3");
  assert.equal(
    formatReport([r]),
    "SKIP reassembled: /dev/shm/ftshm belongs to a daemon of another network namespace (or a " +
      "stopped one): its queue 0:3 has no listener here (/dev/shm is shared by the host's " +
      "namespaces)\n     fix: doctor --ft_shm=NAME with the --ft_shm of this namespace's daemon\n",
  );
});

Deno.test("foreignQueues: the object's queues without a listener here, only when that is known", () => {
  const bound = new Set([0, 1, 2, 3]);
  assert.equal(foreignQueues([0, 1, 2, 3], bound), undefined, "its daemon listens here");
  assert.equal(foreignQueues([2], bound), undefined, "a second daemon here: still listening");
  assert.equal(foreignQueues([0, 1, 2, 3], new Set()), "0:3", "nothing listens here");
  assert.equal(foreignQueues([3, 4, 5], bound), "4:5", "the queues without a listener");
  assert.equal(foreignQueues([0, 1], undefined), undefined, "the listeners are not known");
  assert.equal(foreignQueues([], new Set()), undefined, "1.2.0's object names no queue");
});
