/**
 * Reading rules as the tools print them (lib/doctor/rules.ts): NFQUEUE rules of iptables-save
 * and `nft list ruleset` (sets, anonymous sets, ranges, families), prefix containment, and the
 * fwmark rules of `ip rule` with masks.
 */
import assert from "node:assert/strict";
import {
  fwmarkRuleFor,
  parseDst,
  parseFwmarkRules,
  parseQueueRules,
  queueRuleFor,
  queuesText,
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
