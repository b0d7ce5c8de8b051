/**
 * The plans of `nfqlb ruleset --apply/--delete` (lib/ruleset/plan.ts): rules in place + request →
 * changes and report lines. The rules in place are given as `iptables-save` prints them (the form
 * of iptables 1.8.9 after `ruleset --apply`, captured in a namespace) and as `nft -j list table
 * inet nfqlb` prints the nft style (nft 1.0.6; this kernel has no nft `queue`, so the queue
 * statement's JSON is libnftables-json(5)'s `{"queue": {"num": N | {"range": [a, b]}}}`).
 */
import assert from "node:assert/strict";
import {
  type IptablesState,
  NO_NFT_TABLE,
  parseIptablesSave,
  parseNftState,
  parseOwnRule,
  planIptables,
  planNft,
  type QueueSpec,
  type Request,
} from "../../../lib/ruleset/plan.ts";
import { nftRuleset } from "../../../lib/ruleset/ruleset.ts";
import { parseVip, type Vip } from "../../../lib/ruleset/vip.ts";

const Q03: QueueSpec = { first: 0, last: 3, fastpath: false };
const Q47: QueueSpec = { first: 4, last: 7, fastpath: false };
const vips = (...t: string[]) => t.map((x) => parseVip(x) as Vip);
const req = (
  mode: "apply" | "delete",
  v: string[],
  spec = Q03,
  replace = false,
): Request => ({ vips: vips(...v), spec, mode, replace });

/** `iptables-save -t TABLE` after `ruleset --apply` of `v` (iptables 1.8.9's form), per table. */
function saved(
  v: string[],
  q = "--queue-balance 0:3",
  fastpath = false,
  extra = "",
): IptablesState {
  const state = new Map();
  for (const [cmd, six] of [["iptables", false], ["ip6tables", true]] as const) {
    const mine = v.filter((x) => x.includes(":") === six)
      .map((x) => x.includes("/") ? x : `${x}${six ? "/128" : "/32"}`);
    const icmp = six ? "ipv6-icmp" : "icmp";
    const has = mine.length > 0;
    const mangle = [
      "*mangle",
      ":PREROUTING ACCEPT [0:0]",
      ":INPUT ACCEPT [0:0]",
      ":OUTPUT ACCEPT [0:0]",
      ...(has ? [":nfqlb - [0:0]", ":nfqlb-local - [0:0]"] : []),
      "-A PREROUTING -p tcp -m tcp --dport 22 -j ACCEPT",
      ...(has ? ["-A PREROUTING -j nfqlb", "-A OUTPUT -j nfqlb-local"] : []),
      ...mine.map((x) =>
        `-A nfqlb -d ${x} ${fastpath ? "-m mark --mark 0x0 " : ""}-j NFQUEUE ${q}`
      ),
      ...mine.map((x) => `-A nfqlb-local -d ${x} -p ${icmp} -j NFQUEUE ${q}`),
      ...(cmd === "iptables" && extra !== "" ? [extra] : []),
      "COMMIT",
    ];
    const raw = [
      "*raw",
      ":PREROUTING ACCEPT [0:0]",
      ":OUTPUT ACCEPT [0:0]",
      ...(has ? [":nfqlb-defrag - [0:0]", ":nfqlb-defrag-local - [0:0]"] : []),
      ...(has ? ["-A PREROUTING -j nfqlb-defrag", "-A OUTPUT -j nfqlb-defrag-local"] : []),
      ...mine.map((x) => `-A nfqlb-defrag -d ${x} -j NOTRACK`),
      ...mine.map((x) => `-A nfqlb-defrag-local -d ${x} -j NOTRACK`),
      "COMMIT",
    ];
    state.set(`${cmd} mangle`, parseIptablesSave(mangle.join("\n") + "\n"));
    state.set(`${cmd} raw`, parseIptablesSave(raw.join("\n") + "\n"));
  }
  return state;
}

