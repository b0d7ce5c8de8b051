/**
 * Trace flows in the flowlb decision (docs/COMPATIBILITY.md#trace-and-log, trace flows): with trace
 * bit `flows`, the first matching trace flow is counted and prints its lines. Expected lines are
 * the observed 1.2.0 examples of the behaviour description (UDP 192.168.77.1:46651 ->
 * 10.77.0.7:5000, mask 0x46, flow "tr", table "lb-t" whose only target is 103) and the formats it
 * gives for the other cases.
 */
import assert from "node:assert/strict";
import { FlowLbDecider, FlowSet } from "../../../lib/decide/flowlb.ts";
import { FlowStore } from "../../../lib/flow/store.ts";
import { activate, initTable } from "../../../lib/maglev/maglev.ts";
import { tableSize } from "../../../lib/maglev/table.ts";
import { TRACE_FLOWS, TRACE_FRAG, TRACE_PACKET } from "../../../lib/trace/mask.ts";
import { icmpLine, protoName, traceFlowHeader } from "../../../lib/trace/flow_lines.ts";
import { ETH_P_IP, ETH_P_IPV6, KeyParse, parseKeyAt } from "../../../lib/packet/parse.ts";

const CL = [192, 168, 77, 1];
const VIP = [10, 77, 0, 7];

/** IPv4 UDP 192.168.77.1:46651 -> 10.77.0.7:5000 with `payload` bytes. */
function udp(payload = 5): Uint8Array {
  const len = 28 + payload;
  const p = new Uint8Array(len);
  p.set([0x45, 0, 0, len, 0, 0, 0, 0, 64, 17, 0, 0, ...CL, ...VIP]);
  p.set([46651 >> 8, 46651 & 0xff, 5000 >> 8, 5000 & 0xff, 0, 8 + payload, 0, 0], 20);
  return p;
}

/** ICMP fragmentation needed (mtu 1400) from a router to the client, quoting VIP:5000 -> client. */
function fragNeeded(): Uint8Array {
  const p = new Uint8Array(56);
  p.set([0x45, 0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0, 10, 77, 0, 254, ...VIP]);
  p.set([3, 4, 0, 0, 0, 0, 1400 >> 8, 1400 & 0xff], 20);
  p.set([0x45, 0, 0, 33, 0, 0, 0, 0, 64, 17, 0, 0, ...VIP, ...CL], 28);
  p.set([5000 >> 8, 5000 & 0xff, 46651 >> 8, 46651 & 0xff, 0, 13, 0, 0], 48);
  return p;
}

function setup(traces: Record<string, string>[], flows: Record<string, string>[] = []) {
  const store = new FlowStore({ acquire: () => true, release: () => {} }, { lanes: 1 });
  for (const f of flows) assert.equal(store.set(f), "OK");
  for (const f of traces) assert.equal(store.traceSet(f), "OK");
  const table = initTable(new ArrayBuffer(tableSize(97, 4)), 97, 4, 0);
  activate(table, [103]);
  const fs = store.flows.snapshot;
  const ts = store.traces.snapshot;
  const lines: string[] = [];
  const trace = {
    mask: TRACE_FLOWS | TRACE_FRAG | TRACE_PACKET,
    line: (l: string) => lines.push(l),
  };
  const d = new FlowLbDecider({ nolbFwmark: 9, notargetsFwmark: 8, trace });
  d.setFlows(
    new FlowSet(fs.flows, fs.flows.map(() => table), fs.slots, store.flows.counters.lane(0)),
  );
  d.setTraceFlows(new FlowSet(ts.flows, [], ts.slots, store.traces.counters.lane(0), true));
  return { d, lines, trace, store, table };
}

const TR = { name: "tr", protocols: "udp", dsts: "10.77.0.7/32" };
const LBT = { name: "f", target: "lb-t", protocols: "udp", dports: "5000" };

Deno.test("trace flow: the observed UDP example, and the match is counted", () => {
  const { d, lines, store } = setup([TR], [LBT]);
  const p = udp();
  assert.equal(d.decide(p, 0, p.length, ETH_P_IP), 103);
  assert.deepEqual(lines, [
    "",
    "Match for trace-flow: tr",
    "proto=udp, len=33, ::ffff:192.168.77.1 46651 -> ::ffff:10.77.0.7 5000",
    "target=lb-t, fwmark=103",
    "Using LB; lb-t",
    // The trace-flow lines are 1.2.0's; the packet line gains the addresses (D60).
    "Packet; proto=17, len=33, fwmark=103, 192.168.77.1:46651 -> 10.77.0.7:5000",
  ]);
  assert.equal(store.traces.get("tr")!.matchesCount, 1);
});

