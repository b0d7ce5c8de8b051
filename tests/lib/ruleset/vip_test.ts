/** VIPs of `nfqlb ruleset`: one canonical text per VIP, refused host bits, overlaps. */
import assert from "node:assert/strict";
import { parseVip, type Vip, vipsOverlap } from "../../../lib/ruleset/vip.ts";

const vip = (t: string) => {
  const v = parseVip(t);
  if (typeof v === "string") throw new Error(`${t}: ${v}`);
  return v as Vip;
};

Deno.test("parseVip: the forms iptables prints and the forms an operator types are one VIP", () => {
  for (
    const [input, text] of [
      ["10.0.0.1", "10.0.0.1"],
      ["10.0.0.1/32", "10.0.0.1"],
      ["10.0.0.0/24", "10.0.0.0/24"],
      ["0.0.0.0/0", "0.0.0.0/0"],
      ["1000::1", "1000::1"],
      ["1000:0:0::1/128", "1000::1"],
      ["1000::/64", "1000::/64"],
      ["2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ]
  ) assert.equal(vip(input).text, text, input);
  assert.equal(vip("1000::1").v6, true);
  assert.equal(vip("10.0.0.1").v6, false);
});

Deno.test("parseVip: bad input says why; host bits are refused, naming the prefix", () => {
  assert.equal(parseVip("10.0.0.1/24"), "host bits set (the prefix is 10.0.0.0/24)");
  assert.equal(parseVip("1000::1/64"), "host bits set (the prefix is 1000::/64)");
  assert.equal(parseVip("10.0.0.300"), "not an address or prefix");
  assert.equal(parseVip("10.0.0.1/33"), "bad prefix length");
  assert.equal(parseVip("1000::/129"), "bad prefix length");
  assert.equal(parseVip("10.0.0.1/"), "bad prefix length");
  assert.equal(parseVip("10.0.0.1/8/8"), "not an address or prefix");
});

Deno.test("vipsOverlap: one contains the other, same family only", () => {
  assert.equal(vipsOverlap(vip("10.0.0.1"), vip("10.0.0.0/24")), true);
  assert.equal(vipsOverlap(vip("10.0.0.0/24"), vip("10.0.0.255")), true);
  assert.equal(vipsOverlap(vip("10.0.1.0/24"), vip("10.0.0.0/24")), false);
  assert.equal(vipsOverlap(vip("10.0.0.1"), vip("10.0.0.2")), false);
  assert.equal(vipsOverlap(vip("0.0.0.0/0"), vip("192.168.1.1")), true);
  assert.equal(vipsOverlap(vip("1000::/64"), vip("1000::ffff")), true);
  assert.equal(vipsOverlap(vip("1000::/64"), vip("1000:0:0:1::1")), false);
  assert.equal(vipsOverlap(vip("::/0"), vip("0.0.0.0/0")), false);
});
