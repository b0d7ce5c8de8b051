/**
 * Reading rules as the tools print them (lib/doctor/rules.ts): NFQUEUE rules of iptables-save
 * and `nft list ruleset` (sets, anonymous sets, ranges, families), prefix containment, and the
 * fwmark rules of `ip rule` with masks.
 */
import assert from "node:assert/strict";
import {
  formatDst,
  fwmarkRuleFor,
  nftQueueStatement,
  parseDst,
  parseFwmarkRules,
  parseQueueRules,
  queueRuleFor,
  queuesText,
  rangeDsts,
  uncertainRuleFor,
} from "../../../lib/doctor/rules.ts";

const dst = (t: string) => parseDst(t)!;

Deno.test("iptables-save: -d prefixes, --queue-num/--queue-balance, negations and families", () => {
  const rules = parseQueueRules({
    ip4: "-A nfqlb -d 10.0.0.0/24 -j NFQUEUE --queue-balance 0:3\n" +
      "-A x ! -d 10.9.0.0/16 -j NFQUEUE --queue-num 5\n-A y -d 10.8.0.1/32 -j ACCEPT\n",
    ip6: "-A nfqlb -d 1000::1/128 -j NFQUEUE --queue-num 2\n",
    nft: "",
  });
  assert.equal(rules.length, 2, "the negated rule is not one for its prefix");
  assert.deepEqual([rules[0].first, rules[0].last], [0, 3]);
  assert.ok(queueRuleFor(dst("10.0.0.7"), rules));
  assert.ok(queueRuleFor(dst("10.0.0.128/25"), rules));
  assert.equal(queueRuleFor(dst("10.0.0.0/16"), rules), undefined, "only partly queued");
  assert.equal(queueRuleFor(dst("10.8.0.1"), rules), undefined, "not an NFQUEUE rule");
  assert.equal(queueRuleFor(dst("10.0.0.7"), rules, new Set([2])), undefined, "other queues");
  assert.ok(queueRuleFor(dst("1000::1"), rules, new Set([2])));
  assert.equal(queueRuleFor(dst("::ffff:10.0.0.7/128"), rules)?.first, 0, "IPv4-mapped is IPv4");
  // The negated rule (all but 10.9/16, queue 5) is not counted as queueing anything.
  assert.equal(queueRuleFor(dst("10.1.1.1"), rules), undefined);
});

Deno.test("nft ruleset: named sets (elements over lines), anonymous sets, queue forms", () => {
  const nft = `table inet nfqlb {
\tset ipv4-vips {
\t\ttype ipv4_addr
\t\tflags interval
\t\telements = { 10.1.1.1, 20.0.0.0/24,
\t\t\t     30.0.0.1 }
\t}
\tset ipv6-vips {
\t\ttype ipv6_addr
\t\tflags interval
\t}
\tchain nfqlb {
\t\ttype filter hook prerouting priority filter; policy accept;
\t\tip daddr @ipv4-vips counter queue to 0-3
\t\tip6 daddr @ipv6-vips counter queue to 0-3
\t\tip6 daddr { 2000::1, 2000::2 } queue flags bypass num 7
\t\tip daddr 40.0.0.1 queue
\t}
}
`;
  const rules = parseQueueRules({ ip4: "", ip6: "", nft });
  for (const a of ["10.1.1.1", "20.0.0.9", "30.0.0.1"]) assert.ok(queueRuleFor(dst(a), rules), a);
  assert.equal(queueRuleFor(dst("1000::1"), rules), undefined, "empty set");
  assert.equal(queueRuleFor(dst("2000::2"), rules)?.first, 7);
  assert.equal(queueRuleFor(dst("40.0.0.1"), rules)?.first, 0, "queue without num: queue 0");
  assert.equal(queueRuleFor(dst("10.1.1.1"), rules)?.last, 3);
});

Deno.test("ip rule: fwmark in hex, masks, the table looked up", () => {
  const rules = parseFwmarkRules(
    "0:\tfrom all lookup local\n100:\tfrom all fwmark 0x65 lookup 101\n" +
      "101:\tfrom all fwmark 0x100/0xf00 lookup lbt\n32766:\tfrom all lookup main\n",
  );
  assert.equal(rules.length, 2);
  assert.equal(fwmarkRuleFor(101, rules)?.table, "101");
  assert.equal(fwmarkRuleFor(0x1ff, rules)?.table, "lbt", "masked");
  assert.equal(fwmarkRuleFor(102, rules), undefined);
  assert.equal(queuesText([3, 0, 1, 2, 7, 9, 8]), "0:3,7:9");
});

