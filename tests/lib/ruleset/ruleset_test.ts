/** `nfqlb ruleset --fastpath`: the prerouting queue rules skip marked packets, nothing else changes. */
import assert from "node:assert/strict";
import { iptablesCommands, nftRuleset } from "../../../lib/ruleset/ruleset.ts";

const r = { vips: ["10.0.0.1", "1000::/64"], first: 0, last: 3 };

Deno.test("ruleset --fastpath: iptables prerouting rules match mark 0 only", () => {
  const plain = iptablesCommands(r);
  const fast = iptablesCommands({ ...r, fastpath: true });
  assert.equal(fast.length, plain.length);
  const changed = fast.filter((c, i) => c !== plain[i]);
  assert.deepEqual(changed, [
    "iptables -t mangle -A nfqlb -d 10.0.0.1 -m mark --mark 0 -j NFQUEUE --queue-balance 0:3",
    "ip6tables -t mangle -A nfqlb -d 1000::/64 -m mark --mark 0 -j NFQUEUE --queue-balance 0:3",
  ]);
});

Deno.test("ruleset --fastpath: nft prerouting rules match mark 0 only", () => {
  const fast = nftRuleset({ ...r, fastpath: true }).split("\n");
  const plain = nftRuleset(r).split("\n");
  const changed = fast.filter((l, i) => l !== plain[i]);
  assert.deepEqual(changed, [
    "\t\tmeta mark 0 ip daddr @ipv4-vips counter queue to 0-3",
    "\t\tmeta mark 0 ip6 daddr @ipv6-vips counter queue to 0-3",
  ]);
});
