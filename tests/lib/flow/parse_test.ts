/**
 * Flow parsing (docs/COMPATIBILITY.md#flows; #differences D3 #4 #11) and printing (6.3, 6.9).
 * Expected values are the spec's examples and the seeds' real outputs.
 */
import { CIDRS_ACCEPTED, PORTS_ACCEPTED, PROTOCOLS_ACCEPTED } from "../../../lib/hints/accepted.ts";
import assert from "node:assert/strict";
import { F2_FIELDS, F2_JSON } from "../../../testkit/spec_examples.ts";
import {
  checkName,
  checkUdpencap,
  type FlowFields,
  helperFlow,
  isHelperFlow,
  MATCH_RE,
  parseCidr,
  parseFlow,
  parseMatch,
  parsePortRanges,
  parseProtocols,
} from "../../../lib/flow/parse.ts";
import {
  formatCidr,
  formatFlow,
  formatFlowList,
  formatMatch,
  formatNameList,
  formatPortRange,
  jsonString,
} from "../../../lib/flow/format.ts";
import type { Flow } from "../../../lib/flow/types.ts";
import { PROTO_SCTP, PROTO_TCP, PROTO_UDP } from "../../../lib/flow/types.ts";

function flowOf(fields: FlowFields): Flow {
  const r = parseFlow(fields);
  if (!r.ok) throw new Error(`unexpected error ${r.error}`);
  return r.flow;
}

function errorOf(fields: FlowFields): string {
  const r = parseFlow(fields);
  assert.equal(r.ok, false, `expected an error for ${JSON.stringify(fields)}`);
  return (r as { error: string }).error;
}

const base = { name: "f", target: "lb" };
const ports = (s: string) => parsePortRanges(s)?.map(formatPortRange);
const cidr = (s: string) => {
  const c = parseCidr(s);
  return c === undefined ? undefined : formatCidr(c);
};
const matches = (s: string) => {
  const r = parseMatch(s);
  return r.ok ? r.value?.map(formatMatch) : r.error;
};

Deno.test("6.9: the f2 example request gives the exact JSON object", () => {
  assert.equal(formatFlow(flowOf(F2_FIELDS), 0), F2_JSON);
});

Deno.test("6.9: full list with two flows, single flow, empty list", () => {
  const f1 = flowOf({ name: "f1", target: "lb-a" });
  const list = formatFlowList([
    { flow: flowOf(F2_FIELDS), matchesCount: 0 },
    { flow: f1, matchesCount: 0 },
  ]);
  assert.equal(
    list,
    "[" + F2_JSON + ",\n" +
      `{
  "name": "f1",
  "priority": 0,
  "matches_count": 0,
  "user_ref": "lb-a"
}]\n`,
  );
  assert.equal(formatFlowList([]), "[]\n");
  assert.ok(!formatFlow(f1, 0).endsWith("\n"));
});

Deno.test("6.9: trace flows omit user_ref; matches_count and priority are unsigned", () => {
  const t = flowOf({ name: "tr", priority: "-7" });
  assert.equal(
    formatFlow(t, 4294967295, "trace"),
    `{\n  "name": "tr",\n  "priority": 4294967289,\n  "matches_count": 4294967295\n}`,
  );
});

Deno.test("seed 002: the Kubernetes frontend flow-list output", () => {
  const f = flowOf({
    name: "tshm-stream-a-i-flow-a-z-tcp",
    target: "tshm-stream-a-i",
    priority: "1",
    protocols: "tcp",
    dsts: "20.0.0.1/32,2000::1/128",
    dports: "4000",
  });
  assert.equal(
    formatFlowList([{ flow: f, matchesCount: 0 }]),
    `[{
  "name": "tshm-stream-a-i-flow-a-z-tcp",
  "priority": 1,
  "protocols": [ "tcp" ],
  "dests": [
    "::ffff:20.0.0.1/128",
    "2000::1/128"
  ],
  "dports": [
    "4000"
  ],
  "matches_count": 0,
  "user_ref": "tshm-stream-a-i"
}]
`,
  );
});

