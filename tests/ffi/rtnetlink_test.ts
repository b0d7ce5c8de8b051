/**
 * `dumpFwmarkRules` in a network namespace the test creates (needs root): the fwmark rules of
 * one rtnetlink dump per family are those `ip rule show` lists (`parseFwmarkRules`), `not`
 * rules left out by both; the tables as numbers.
 */
import assert from "node:assert/strict";
import { isRoot, withTestNet } from "../../testkit/netns.ts";

const DENO = Deno.execPath();
const DUMP = new URL("../../ffi/rtnetlink.ts", import.meta.url).href;
const RULES = new URL("../../lib/doctor/rules.ts", import.meta.url).href;

Deno.test({
  name: "rtnetlink dump: the fwmark rules ip rule lists, per family, without the not rules",
  ignore: !isRoot(),
  async fn() {
    await withTestNet(async (net) => {
      const ns = await net.addNs("rtr");
      const rule = (...a: string[]) => net.run(ns, ["ip", ...a]);
      await rule("rule", "add", "fwmark", "104", "table", "104");
      await rule("rule", "add", "fwmark", "0x10/0xf0", "table", "5000");
      await rule("rule", "add", "not", "fwmark", "105", "table", "105");
      await rule("-6", "rule", "add", "fwmark", "106", "table", "106");
      const code = `
        import { dumpFwmarkRules } from "${DUMP}";
        import { parseFwmarkRules } from "${RULES}";
        const ip = async (f) => new TextDecoder().decode((await new Deno.Command("ip",
          { args: [\`-\${f}\`, "rule", "show"] }).output()).stdout);
        const strip = (l) => l.map(({ fwmark, mask }) => ({ fwmark, mask }));
        console.log(JSON.stringify({
          dump: [dumpFwmarkRules(4), dumpFwmarkRules(6)],
          ip: [strip(parseFwmarkRules(await ip(4))), strip(parseFwmarkRules(await ip(6)))],
        }));`;
      const r = await net.exec(ns, [DENO, "eval", "--ext=js", code]);
      assert.equal(r.code, 0, r.stderr);
      const { dump, ip } = JSON.parse(r.stdout);
      assert.deepEqual(dump, [
        [
          { fwmark: 0x10, mask: 0xf0, table: "5000" },
          { fwmark: 104, mask: 0xffffffff, table: "104" },
        ],
        [{ fwmark: 106, mask: 0xffffffff, table: "106" }],
      ]);
      const strip = (l: { fwmark: number; mask: number }[]) =>
        l.map(({ fwmark, mask }) => ({ fwmark, mask }));
      assert.deepEqual(dump.map(strip), ip, "what ip rule shows");
    });
  },
});