Deno.test("parseOwnRule: nfqlb's rules as iptables-save prints them; others are not nfqlb's", () => {
  assert.deepEqual(
    parseOwnRule("nfqlb", "-d 10.0.0.1/32 -m mark --mark 0x0 -j NFQUEUE --queue-balance 0:3", false)
      ?.spec,
    { first: 0, last: 3, fastpath: true },
  );
  assert.deepEqual(
    parseOwnRule("nfqlb-local", "-d 1000::/64 -p ipv6-icmp -j NFQUEUE --queue-num 2", true),
    { vip: parseVip("1000::/64"), spec: { first: 2, last: 2, fastpath: false } },
  );
  assert.equal(
    parseOwnRule("nfqlb-defrag", "-d 10.0.0.1/32 -j CT --notrack", false)?.vip.text,
    "10.0.0.1",
  );
  for (
    const [chain, rule, v6] of [
      ["nfqlb", "-s 10.0.0.1/32 -j ACCEPT", false],
      ["nfqlb", "-d 10.0.0.1/32 -j NFQUEUE --queue-num 2 --queue-bypass", false],
      ["nfqlb", "-d 10.0.0.1/32 -m mark --mark 0x1 -j NFQUEUE --queue-num 2", false],
      ["nfqlb-local", "-d 10.0.0.1/32 -p ipv6-icmp -j NFQUEUE --queue-num 2", false],
      ["nfqlb-defrag", "-d 1000::1/128 -j NOTRACK", false],
    ] as const
  ) assert.equal(parseOwnRule(chain, rule, v6), undefined, rule);
});

Deno.test("plan iptables: apply to nothing adds each VIP, both families' chains and jumps", () => {
  const plan = planIptables(new Map(), req("apply", ["10.0.0.1", "1000::1"]));
  assert.deepEqual(plan.refusals, []);
  assert.deepEqual(plan.lines.slice(0, 2), [
    "added vip 10.0.0.1 queue 0:3",
    "added vip 1000::1 queue 0:3",
  ]);
  assert.equal(plan.lines.filter((l) => l.startsWith("added chain ")).length, 8);
  assert.deepEqual(plan.steps.map((s) => `${s.cmd} ${s.table}`), [
    "iptables mangle",
    "iptables raw",
    "ip6tables mangle",
    "ip6tables raw",
  ]);
  assert.deepEqual(plan.steps[0].ops, [
    "-N nfqlb",
    "-N nfqlb-local",
    "-A nfqlb -d 10.0.0.1 -j NFQUEUE --queue-balance 0:3",
    "-A nfqlb-local -p icmp -d 10.0.0.1 -j NFQUEUE --queue-balance 0:3",
    "-A PREROUTING -j nfqlb",
    "-A OUTPUT -j nfqlb-local",
  ]);
  assert.deepEqual(plan.steps[0].undo, [
    "-D OUTPUT -j nfqlb-local",
    "-D PREROUTING -j nfqlb",
    "-D nfqlb-local -p icmp -d 10.0.0.1 -j NFQUEUE --queue-balance 0:3",
    "-D nfqlb -d 10.0.0.1 -j NFQUEUE --queue-balance 0:3",
    "-X nfqlb-local",
    "-X nfqlb",
  ]);
  assert.deepEqual(plan.steps[3].ops, [
    "-N nfqlb-defrag",
    "-N nfqlb-defrag-local",
    "-A nfqlb-defrag -d 1000::1 -j NOTRACK",
    "-A nfqlb-defrag-local -d 1000::1 -j NOTRACK",
    "-A PREROUTING -j nfqlb-defrag",
    "-A OUTPUT -j nfqlb-defrag-local",
  ]);
});

Deno.test("plan iptables: apply C to A + B6 adds C only and keeps A and B6 (issue 18, item 4)", () => {
  const plan = planIptables(saved(["10.0.0.1", "1000::1"]), req("apply", ["10.0.0.2"]));
  assert.deepEqual(plan.lines, ["added vip 10.0.0.2 queue 0:3"]);
  assert.deepEqual(plan.steps.map((s) => [s.cmd, s.table, s.ops]), [
    ["iptables", "mangle", [
      "-A nfqlb -d 10.0.0.2 -j NFQUEUE --queue-balance 0:3",
      "-A nfqlb-local -p icmp -d 10.0.0.2 -j NFQUEUE --queue-balance 0:3",
    ]],
    ["iptables", "raw", [
      "-A nfqlb-defrag -d 10.0.0.2 -j NOTRACK",
      "-A nfqlb-defrag-local -d 10.0.0.2 -j NOTRACK",
    ]],
  ]);
});

Deno.test("plan iptables: applying what is in place changes nothing and says kept", () => {
  const both = planIptables(saved(["10.0.0.1", "1000::1"]), req("apply", ["1000::1", "10.0.0.1"]));
  assert.deepEqual(both.lines, ["kept vip 1000::1 queue 0:3", "kept vip 10.0.0.1 queue 0:3"]);
  assert.deepEqual(both.steps, []);
  const fast = planIptables(
    saved(["10.0.0.1"], "--queue-balance 0:3", true),
    req("apply", ["10.0.0.1"], { ...Q03, fastpath: true }),
  );
  assert.deepEqual(fast.lines, ["kept vip 10.0.0.1 queue 0:3 fastpath"]);
  assert.deepEqual(fast.steps, []);
  const one = planIptables(
    saved(["10.0.0.1"], "--queue-num 0"),
    req("apply", ["10.0.0.1"], { first: 0, last: 0, fastpath: false }),
  );
  assert.deepEqual(one.lines, ["kept vip 10.0.0.1 queue 0"]);
  assert.deepEqual(one.steps, []);
});