Deno.test("seed 000: udpencap helper + main flow listing (1.2.0 adds matches_count)", () => {
  // The seed's listing predates 1.2.0's matches_count line; otherwise verbatim.
  const main = flowOf({
    name: "sctp",
    target: "nfqlb",
    priority: "100",
    protocols: "sctp",
    dsts: "10.0.0.0/32,1000::/128",
    dports: "6000",
    udpencap: "9899",
  });
  const helper = helperFlow(main);
  assert.ok(isHelperFlow(helper));
  assert.ok(!isHelperFlow(main));
  assert.equal(
    formatFlowList([{ flow: helper, matchesCount: 0 }, { flow: main, matchesCount: 0 }]),
    `[{
  "name": "#sctp",
  "priority": 100,
  "protocols": [ "udp" ],
  "dests": [
    "::ffff:10.0.0.0/128",
    "1000::/128"
  ],
  "dports": [
    "9899"
  ],
  "udpencap": 9899,
  "matches_count": 0,
  "user_ref": "NULL"
},
{
  "name": "sctp",
  "priority": 100,
  "protocols": [ "sctp" ],
  "dests": [
    "::ffff:10.0.0.0/128",
    "1000::/128"
  ],
  "dports": [
    "6000"
  ],
  "udpencap": 9899,
  "matches_count": 0,
  "user_ref": "nfqlb"
}]
`,
  );
  assert.equal(helper.srcs, main.srcs);
  assert.equal(helper.sports, undefined);
  assert.equal(helper.match, undefined);
  assert.equal(helper.target, undefined);
});

Deno.test("6.2 protocols: case-insensitive, repeats, fixed order, empty = absent", () => {
  assert.deepEqual(parseProtocols("udp,TCP,tcp"), { ok: true, value: PROTO_TCP | PROTO_UDP });
  assert.deepEqual(parseProtocols(" sctp , ,Udp"), { ok: true, value: PROTO_SCTP | PROTO_UDP });
  assert.deepEqual(parseProtocols(""), { ok: true, value: undefined });
  assert.deepEqual(parseProtocols(", ,"), { ok: true, value: undefined });
  assert.equal(flowOf({ ...base, protocols: "" }).protocols, undefined);
  assert.match(
    formatFlow(flowOf({ ...base, protocols: "sctp,udp,tcp" }), 0),
    /"protocols": \[ "tcp", "udp", "sctp" \],/,
  );
  assert.equal(errorOf({ ...base, protocols: "tcp,icmp" }), "Invalid protocols");
  assert.equal(errorOf({ ...base, protocols: "tcp;udp" }), "Invalid protocols");
  assert.equal(errorOf({ ...base, protocols: "tcp\tudp" }), "Invalid protocols");
});

Deno.test("6.2/6.3 CIDRs: IPv4 +96, masking, sscanf prefix, printing", () => {
  assert.equal(cidr("10.0.0.1/24"), "::ffff:10.0.0.0/120");
  assert.equal(cidr("0.0.0.0/0"), "::ffff:0.0.0.0/96");
  assert.equal(cidr("2001:db8:0:0:1:0:0:1/128"), "2001:db8::1:0:0:1/128");
  assert.equal(cidr("1000::/64"), "1000::/64");
  assert.equal(cidr("1000::1/64"), "1000::/64");
  assert.equal(cidr("::/0"), "::/0");
  assert.equal(cidr("192.168.1.1/32"), "::ffff:192.168.1.1/128");
  assert.equal(cidr("10.1.2.3/9"), "::ffff:10.0.0.0/105");
  // sscanf("%u"): sign, trailing garbage ignored.
  assert.equal(cidr("10.0.0.1/+24"), "::ffff:10.0.0.0/120");
  assert.equal(cidr("10.0.0.1/24abc"), "::ffff:10.0.0.0/120");
  assert.equal(cidr("1000::/64/3"), "1000::/64");
  // Negative wraps modulo 2^32 before the +96 (u32 arithmetic): -96 + 96 = 0.
  assert.equal(cidr("10.0.0.1/-96"), "::/0");
  assert.equal(cidr("::1/-1"), undefined);
  // Limits and syntax errors.
  assert.equal(cidr("10.0.0.1/32"), "::ffff:10.0.0.1/128");
  assert.equal(cidr("10.0.0.1/33"), undefined);
  assert.equal(cidr("::1/129"), undefined);
  assert.equal(cidr("::1/128"), "::1/128");
  assert.equal(cidr("10.0.0.1"), undefined);
  assert.equal(cidr("10.0.0.1/"), undefined);
  assert.equal(cidr("10.0.0.1/x"), undefined);
  assert.equal(cidr("10.0.0/8"), undefined);
  assert.equal(cidr("10.0.0.256/8"), undefined);
  assert.equal(cidr("fe80::1%eth0/64"), undefined);
  assert.equal(cidr("[::1]/64"), undefined);
  assert.equal(cidr("/24"), undefined);
  // The rule is literal: no ':' means "prefix ::ffff: and add 96", even for hex words.
  assert.equal(cidr("abc/1"), "::128.0.0.0/97"); // IPv4-compatible form of inet_ntop
});