Deno.test("nft: interval elements (A-B) are queued; a range only partly covered is not", () => {
  const nft = `table inet meridio-nfqlb {
\tset ipv4-vips {
\t\ttype ipv4_addr
\t\tflags interval
\t\telements = { 50.0.0.1-50.0.0.5, 60.0.0.0/25,
\t\t\t     60.0.0.128/25 }
\t}
\tchain nfqlb {
\t\ttype filter hook prerouting priority filter; policy accept;
\t\tip daddr @ipv4-vips counter packets 0 bytes 0 queue to 0-3
\t}
}
`;
  const rules = parseQueueRules({ ip4: "", ip6: "", nft });
  for (const a of ["50.0.0.1", "50.0.0.3", "50.0.0.5", "50.0.0.4/31"]) {
    assert.ok(queueRuleFor(dst(a), rules), a);
  }
  assert.equal(queueRuleFor(dst("50.0.0.6"), rules), undefined, "past the range");
  assert.equal(queueRuleFor(dst("50.0.0.0/29"), rules), undefined, "partly in the range");
  assert.ok(queueRuleFor(dst("60.0.0.0/24"), rules), "two adjacent prefixes hold the /24");
  assert.deepEqual(
    rangeDsts(false, 0x32000001n, 0x32000005n).map(formatDst),
    ["50.0.0.1", "50.0.0.2/31", "50.0.0.4/31"],
  );
  const ipt = parseQueueRules({
    ip4: "-A x -m iprange --dst-range 70.0.0.1-70.0.0.9 -j NFQUEUE --queue-num 1\n",
    ip6: "",
    nft: "",
  });
  assert.ok(queueRuleFor(dst("70.0.0.9"), ipt));
  assert.equal(queueRuleFor(dst("70.0.0.10"), ipt), undefined);
});

Deno.test("nft: the queue statement, not a chain or a comment named queue; queue forms", () => {
  const nft = `table inet t {
\tchain c {
\t\ttype filter hook prerouting priority filter; policy accept;
\t\tip daddr 10.0.0.1 jump queue_chain
\t\tip daddr 10.0.0.2 jump queue
\t\tip daddr 10.0.0.3 counter comment "queue them"
\t\tip daddr 10.0.0.4 meta mark set 1 goto queue
\t\tip daddr 10.0.0.5 queue flags bypass,fanout to 2-5
\t\tip daddr 10.0.0.6 queue num 2
\t\tip daddr 10.0.0.7 queue flags fanout to numgen inc mod 4
\t\tip daddr 10.0.0.8 queue to jhash ip saddr mod 2
\t\tip daddr 10.0.0.9 queue num 1-3 bypass,fanout
\t}
\tchain queue_chain {
\t}
}
`;
  const rules = parseQueueRules({ ip4: "", ip6: "", nft });
  for (const a of ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]) {
    assert.equal(queueRuleFor(dst(a), rules), undefined, a);
  }
  const q = (a: string) => queueRuleFor(dst(a), rules)!;
  assert.deepEqual([q("10.0.0.5").first, q("10.0.0.5").last], [2, 5]);
  assert.deepEqual([q("10.0.0.6").first, q("10.0.0.6").last], [2, 2]);
  assert.deepEqual([q("10.0.0.9").first, q("10.0.0.9").last], [1, 3]);
  for (const a of ["10.0.0.7", "10.0.0.8"]) {
    assert.equal(q(a).queuesUnknown, true, `${a}: some queue, not claimed which`);
    assert.ok(queueRuleFor(dst(a), rules, new Set([9])), `${a}: not "other queues"`);
  }
  assert.deepEqual(nftQueueStatement("ip daddr 1.2.3.4 queue"), {
    first: 0,
    last: 0,
    unknown: false,
  });
  assert.equal(nftQueueStatement("ip daddr 1.2.3.4 jump queue"), undefined);
  assert.equal(nftQueueStatement("ip daddr vmap { 1.2.3.4 : jump queue }"), undefined);
});

Deno.test("ipsets and concatenations: destinations unknown, neither queued nor unqueued", () => {
  const rules = parseQueueRules({
    ip4: "-A PREROUTING -m set --match-set vips dst -j NFQUEUE --queue-num 2\n",
    ip6: "",
    nft: `table ip t {
\tchain c {
\t\tip daddr . tcp dport @vipports queue num 3
\t\tip daddr @not-listed queue num 4
\t}
}
`,
  });
  assert.equal(rules.length, 3);
  assert.ok(rules.every((r) => r.dstsUnknown), "none claims its destinations");
  assert.equal(queueRuleFor(dst("10.0.0.1"), rules), undefined, "no coverage claimed");
  assert.ok(uncertainRuleFor(dst("10.0.0.1"), rules), "but one may queue it");
  assert.equal(uncertainRuleFor(dst("1000::1"), rules), undefined, "not of IPv6");
});

Deno.test("ip rule: a `not` rule routes no marked packet", () => {
  const rules = parseFwmarkRules(
    "100:\tnot from all fwmark 0x65 lookup main\n" +
      "101:\tfrom all fwmark 0x66 lookup 102\n",
  );
  assert.deepEqual(rules.map((r) => r.fwmark), [0x66]);
  assert.equal(fwmarkRuleFor(101, rules), undefined);
});