Deno.test("plan iptables: other queues or fastpath than in place are refused, naming the VIPs", () => {
  const state = saved(["10.0.0.1", "1000::1"]);
  const plan = planIptables(state, req("apply", ["10.0.0.2"], Q47));
  assert.deepEqual(plan.steps, []);
  assert.deepEqual(plan.lines, []);
  assert.equal(
    plan.refusals[0],
    "the rules in place queue differently from the request (queue 4:7): " +
      "10.0.0.1 queue 0:3; 1000::1 queue 0:3",
  );
  assert.match(plan.refusals[1], /--replace/);
  const fp = planIptables(state, req("apply", ["10.0.0.1"], { ...Q03, fastpath: true }));
  assert.match(fp.refusals[0], /\(queue 0:3 fastpath\): 10\.0\.0\.1 queue 0:3; 1000::1 queue 0:3$/);
  assert.deepEqual(fp.steps, []);
  const nofp = planIptables(
    saved(["10.0.0.1"], "--queue-balance 0:3", true),
    req("apply", ["10.0.0.1"]),
  );
  assert.match(nofp.refusals[0], /\(queue 0:3\): 10\.0\.0\.1 queue 0:3 fastpath$/);
});

Deno.test("plan iptables: a VIP overlapping a different one in place is refused", () => {
  const plan = planIptables(saved(["10.0.0.0/24"]), req("apply", ["10.0.0.1"]));
  assert.deepEqual(plan.refusals, [
    "vip 10.0.0.1 overlaps vip 10.0.0.0/24 in place: delete one of them first",
  ]);
  assert.deepEqual(plan.steps, []);
});

Deno.test("plan iptables: --replace makes the rules exactly the request, saying each change", () => {
  const plan = planIptables(
    saved(["10.0.0.1", "10.0.0.2", "1000::1"]),
    req("apply", ["10.0.0.1", "10.0.0.3"], Q47, true),
  );
  assert.deepEqual(plan.refusals, []);
  assert.deepEqual(plan.lines, [
    "replaced vip 10.0.0.1 queue 4:7 (was queue 0:3)",
    "added vip 10.0.0.3 queue 4:7",
    "removed vip 10.0.0.2 queue 0:3",
    "removed vip 1000::1 queue 0:3",
    "removed chain ip6tables mangle nfqlb",
    "removed chain ip6tables mangle nfqlb-local",
    "removed chain ip6tables raw nfqlb-defrag",
    "removed chain ip6tables raw nfqlb-defrag-local",
  ]);
  const [mangle4, raw4, mangle6] = plan.steps;
  // In one transaction per table: the old queue rules out, the new in; the notrack rules stay.
  assert.deepEqual(mangle4.ops, [
    "-D nfqlb -d 10.0.0.2/32 -j NFQUEUE --queue-balance 0:3",
    "-D nfqlb -d 10.0.0.1/32 -j NFQUEUE --queue-balance 0:3",
    "-A nfqlb -d 10.0.0.1 -j NFQUEUE --queue-balance 4:7",
    "-A nfqlb -d 10.0.0.3 -j NFQUEUE --queue-balance 4:7",
    "-D nfqlb-local -d 10.0.0.2/32 -p icmp -j NFQUEUE --queue-balance 0:3",
    "-D nfqlb-local -d 10.0.0.1/32 -p icmp -j NFQUEUE --queue-balance 0:3",
    "-A nfqlb-local -p icmp -d 10.0.0.1 -j NFQUEUE --queue-balance 4:7",
    "-A nfqlb-local -p icmp -d 10.0.0.3 -j NFQUEUE --queue-balance 4:7",
  ]);
  // Undone, the deleted rules go back where they were.
  assert.deepEqual(mangle4.undo.slice(-2), [
    "-I nfqlb 1 -d 10.0.0.1/32 -j NFQUEUE --queue-balance 0:3",
    "-I nfqlb 2 -d 10.0.0.2/32 -j NFQUEUE --queue-balance 0:3",
  ]);
  assert.deepEqual(raw4.ops, [
    "-D nfqlb-defrag -d 10.0.0.2/32 -j NOTRACK",
    "-A nfqlb-defrag -d 10.0.0.3 -j NOTRACK",
    "-D nfqlb-defrag-local -d 10.0.0.2/32 -j NOTRACK",
    "-A nfqlb-defrag-local -d 10.0.0.3 -j NOTRACK",
  ]);
  assert.deepEqual(mangle6.ops, [
    "-D nfqlb -d 1000::1/128 -j NFQUEUE --queue-balance 0:3",
    "-D nfqlb-local -d 1000::1/128 -p ipv6-icmp -j NFQUEUE --queue-balance 0:3",
    "-D PREROUTING -j nfqlb",
    "-X nfqlb",
    "-D OUTPUT -j nfqlb-local",
    "-X nfqlb-local",
  ]);
  assert.deepEqual(mangle6.undo, [
    "-N nfqlb-local",
    "-I OUTPUT 1 -j nfqlb-local",
    "-N nfqlb",
    "-I PREROUTING 2 -j nfqlb",
    "-I nfqlb-local 1 -d 1000::1/128 -p ipv6-icmp -j NFQUEUE --queue-balance 0:3",
    "-I nfqlb 1 -d 1000::1/128 -j NFQUEUE --queue-balance 0:3",
  ]);
});