Deno.test("6.2 dsts/srcs lists: empty = absent, ≤ 32 entries, duplicates kept, error texts", () => {
  assert.equal(flowOf({ ...base, dsts: "" }).dsts, undefined);
  assert.equal(flowOf({ ...base, srcs: " , " }).srcs, undefined);
  const dup = flowOf({ ...base, dsts: "10.0.0.1/32 10.0.0.1/32" }).dsts!;
  assert.deepEqual(dup.map(formatCidr), ["::ffff:10.0.0.1/128", "::ffff:10.0.0.1/128"]);
  const list = (n: number) => Array.from({ length: n }, (_, i) => `10.0.0.${i}/32`).join(",");
  assert.equal(flowOf({ ...base, dsts: list(32) }).dsts!.length, 32);
  assert.equal(errorOf({ ...base, dsts: list(33) }), "Invalid dsts");
  assert.equal(errorOf({ ...base, srcs: list(33) }), "Invalid srcs");
  assert.equal(errorOf({ ...base, dsts: "10.0.0.1/32,xyz/1" }), "Invalid dsts");
  assert.equal(errorOf({ ...base, srcs: "10.0.0.1" }), "Invalid srcs");
});

Deno.test("6.2 ports: merge overlapping and adjacent ranges; malformed tokens refused (D64)", () => {
  assert.deepEqual(ports("80,80,81"), ["80-81"]);
  assert.deepEqual(ports("10-20,21-30,32"), ["10-30", "32"]);
  assert.deepEqual(ports("3,2,1"), ["1-3"]);
  assert.deepEqual(ports("5-5"), ["5"]);
  assert.deepEqual(ports("80,22,23,100-200,150-300,1000"), ["22-23", "80", "100-300", "1000"]);
  assert.deepEqual(ports("1-65535"), ["1-65535"]);
  assert.deepEqual(ports("100-200,150"), ["100-200"]);
  assert.deepEqual(ports("080"), ["80"]);
  assert.deepEqual(ports("80, 443"), ["80", "443"]);
  assert.deepEqual(ports(""), []);
  assert.deepEqual(ports(" , "), []);
  for (const bad of ["0", "0-5", "9-8", "65536", "1-65536", "x", "-", "-5", "5--3", "a-5"]) {
    assert.equal(ports(bad), undefined, bad);
  }
  // 1.2.0's sscanf("%u-%u") ignored trailing text: these were 80, 80, 7-9 and 7 there.
  for (const bad of ["80-", "80x", "7-9-11", "+7", "80-70", "70000", "-80", "1 -", "80,443-"]) {
    assert.equal(ports(bad), undefined, bad);
  }
});

