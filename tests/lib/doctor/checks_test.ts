/**
 * The doctor's checks (lib/doctor/checks.ts) over literal inputs in the forms the tools print
 * them (iptables-save, nft list ruleset, /proc, ip rule): each passes and fails where it should,
 * and a failure carries a fix.
 */
import assert from "node:assert/strict";
import {
  checkBridgeNetfilter,
  checkConntrack,
  checkFwmarkReflect,
  checkFwmarkRoutes,
  checkOffloads,
  checkQueues,
  checkReassembled,
  checkRpFilter,
  checkShmSpace,
  checkTun,
  checkVipRules,
  formatReport,
} from "../../../lib/doctor/checks.ts";

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
  assert.equal(checkConntrack(undefined).ok, false, "unreadable rules are not a pass");
});

Deno.test("vip rules: iptables -d VIP -j NFQUEUE, nft queue on a set holding the VIP", () => {
  assert.equal(checkVipRules(["10.0.0.1"], IPTABLES_OK).ok, true);
  assert.equal(checkVipRules(["10.0.0.2"], IPTABLES_OK).ok, false);
  const nft = `table inet meridio {\n\tset vips { type ipv4_addr; elements = { 10.0.0.9 } }\n` +
    `\tchain pre { ip daddr @vips counter queue num 0-3 }\n}\n`;
  assert.equal(checkVipRules(["10.0.0.9"], nft).ok, true);
  assert.equal(
    checkVipRules(["1000::1"], "-A PREROUTING -d 1000::1/128 -j NFQUEUE --queue-num 2").ok,
    true,
  );
  // Whole addresses only: 10.0.0.1 is neither in 110.0.0.1 nor in 10.0.0.10.
  assert.equal(
    checkVipRules(["10.0.0.1"], "-A nfqlb -d 110.0.0.1/32 -j NFQUEUE --queue-num 2").ok,
    false,
  );
  const other = "\tset vips { elements = { 10.0.0.10 } }\n\tip daddr @vips queue to 0-3\n";
  assert.equal(checkVipRules(["10.0.0.1"], other).ok, false);
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
  assert.equal(checkQueues(0, 3, new Set([0, 1, 2, 3])).ok, true);
  assert.match(checkQueues(0, 3, new Set([0, 2])).detail, /queue 1, 3/);
  assert.equal(checkTun("t0", undefined).ok, false);
  assert.equal(checkTun("t0", "0x1002\n").ok, false, "IFF_UP clear");
  assert.equal(checkTun("t0", "0x1003\n").ok, true);
  const rules = "0:\tfrom all lookup local\n32765:\tfrom all fwmark 0x65 lookup 101\n";
  assert.equal(checkFwmarkRoutes("t", [101], rules, (t) => t === "101").ok, true);
  assert.match(checkFwmarkRoutes("t", [101], rules, () => false).detail, /table 101 is empty/);
  assert.match(
    checkFwmarkRoutes("t", [101, 102], rules, () => true).detail,
    /fwmark 102: no ip rule/,
  );
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
});

Deno.test("offloads: GRO or LRO on fails with the ethtool fix; no ethtool is not a failure", () => {
  assert.equal(checkOffloads(undefined).ok, true);
  const off = "generic-receive-offload: off\nlarge-receive-offload: off [fixed]\n";
  assert.equal(checkOffloads(new Map([["eth0", off]])).ok, true);
  const r = checkOffloads(new Map([["eth0", "generic-receive-offload: on\n"], ["eth1", off]]));
  assert.equal(r.ok, false);
  assert.equal(r.fix, "ethtool -K eth0 gro off lro off");
});
