/**
 * The warnings of `activate` and `flow-set` (lib/doctor/warnings.ts): said when the
 * configuration cannot work, not when it can, nothing when the rules are unknown.
 */
import assert from "node:assert/strict";
import {
  fwmarkRuleWarnings,
  suggestedTable,
  unqueuedDstsWarning,
} from "../../../lib/doctor/warnings.ts";
import { parseFwmarkRules, parseQueueRules } from "../../../lib/doctor/rules.ts";

Deno.test("activate: a fwmark no ip rule routes is warned about, per family when one is routed", () => {
  const r101 = parseFwmarkRules("100:\tfrom all fwmark 0x65 lookup 101\n");
  const none = fwmarkRuleWarnings([104], [], []);
  assert.equal(none.length, 1);
  assert.match(
    none[0],
    /^fwmark 104 has no ip rule \(ip rule add fwmark 104 table 104; ip -6 rule/,
  );
  assert.deepEqual(fwmarkRuleWarnings([101], r101, []), [], "IPv4 only, no IPv6 policy routing");
  const v6 = fwmarkRuleWarnings(
    [104],
    parseFwmarkRules("1: from all fwmark 0x68 lookup 104\n"),
    r101,
  );
  assert.equal(v6.length, 1);
  assert.match(v6[0], /^fwmark 104 has no ip -6 rule \(ip -6 rule add fwmark 104 table 104\)/);
  assert.deepEqual(fwmarkRuleWarnings([104], undefined, undefined), [], "ip could not tell");
  assert.deepEqual(fwmarkRuleWarnings([-1], [], []), [], "not a target");
  assert.deepEqual(fwmarkRuleWarnings([104], [], [], false), [], "no daemon, nothing routed here");
  assert.equal(fwmarkRuleWarnings([104], r101, [], false).length, 1, "others routed, not this");
});

Deno.test("flow-set: dsts no NFQUEUE rule queues are warned about, with the ruleset command", () => {
  const rules = parseQueueRules({
    ip4: "-A nfqlb -d 10.0.0.1/32 -j NFQUEUE --queue-balance 0:3\n",
    ip6: "",
    nft: "",
  });
  assert.equal(unqueuedDstsWarning("web", "10.0.0.1/32", rules), undefined);
  const w = unqueuedDstsWarning("web", "10.0.0.1/32, 10.9.9.0/24,1000::1/128", rules);
  assert.match(
    w!,
    /^flow web: no NFQUEUE rule in this namespace sends 10\.9\.9\.0\/24, 1000::1 to/,
  );
  assert.match(
    w!,
    /nfqlb ruleset --vip=10\.9\.9\.0\/24,1000::1 --queue=<flowlb's --queue> --apply$/,
  );
  assert.equal(unqueuedDstsWarning("all", "", rules), undefined, "no dsts: every destination");
});

Deno.test("the suggested routing table: never a system table (0, 253-255), always a table id", () => {
  assert.deepEqual(suggestedTable(104), { table: 104, note: "" });
  for (const [fw, t] of [[0, 1000], [253, 1253], [254, 1254], [255, 1255], [2 ** 32, 1000]]) {
    const s = suggestedTable(fw);
    assert.equal(s.table, t, `fwmark ${fw}`);
    assert.match(s.note, new RegExp(`^ \\(table ${t}, a free routing table id other than 253-255`));
  }
  const [w] = fwmarkRuleWarnings([254], [], []);
  assert.match(
    w,
    /^fwmark 254 has no ip rule \(ip rule add fwmark 254 table 1254; ip -6 rule add fwmark 254 table 1254; and a route in table 1254\) \(table 1254, a free routing table id other than 253-255/,
  );
  assert.doesNotMatch(w, /table 254\b[;)]/);
});

Deno.test("flow-set: a dst an ipset rule may queue is not warned about", () => {
  const rules = parseQueueRules({
    ip4: "-A PREROUTING -m set --match-set vips dst -j NFQUEUE --queue-num 2\n",
    ip6: "",
    nft: "",
  });
  assert.equal(unqueuedDstsWarning("web", "10.0.0.1/32", rules), undefined);
  assert.match(unqueuedDstsWarning("web", "1000::1/128", rules)!, /sends 1000::1 to a queue/);
});