Deno.test("6.2 ports, protocols, CIDRs: the failure names the bad value and the accepted forms", () => {
  const detail = (f: FlowFields) => {
    const r = parseFlow(f);
    assert.ok(!r.ok);
    return r.detail;
  };
  assert.equal(
    detail({ ...base, protocols: "tcp", dports: "80,80-" }),
    `dports [80-]: ${PORTS_ACCEPTED}`,
  );
  assert.equal(detail({ ...base, protocols: "tcp", sports: "x" }), `sports [x]: ${PORTS_ACCEPTED}`);
  assert.equal(
    detail({ ...base, protocols: "udp tcpp" }),
    `protocols [tcpp]: ${PROTOCOLS_ACCEPTED}`,
  );
  // The field is named; a bare address gets its one-address prefix suggested.
  assert.equal(
    detail({ ...base, dsts: "10.0.0.1/32,10.0.0.2" }),
    `dsts [10.0.0.2]: ${CIDRS_ACCEPTED}; one address is 10.0.0.2/32`,
  );
  assert.equal(
    detail({ ...base, srcs: "1000::1" }),
    `srcs [1000::1]: ${CIDRS_ACCEPTED}; one address is 1000::1/128`,
  );
  assert.equal(detail({ ...base, dsts: "10.0.0.0/33" }), `dsts [10.0.0.0/33]: ${CIDRS_ACCEPTED}`);
  const many = Array.from({ length: 33 }, (_, i) => `10.0.0.${i}/32`).join(",");
  assert.equal(detail({ ...base, srcs: many }), `srcs: 33 entries, at most 32; ${CIDRS_ACCEPTED}`);
});

Deno.test("6.2 ports: errors (sports fixed, #3) and the empty set printing", () => {
  assert.equal(errorOf({ ...base, dports: "0" }), "Invalid dports");
  assert.equal(errorOf({ ...base, sports: "0" }), "Invalid sports");
  const f = flowOf({ ...base, protocols: "tcp", dports: "" });
  assert.deepEqual(f.dports, []);
  assert.match(formatFlow(f, 0), /\n {2}"dports": \[\n\n {2}\],\n/);
});

Deno.test("6.2 match: normalised forms of 6.3 and strtol base-0 numbers", () => {
  assert.deepEqual(matches("tcp[2:2]=5001"), ["tcp[2:2]=0x1389"]);
  assert.deepEqual(matches("udp[0:4] & 0xffff0000 = 0x13890000"), [
    "udp[0:4]&0xffff0000=0x13890000",
  ]);
  assert.deepEqual(matches("tcp[2:2]=5001, udp[0:4] & 0xffff0000 = 0x13890000"), [
    "tcp[2:2]=0x1389",
    "udp[0:4]&0xffff0000=0x13890000",
  ]);
  // The three equivalent statements of seed 000.
  assert.deepEqual(matches("tcp[2:2] = 5001"), ["tcp[2:2]=0x1389"]);
  assert.deepEqual(matches("tcp[0:4] & 0x0000ffff = 5001"), ["tcp[0:4]&0xffff=0x1389"]);
  assert.deepEqual(matches("tcp[2:1]=0x13, tcp[3:1]=0x89"), ["tcp[2:1]=0x13", "tcp[3:1]=0x89"]);
  // Leading 0 = octal.
  assert.deepEqual(matches("tcp[010:1]=010"), ["tcp[8:1]=0x8"]);
  assert.deepEqual(matches("tcp[08:1]=08"), ["tcp[0:1]=0x0"]);
  // u32 truncation.
  assert.deepEqual(matches("tcp[0:4]=0x1ffffffff"), ["tcp[0:4]=0xffffffff"]);
  assert.deepEqual(matches("tcp[0:4]=99999999999"), ["tcp[0:4]=0x4876e7ff"]);
  assert.deepEqual(matches("tcp[0:4]&0x1ffffffff=1"), ["tcp[0:4]&0xffffffff=0x1"]);
  // Mask 0 = no mask.
  assert.deepEqual(matches("tcp[0:1]&0x0=1"), ["tcp[0:1]=0x1"]);
  assert.deepEqual(matches("tcp[0:1] &0x00= 0"), ["tcp[0:1]=0x0"]);
  // Empty statements are skipped; none at all = absent.
  assert.deepEqual(matches("tcp[0:1]=1,,"), ["tcp[0:1]=0x1"]);
  assert.equal(matches(""), undefined);
  assert.equal(matches(" , "), undefined);
  assert.equal(flowOf({ ...base, match: "" }).match, undefined);
});