Deno.test("plan iptables: delete removes the VIPs given only, whatever their queues", () => {
  const plan = planIptables(
    saved(["10.0.0.1", "10.0.0.2", "1000::1"]),
    req("delete", ["10.0.0.2"], Q47),
  );
  assert.deepEqual(plan.lines, ["removed vip 10.0.0.2 queue 0:3"]);
  assert.deepEqual(plan.steps.map((s) => [s.cmd, s.table, s.ops]), [
    ["iptables", "mangle", [
      "-D nfqlb -d 10.0.0.2/32 -j NFQUEUE --queue-balance 0:3",
      "-D nfqlb-local -d 10.0.0.2/32 -p icmp -j NFQUEUE --queue-balance 0:3",
    ]],
    ["iptables", "raw", [
      "-D nfqlb-defrag -d 10.0.0.2/32 -j NOTRACK",
      "-D nfqlb-defrag-local -d 10.0.0.2/32 -j NOTRACK",
    ]],
  ]);
});

Deno.test("plan iptables: deleting an absent VIP says so and changes nothing", () => {
  for (const state of [saved(["10.0.0.1", "1000::1"]), saved([])]) {
    const plan = planIptables(state, req("delete", ["10.0.0.2", "2000::/64"]));
    assert.deepEqual(plan.lines, ["absent vip 10.0.0.2", "absent vip 2000::/64"]);
    assert.deepEqual(plan.steps, []);
  }
});

Deno.test("plan iptables: the last VIP of a family takes its chains; the other family stays", () => {
  const plan = planIptables(saved(["10.0.0.1", "1000::1"]), req("delete", ["10.0.0.1"]));
  assert.deepEqual(plan.lines, [
    "removed vip 10.0.0.1 queue 0:3",
    "removed chain iptables mangle nfqlb",
    "removed chain iptables mangle nfqlb-local",
    "removed chain iptables raw nfqlb-defrag",
    "removed chain iptables raw nfqlb-defrag-local",
  ]);
  assert.deepEqual(plan.steps.map((s) => s.cmd), ["iptables", "iptables"]);
  assert.deepEqual(plan.steps[0].ops.slice(2), [
    "-D PREROUTING -j nfqlb",
    "-X nfqlb",
    "-D OUTPUT -j nfqlb-local",
    "-X nfqlb-local",
  ]);
});

Deno.test("plan iptables: rules nfqlb did not write in its chains are never touched", () => {
  const state = saved(
    ["10.0.0.1"],
    "--queue-balance 0:3",
    false,
    "-A nfqlb -s 1.1.1.1/32 -j ACCEPT",
  );
  const apply = planIptables(state, req("apply", ["10.0.0.2"]));
  assert.deepEqual(apply.lines, ["added vip 10.0.0.2 queue 0:3"]);
  const del = planIptables(state, req("delete", ["10.0.0.1"]));
  assert.deepEqual(del.lines.slice(0, 2), [
    "removed vip 10.0.0.1 queue 0:3",
    "kept chain iptables mangle nfqlb (it holds 1 rule nfqlb did not write)",
  ]);
  assert.ok(!del.steps[0].ops.some((o) => o.includes("1.1.1.1") || o === "-X nfqlb"));
  assert.ok(!del.steps[0].ops.includes("-D PREROUTING -j nfqlb"));
  assert.ok(del.steps[0].ops.includes("-X nfqlb-local"));
});