Deno.test("trace flow: the observed ICMP fragmentation-needed example (inner addresses swapped)", () => {
  const { d, lines } = setup([TR], [{ ...LBT, protocols: "udp" }]);
  const p = fragNeeded();
  assert.equal(d.decide(p, 0, p.length, ETH_P_IP), 103);
  // The packet line: the ICMP error as it arrived, and the flow it was balanced as (D60).
  assert.deepEqual(lines.slice(5), [
    "Using LB; lb-t",
    "Packet; proto=17, len=56, fwmark=103, 10.77.0.254 -> 10.77.0.7, icmp type=3 code=4, " +
    "flow 192.168.77.1:46651 -> 10.77.0.7:5000",
  ]);
  assert.deepEqual(lines.slice(0, 5), [
    "",
    "Match for trace-flow: tr",
    "ICMP_DEST_UNREACH/FRAG_NEEDED: mtu=1400",
    "proto=udp, len=56, ::ffff:192.168.77.1 46651 -> ::ffff:10.77.0.7 5000",
    "target=lb-t, fwmark=103",
  ]);
});

Deno.test("trace flow: no flow, no target, no trace bit, no match", () => {
  const none = setup([TR]);
  const p = udp();
  assert.equal(none.d.decide(p, 0, p.length, ETH_P_IP), 9);
  assert.equal(none.lines[3], "NO target, fwmark=9");

  const empty = setup([TR], [LBT]);
  empty.table.active.fill(-1); // the flow's table has no target
  empty.table.lookup.fill(-1);
  assert.equal(empty.d.decide(p, 0, p.length, ETH_P_IP), 8);
  assert.equal(empty.lines[3], "NO servers, target=lb-t, fwmark=8");

  const off = setup([TR], [LBT]);
  off.trace.mask = TRACE_PACKET;
  off.d.decide(p, 0, p.length, ETH_P_IP);
  assert.deepEqual(off.lines, [
    "Using LB; lb-t",
    "Packet; proto=17, len=33, fwmark=103, 192.168.77.1:46651 -> 10.77.0.7:5000",
  ]);
  assert.equal(off.store.traces.get("tr")!.matchesCount, 0, "not evaluated without the bit");

  const other = setup([{ ...TR, dsts: "10.77.0.8/32" }], [LBT]);
  other.d.decide(p, 0, p.length, ETH_P_IP);
  assert.equal(other.lines[0], "Using LB; lb-t");
});

Deno.test("trace flow: the first matching one by priority wins; helpers and targetless flows too", () => {
  const { d, lines, store } = setup([
    { name: "low", protocols: "udp" },
    { name: "high", protocols: "udp", priority: "5" },
  ], [LBT]);
  const p = udp();
  d.decide(p, 0, p.length, ETH_P_IP);
  assert.equal(lines[1], "Match for trace-flow: high");
  assert.equal(store.traces.get("low")!.matchesCount, 0);
});

Deno.test("icmpLine and protoName: every form of the behaviour description", () => {
  const kp = new KeyParse();
  const v4 = (type: number, code: number, w: number[]) => {
    const p = new Uint8Array(28);
    p.set([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, ...CL, ...VIP, type, code, 0, 0, ...w]);
    parseKeyAt(kp, p, 0, 28, ETH_P_IP, 0);
    return icmpLine(kp, p);
  };
  const unreach = fragNeeded();
  unreach[21] = 1; // code 1: host unreachable
  parseKeyAt(kp, unreach, 0, unreach.length, ETH_P_IP, 0);
  assert.equal(icmpLine(kp, unreach), "ICMP_DEST_UNREACH: code=1");
  assert.equal(v4(8, 0, [0, 7, 0, 9]), "ICMP_ECHO: id=7, seq=9");
  assert.equal(v4(13, 0, [0, 0, 0, 0]), "ICMP 13, 0");
  const v6 = (type: number, w: number[]) => {
    const p = new Uint8Array(48);
    p.set([0x60, 0, 0, 0, 0, 8, 58, 64]);
    p[23] = 1;
    p[39] = 2;
    p.set([type, 0, 0, 0, ...w], 40);
    parseKeyAt(kp, p, 0, 48, ETH_P_IPV6, 0);
    return icmpLine(kp, p);
  };
  assert.equal(v6(2, [0, 0, 5, 0]), "ICMP6_PACKET_TOO_BIG: mtu=1280");
  assert.equal(v6(128, [0, 3, 0, 4]), "ICMP6_ECHO_REQUEST: id=3, seq=4");
  assert.equal(v6(129, [0, 0, 0, 0]), "ICMP6 129, 0");
  assert.deepEqual([6, 17, 132, 1, 58, 47].map(protoName), [
    "tcp",
    "udp",
    "sctp",
    "icmp",
    "icmp6",
    "47",
  ]);
  // A cut-short ICMP header gives no ICMP line; UDP with a reported udpencap prints it.
  const short = udp(0).subarray(0, 24);
  short[9] = 1;
  parseKeyAt(kp, short, 0, 24, ETH_P_IP, 0);
  assert.equal(icmpLine(kp, short), undefined);
  const u = udp();
  parseKeyAt(kp, u, 0, u.length, ETH_P_IP, 0);
  assert.equal(traceFlowHeader("x", kp, u, u.length, 9899).at(-1), "udpencap=9899");
});