Deno.test("6.2 match: regexp rejections", () => {
  for (
    const bad of [
      "tcp [2:2]=1", // space between protocol and [
      "tcp[ 2:2]=1", // space after [
      "tcp[2:2]=1 ", // trailing space
      "tcp[2:2]=0xAB", // uppercase hex
      "TCP[2:2]=1",
      "icmp[0:1]=1",
      "tcp[2:3]=1",
      "tcp[2:2 ]=1",
      "tcp[2]=1",
      "tcp[-1:1]=1",
      "tcp[2:2]=-1",
      "tcp[2:2]&5=1",
      "tcp[2:2]==1",
      "tcp[2:2]=1\n",
      "tcp[0x2:2]=1",
      "tcp[2:2]=0x",
    ]
  ) {
    assert.equal(matches(bad), `Match [${bad}] Doesn't match regexp`, bad);
  }
  assert.ok(MATCH_RE.test("sctp[0:4]  &  0xff  =  0xff"));
  assert.ok(MATCH_RE.test("udp[007 : 1]=7"));
});

Deno.test("6.2 match: header bounds are exact (#11) and statements are ≤ 64 chars", () => {
  assert.deepEqual(matches("tcp[16:4]=1"), ["tcp[16:4]=0x1"]);
  assert.equal(matches("tcp[17:4]=1"), "Match [tcp[17:4]=1] Out of bounds");
  assert.deepEqual(matches("udp[4:4]=1"), ["udp[4:4]=0x1"]);
  assert.equal(matches("udp[5:4]=1"), "Match [udp[5:4]=1] Out of bounds");
  assert.deepEqual(matches("sctp[11:1]=1"), ["sctp[11:1]=0x1"]);
  assert.equal(matches("sctp[12:1]=1"), "Match [sctp[12:1]=1] Out of bounds");
  assert.equal(matches("tcp[4294967295:4]=1"), "Match [tcp[4294967295:4]=1] Out of bounds");
  assert.equal(matches("tcp[4294967296:1]=1"), "Match [tcp[4294967296:1]=1] Out of bounds");
  const long64 = "tcp[0:1]=" + "0".repeat(55);
  assert.equal(long64.length, 64);
  assert.deepEqual(matches(long64), ["tcp[0:1]=0x0"]);
  assert.equal(matches(long64 + "0"), `Match [${long64}0] String too long`);
  // Leading spaces are removed before the length check and in the error text.
  assert.deepEqual(matches("tcp[0:1]=1,   " + long64), ["tcp[0:1]=0x1", "tcp[0:1]=0x0"]);
  assert.equal(matches("tcp[0:1]=1,  udp[9:1]=1"), "Match [udp[9:1]=1] Out of bounds");
  assert.equal(
    errorOf({ ...base, match: "tcp[2:2]=5001, tcp [1:1]=1" }),
    "Match [tcp [1:1]=1] Doesn't match regexp",
  );
});

Deno.test("6.2 priority (C_atoi) and udpencap (C_atoi, 16 bits)", () => {
  assert.equal(flowOf(base).priority, 0);
  assert.equal(flowOf({ ...base, priority: "10" }).priority, 10);
  assert.equal(flowOf({ ...base, priority: "-7" }).priority, -7);
  assert.equal(flowOf({ ...base, priority: "7x" }).priority, 7);
  assert.equal(flowOf({ ...base, priority: "abc" }).priority, 0);
  assert.equal(flowOf({ ...base, priority: "99999999999" }).priority, 1215752191);
  assert.equal(flowOf({ ...base, priority: " +5" }).priority, 5);
  assert.equal(flowOf({ ...base, udpencap: "70000" }).udpencap, 4464);
  assert.equal(flowOf({ ...base, udpencap: "9899" }).udpencap, 9899);
  assert.equal(flowOf({ ...base, udpencap: "-1" }).udpencap, 65535);
  assert.equal(flowOf({ ...base, udpencap: "x" }).udpencap, 0);
  assert.equal(flowOf({ ...base, udpencap: "65536" }).udpencap, 0);
});

Deno.test("6.7 udpencap precondition: exactly one protocol, sctp", () => {
  assert.equal(checkUdpencap(0, undefined), undefined);
  assert.equal(checkUdpencap(0, "tcp"), undefined);
  assert.equal(checkUdpencap(9899, "sctp"), undefined);
  assert.equal(checkUdpencap(9899, "SCTP"), undefined);
  assert.equal(checkUdpencap(9899, " sctp,"), undefined);
  for (const p of [undefined, "", "tcp", "sctp,udp", "sctp,sctp", "sctpx"]) {
    assert.equal(checkUdpencap(9899, p), "FAIL: only sctp for updencap", String(p));
  }
});