Deno.test("plan iptables: a VIP with rules missing is repaired, a missing jump added", () => {
  const state = saved(["10.0.0.1"]);
  const mangle = state.get("iptables mangle")!;
  mangle.set("nfqlb-local", []);
  mangle.set("PREROUTING", ["-p tcp -m tcp --dport 22 -j ACCEPT"]);
  const plan = planIptables(state, req("apply", ["10.0.0.1"]));
  assert.deepEqual(plan.lines, [
    "repaired vip 10.0.0.1 queue 0:3 (1 of 4 rules were missing)",
    "added jump iptables mangle PREROUTING -j nfqlb",
  ]);
  assert.deepEqual(plan.steps[0].ops, [
    "-A nfqlb-local -p icmp -d 10.0.0.1 -j NFQUEUE --queue-balance 0:3",
    "-A PREROUTING -j nfqlb",
  ]);
  assert.equal(plan.steps.length, 1);
});

// -------------------------------------------------------------------------------------------
// nft style

/**
 * `nft -j list table inet nfqlb` of a table `ruleset --style=nft` wrote (nft 1.0.6's form);
 * without `queue`, without its queue rules.
 */
function nftJson(v4: unknown[], v6: unknown[], queue?: unknown, fastpath = false): string {
  const set = (name: string, elem: unknown[]) => ({
    set: {
      family: "inet",
      name,
      table: "nfqlb",
      type: name === "ipv4-vips" ? "ipv4_addr" : "ipv6_addr",
      handle: 5,
      flags: ["interval"],
      ...(elem.length > 0 ? { elem } : {}),
    },
  });
  const chain = (name: string) => ({ chain: { family: "inet", table: "nfqlb", name, handle: 1 } });
  const match = (left: unknown, right: unknown) => ({ match: { op: "==", left, right } });
  const daddr = (p: string, s: string) => match({ payload: { protocol: p, field: "daddr" } }, s);
  const mark = fastpath ? [match({ meta: { key: "mark" } }, 0)] : [];
  let handle = 7;
  const rule = (chain: string, expr: unknown[]) => ({
    rule: { family: "inet", table: "nfqlb", chain, handle: handle++, expr },
  });
  const counter = { counter: { packets: 0, bytes: 0 } };
  return JSON.stringify({
    nftables: [
      { metainfo: { version: "1.0.6", json_schema_version: 1 } },
      { table: { family: "inet", name: "nfqlb", handle: 1 } },
      set("ipv4-vips", v4),
      set("ipv6-vips", v6),
      ...["nfqlb", "nfqlb-local", "defrag", "defrag-local"].map(chain),
      ...(queue === undefined ? [] : [
        rule("nfqlb", [...mark, daddr("ip", "@ipv4-vips"), counter, queue]),
        rule("nfqlb", [...mark, daddr("ip6", "@ipv6-vips"), counter, queue]),
        rule("nfqlb-local", [
          match({ meta: { key: "l4proto" } }, "icmp"),
          daddr("ip", "@ipv4-vips"),
          counter,
          queue,
        ]),
      ]),
      rule("defrag", [daddr("ip", "@ipv4-vips"), { notrack: null }]),
    ],
  });
}

const Q03_JSON = { queue: { num: { range: [0, 3] } } };

Deno.test("parseNftState: VIPs of both sets, the queues, fastpath, what is not nfqlb's", () => {
  const s = parseNftState(
    nftJson(
      ["10.0.0.1", { prefix: { addr: "10.1.0.0", len: 16 } }, {
        range: ["10.0.0.5", "10.0.0.9"],
      }],
      ["1000::1"],
      Q03_JSON,
      true,
    ),
  );
  assert.deepEqual(s.vips.map((v) => v.text), ["10.0.0.1", "10.1.0.0/16", "1000::1"]);
  assert.deepEqual(s.foreign, ['{"range":["10.0.0.5","10.0.0.9"]}']);
  assert.deepEqual(s.spec, { first: 0, last: 3, fastpath: true });
  assert.deepEqual(s.problems, []);
  assert.deepEqual(parseNftState(nftJson([], [], { queue: { num: 2 } })).spec, {
    first: 2,
    last: 2,
    fastpath: false,
  });
  assert.deepEqual(parseNftState(nftJson([], [], { queue: null })).spec?.first, 0);
  // Captured with `accept` for the queue statement: no queue rule, so not nfqlb's shape, and
  // the accept rules are not nfqlb's.
  const accept = parseNftState(nftJson(["10.0.0.1"], [], { accept: null }));
  assert.deepEqual(accept.problems, ["no queue rule in chain nfqlb"]);
  assert.deepEqual(accept.foreignObjects, [
    "rule nfqlb handle 7",
    "rule nfqlb handle 8",
    "rule nfqlb-local handle 9",
  ]);
  // Queue rules with flags or other matches are not nfqlb's either.
  const flags = parseNftState(nftJson([], [], { queue: { num: 2, flags: ["bypass"] } }));
  assert.deepEqual(flags.foreignObjects.length, 3);
  assert.deepEqual(flags.problems, ["no queue rule in chain nfqlb"]);
  assert.deepEqual(parseNftState(nftJson([], [], Q03_JSON)).foreignObjects, []);
  assert.throws(() => parseNftState("{}"), /no `nftables` array/);
});