Deno.test("names (#4): letters, digits and -+_ only; < 1024 bytes", () => {
  for (const ok of ["a", "f2", "A-b+c_9", "tshm-stream-a-i-flow-a-z-tcp", "x".repeat(1023)]) {
    assert.equal(checkName(ok), undefined, ok);
  }
  for (const bad of [undefined, "", "#sctp", "a b", 'a"b', "a\\b", "a:b", "a,b", "é", "a\n"]) {
    assert.equal(checkName(bad), "Invalid name", String(bad));
  }
  assert.equal(checkName("x".repeat(1024)), "Name too long");
  assert.equal(errorOf({ name: "#x", target: "lb" }), "Invalid name");
  assert.equal(errorOf({ target: "lb" }), "Invalid name");
});

Deno.test("6.8 validation order: name, protocols, dports, sports, dsts, srcs, match", () => {
  const all: FlowFields = {
    name: "x".repeat(1024),
    protocols: "bad",
    dports: "0",
    sports: "0",
    dsts: "bad",
    srcs: "bad",
    match: "bad",
  };
  assert.equal(errorOf(all), "Name too long");
  assert.equal(errorOf({ ...all, name: "n" }), "Invalid protocols");
  assert.equal(errorOf({ ...all, name: "n", protocols: "tcp" }), "Invalid dports");
  assert.equal(errorOf({ ...all, name: "n", protocols: "tcp", dports: "1" }), "Invalid sports");
  const ok4 = { name: "n", protocols: "tcp", dports: "1", sports: "1" };
  assert.equal(errorOf({ ...all, ...ok4 }), "Invalid dsts");
  assert.equal(errorOf({ ...all, ...ok4, dsts: "::/0" }), "Invalid srcs");
  assert.equal(
    errorOf({ ...all, ...ok4, dsts: "::/0", srcs: "::/0" }),
    "Match [bad] Doesn't match regexp",
  );
});

Deno.test("parseFlow never throws and flows are frozen", () => {
  const f = flowOf(F2_FIELDS);
  assert.ok(Object.isFrozen(f));
  assert.ok(Object.isFrozen(f.dports));
  assert.ok(Object.isFrozen(f.dsts![0]));
  let seed = 7;
  const alphabet = "tcpudsx0123456789:/.,- []&=xabf#\t";
  for (let i = 0; i < 3000; i++) {
    let s = "";
    const n = (seed = (seed * 1103515245 + 12345) >>> 0) % 40;
    for (let j = 0; j < n; j++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      s += alphabet[(seed >>> 16) % alphabet.length];
    }
    for (const key of ["name", "protocols", "dsts", "srcs", "dports", "sports", "match"]) {
      const r = parseFlow({ ...base, [key]: s });
      assert.equal(typeof r.ok, "boolean");
    }
  }
});

Deno.test("1.9 names list and JSON escaping", () => {
  assert.equal(formatNameList([]), "[]\n");
  assert.equal(formatNameList(["#sctp", "sctp"]), '[\n  "#sctp",\n  "sctp"\n]\n');
  assert.equal(jsonString('a"b\\c\n'), '"a\\"b\\\\c\\u000a"');
  assert.deepEqual(JSON.parse(formatNameList(['q"', "b\\", "c\t"])), ['q"', "b\\", "c\t"]);
  const weird = flowOf({ name: "n", target: 'lb"\\' });
  assert.equal(JSON.parse(formatFlow(weird, 0)).user_ref, 'lb"\\');
});

Deno.test("list output is valid JSON", () => {
  const out = formatFlowList([
    { flow: flowOf(F2_FIELDS), matchesCount: 5 },
    { flow: flowOf({ ...base, protocols: "tcp", dports: "" }), matchesCount: 0 },
  ]);
  const parsed = JSON.parse(out);
  assert.equal(parsed.length, 2);
  assert.equal(parsed[0].matches_count, 5);
  assert.deepEqual(parsed[1].dports, []);
});