Deno.test("plan nft: apply to nothing writes the table with the VIPs", () => {
  const plan = planNft(NO_NFT_TABLE, req("apply", ["10.0.0.1", "1000::1"]));
  assert.deepEqual(plan.lines, [
    "added vip 10.0.0.1 queue 0:3",
    "added vip 1000::1 queue 0:3",
    "added table inet nfqlb",
  ]);
  assert.deepEqual(plan.steps, [
    nftRuleset({ vips: ["10.0.0.1", "1000::1"], first: 0, last: 3, fastpath: false }),
  ]);
});

Deno.test("plan nft: apply C to A + B6 adds the element only; again, kept", () => {
  const state = parseNftState(nftJson(["10.0.0.1"], ["1000::1"], Q03_JSON));
  const plan = planNft(state, req("apply", ["10.0.0.2", "2000::/64"]));
  assert.deepEqual(plan.lines, ["added vip 10.0.0.2 queue 0:3", "added vip 2000::/64 queue 0:3"]);
  assert.deepEqual(plan.steps, [
    "add element inet nfqlb ipv4-vips { 10.0.0.2 }\n" +
    "add element inet nfqlb ipv6-vips { 2000::/64 }\n",
  ]);
  const again = planNft(state, req("apply", ["10.0.0.1", "1000::1"]));
  assert.deepEqual(again.lines, ["kept vip 10.0.0.1 queue 0:3", "kept vip 1000::1 queue 0:3"]);
  assert.deepEqual(again.steps, []);
});

Deno.test("plan nft: other queues refused; --replace rewrites the table, saying each change", () => {
  const state = parseNftState(nftJson(["10.0.0.1"], ["1000::1"], Q03_JSON));
  const refused = planNft(state, req("apply", ["10.0.0.2"], Q47));
  assert.match(refused.refusals[0], /\(queue 4:7\): 10\.0\.0\.1 queue 0:3; 1000::1 queue 0:3$/);
  assert.deepEqual(refused.steps, []);
  const plan = planNft(state, req("apply", ["10.0.0.1", "10.0.0.2"], Q47, true));
  assert.deepEqual(plan.lines, [
    "replaced vip 10.0.0.1 queue 4:7 (was queue 0:3)",
    "added vip 10.0.0.2 queue 4:7",
    "removed vip 1000::1 queue 0:3",
    "replaced table inet nfqlb",
  ]);
  assert.deepEqual(plan.steps, [
    "table inet nfqlb {}\ndelete table inet nfqlb\n" +
    nftRuleset({ vips: ["10.0.0.1", "10.0.0.2"], first: 4, last: 7, fastpath: false }),
  ]);
  // Same queues: --replace only takes out what was not listed.
  const same = planNft(state, req("apply", ["10.0.0.1"], Q03, true));
  assert.deepEqual(same.lines, ["kept vip 10.0.0.1 queue 0:3", "removed vip 1000::1 queue 0:3"]);
  assert.deepEqual(same.steps, ["delete element inet nfqlb ipv6-vips { 1000::1 }\n"]);
});

Deno.test("plan nft: a table not as nfqlb writes it is refused (--replace rewrites it)", () => {
  const state = parseNftState(nftJson(["10.0.0.1"], []));
  const plan = planNft(state, req("apply", ["10.0.0.2"]));
  assert.deepEqual(plan.refusals, [
    "table inet nfqlb is not as nfqlb writes it (no queue rule in chain nfqlb): --replace rewrites it",
  ]);
  assert.equal(planNft(state, req("apply", ["10.0.0.2"], Q03, true)).steps.length, 1);
  // With rules nfqlb did not write (accept for queue), the rewrite would remove them: refused.
  const accept = parseNftState(nftJson(["10.0.0.1"], [], { accept: null }));
  assert.deepEqual(planNft(accept, req("apply", ["10.0.0.2"], Q03, true)).refusals, [
    "table inet nfqlb holds 3 rules nfqlb did not write: rule nfqlb handle 7," +
    " rule nfqlb handle 8, rule nfqlb-local handle 9",
    "  writing it anew as nfqlb writes it (no queue rule in chain nfqlb) would remove them:" +
    " remove them first (`nft -a list table inet nfqlb` shows the handles)",
  ]);
});

Deno.test("plan nft: delete removes the elements given, the table with the last; absent said", () => {
  const state = parseNftState(nftJson(["10.0.0.1", "10.0.0.2"], ["1000::1"], Q03_JSON));
  const one = planNft(state, req("delete", ["10.0.0.2", "10.0.0.3"]));
  assert.deepEqual(one.lines, ["removed vip 10.0.0.2 queue 0:3", "absent vip 10.0.0.3"]);
  assert.deepEqual(one.steps, ["delete element inet nfqlb ipv4-vips { 10.0.0.2 }\n"]);
  const absent = planNft(state, req("delete", ["10.0.0.3"]));
  assert.deepEqual(absent.lines, ["absent vip 10.0.0.3"]);
  assert.deepEqual(absent.steps, []);
  const all = planNft(state, req("delete", ["10.0.0.1", "10.0.0.2", "1000::1"]));
  assert.deepEqual(all.lines.at(-1), "removed table inet nfqlb");
  assert.deepEqual(all.steps, ["delete table inet nfqlb\n"]);
  assert.deepEqual(planNft(NO_NFT_TABLE, req("delete", ["10.0.0.1"])).steps, []);
  // An element nfqlb did not write keeps the table.
  const range = parseNftState(
    nftJson(["10.0.0.1", { range: ["10.0.0.5", "10.0.0.9"] }], [], Q03_JSON),
  );
  const last = planNft(range, req("delete", ["10.0.0.1"]));
  assert.deepEqual(last.lines, [
    "removed vip 10.0.0.1 queue 0:3",
    'kept table inet nfqlb (it holds 1 element nfqlb did not write: element {"range":["10.0.0.5","10.0.0.9"]})',
  ]);
  assert.deepEqual(last.steps, ["delete element inet nfqlb ipv4-vips { 10.0.0.1 }\n"]);
});

Deno.test("plan iptables: deleting only absent VIPs changes nothing, even leftover empty chains", () => {
  // IPv6 chains and jumps without rules (left by hand, or by a step undone by hand).
  const state = saved(["10.0.0.1", "1000::1"]);
  for (const t of ["mangle", "raw"]) {
    const table = state.get(`ip6tables ${t}`)!;
    for (const c of ["nfqlb", "nfqlb-local", "nfqlb-defrag", "nfqlb-defrag-local"]) {
      if (table.has(c)) table.set(c, []);
    }
  }
  const absent = planIptables(state, req("delete", ["2000::1", "10.0.0.9"]));
  assert.deepEqual(absent.lines, ["absent vip 2000::1", "absent vip 10.0.0.9"]);
  assert.deepEqual(absent.steps, []);
  // A family's chains go only when this command removes its last VIP: 10.0.0.1's do, the empty
  // IPv6 chains stay.
  const v4 = planIptables(state, req("delete", ["10.0.0.1", "2000::1"]));
  assert.deepEqual(v4.lines.slice(0, 3), [
    "removed vip 10.0.0.1 queue 0:3",
    "absent vip 2000::1",
    "removed chain iptables mangle nfqlb",
  ]);
  assert.deepEqual(v4.steps.map((s) => s.cmd), ["iptables", "iptables"]);
});

/**
 * `nft -j list table inet nfqlb` (nft 1.0.6) of `ruleset --vip=10.0.0.1,1000::1 --style=nft
 * --fastpath` as written in a namespace with `accept` for the queue statement, then
 * `nft add chain inet nfqlb operator-own`, `nft add rule inet nfqlb nfqlb log prefix operator`,
 * `nft add rule inet nfqlb operator-own counter accept`; nfqlb's four queue rules get their
 * `queue to 0-3` back here.
 */
const FOREIGN_JSON = Deno.readTextFileSync(
  new URL("../../testdata/ruleset/nft_foreign.json", import.meta.url),
).replaceAll(
  /("@ipv[46]-vips"\}\}, \{"counter": \{"packets": 0, "bytes": 0\}\}, )\{"accept": null\}/g,
  '$1{"queue": {"num": {"range": [0, 3]}}}',
);
const FOREIGN_LINE = "kept table inet nfqlb (it holds 1 chain and 2 rules nfqlb did not write:" +
  " chain operator-own, rule nfqlb handle 16, rule operator-own handle 17)";
const Q03F: QueueSpec = { ...Q03, fastpath: true };

Deno.test("plan nft: delete keeps the table and chain nfqlb did not write, deleting elements only", () => {
  const state = parseNftState(FOREIGN_JSON);
  assert.deepEqual(state.spec, Q03F);
  assert.deepEqual(state.problems, []);
  assert.deepEqual(state.vips.map((v) => v.text), ["10.0.0.1", "1000::1"]);
  assert.deepEqual(state.foreignObjects, [
    "chain operator-own",
    "rule nfqlb handle 16",
    "rule operator-own handle 17",
  ]);
  const one = planNft(state, req("delete", ["10.0.0.1"]));
  assert.deepEqual(one.lines, ["removed vip 10.0.0.1 queue 0:3 fastpath"]);
  assert.deepEqual(one.steps, ["delete element inet nfqlb ipv4-vips { 10.0.0.1 }\n"]);
  const all = planNft(state, req("delete", ["10.0.0.1", "1000::1"]));
  assert.deepEqual(all.lines, [
    "removed vip 10.0.0.1 queue 0:3 fastpath",
    "removed vip 1000::1 queue 0:3 fastpath",
    FOREIGN_LINE,
  ]);
  assert.deepEqual(all.steps, [
    "delete element inet nfqlb ipv4-vips { 10.0.0.1 }\n" +
    "delete element inet nfqlb ipv6-vips { 1000::1 }\n",
  ]);
  // Also with nothing but the log rule nfqlb did not write.
  const logOnly = parseNftState(
    JSON.stringify({
      nftables: (JSON.parse(FOREIGN_JSON).nftables as Record<string, Record<string, unknown>>[])
        .filter((i) => i.chain?.name !== "operator-own" && i.rule?.chain !== "operator-own"),
    }),
  );
  const del = planNft(logOnly, req("delete", ["10.0.0.1", "1000::1"]));
  assert.equal(del.steps.length, 1);
  assert.doesNotMatch(del.steps[0], /delete table/);
  assert.match(del.lines.at(-1)!, /^kept table inet nfqlb \(it holds 1 rule nfqlb did not write: /);
});

Deno.test("plan nft: deleting only absent VIPs changes nothing, even a table without VIPs", () => {
  for (
    const state of [
      parseNftState(nftJson([], [], Q03_JSON)),
      parseNftState(FOREIGN_JSON.replace(/, "elem": \[[^\]]*\]/g, "")),
    ]
  ) {
    assert.deepEqual(state.vips, []);
    const plan = planNft(state, req("delete", ["10.0.0.9"]));
    assert.deepEqual(plan.lines, ["absent vip 10.0.0.9"]);
    assert.deepEqual(plan.steps, []);
  }
});

Deno.test("plan nft: --replace refuses to rewrite a table holding what nfqlb did not write", () => {
  const state = parseNftState(FOREIGN_JSON);
  const plan = planNft(state, req("apply", ["10.0.0.2"], Q47, true));
  assert.deepEqual(plan.steps, []);
  assert.deepEqual(plan.lines, []);
  assert.deepEqual(plan.refusals, [
    "table inet nfqlb holds 1 chain and 2 rules nfqlb did not write: chain operator-own," +
    " rule nfqlb handle 16, rule operator-own handle 17",
    "  writing it anew for queue 4:7 would remove them: remove them first" +
    " (`nft -a list table inet nfqlb` shows the handles), or request the queues in place" +
    " (queue 0:3 fastpath)",
  ]);
  // Without VIPs, other queues are a rewrite too (no --replace needed): refused the same way.
  const empty = parseNftState(FOREIGN_JSON.replace(/, "elem": \[[^\]]*\]/g, ""));
  assert.deepEqual(planNft(empty, req("apply", ["10.0.0.2"], Q47)).refusals, plan.refusals);
  // The same queues need no rewrite: the elements change, the rest stays.
  const same = planNft(state, req("apply", ["10.0.0.2"], Q03F, true));
  assert.deepEqual(same.refusals, []);
  assert.deepEqual(same.lines, [
    "added vip 10.0.0.2 queue 0:3 fastpath",
    "removed vip 10.0.0.1 queue 0:3 fastpath",
    "removed vip 1000::1 queue 0:3 fastpath",
  ]);
  assert.deepEqual(same.steps, [
    "delete element inet nfqlb ipv4-vips { 10.0.0.1 }\n" +
    "delete element inet nfqlb ipv6-vips { 1000::1 }\n" +
    "add element inet nfqlb ipv4-vips { 10.0.0.2 }\n",
  ]);
});
