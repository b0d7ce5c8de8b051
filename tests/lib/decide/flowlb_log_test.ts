/**
 * The `Failed flowLookup` log line of `flowlb` (docs/COMPATIBILITY.md#trace-and-log):
 * emitted through the sink's `log` for every packet no flow matches when the
 * log level is at least 6 (INFO), independent of the trace mask.
 */
import assert from "node:assert/strict";
import { FlowLbDecider, FlowSet } from "../../../lib/decide/flowlb.ts";
import { FlowStore } from "../../../lib/flow/store.ts";
import { MaglevTable } from "../../../lib/maglev/table.ts";
import { TRACE_PACKET, type TraceSink } from "../../../lib/trace/mask.ts";
import { goldenRows, unhex } from "../../../testkit/golden_packets.ts";

const packet = (index: number) => {
  const r = goldenRows.find((r) =>
    r.file === "telnet-ipv4.pcap" && r.index === index && r.hash_mode === 1 && r.udpencap === 0
  )!;
  return unhex(r.packet);
};
const toServer = packet(0); // TCP to port 23: matches the flow
const toClient = packet(1); // TCP from port 23: no flow

/** A decider with one flow (TCP/23 → golden table) and a recording sink. */
function setup(level: number | undefined, mask = 0) {
  const store = new FlowStore({ acquire: () => true, release: () => {} }, { lanes: 1 });
  assert.equal(store.set({ name: "telnet", target: "a", protocols: "tcp", dports: "23" }), "OK");
  const golden = Deno.readFileSync(new URL("../../testdata/shm/default-4.shm", import.meta.url));
  const snap = store.flows.snapshot;
  const table = MaglevTable.view(golden.slice().buffer);
  const logs: string[] = [];
  const lines: string[] = [];
  const sink: TraceSink = { mask, line: (t) => lines.push(t), log: (t) => logs.push(t) };
  if (level !== undefined) sink.level = level;
  const d = new FlowLbDecider({ nolbFwmark: 9, trace: sink });
  d.setFlows(new FlowSet(snap.flows, snap.flows.map(() => table), snap.slots, null));
  const decide = (p: Uint8Array) => d.decide(p, 0, p.length, 0x0800, 0);
  return { sink, logs, lines, decide };
}

Deno.test("level 6 and 7: one 'Failed flowLookup' log line per unmatched packet", () => {
  for (const level of [6, 7]) {
    const { logs, lines, decide } = setup(level);
    assert.ok(decide(toServer) >= 0);
    assert.deepEqual(logs, [], "a matched packet logs nothing");
    assert.equal(decide(toClient), 9);
    assert.equal(decide(toClient), 9);
    assert.deepEqual(logs, ["Failed flowLookup", "Failed flowLookup"]);
    assert.deepEqual(lines, [], "no trace line with mask 0");
  }
});

Deno.test("level 5 (the default) or no level: no log line", () => {
  for (const level of [5, 0, undefined]) {
    const { logs, decide } = setup(level);
    assert.equal(decide(toClient), 9);
    assert.deepEqual(logs, [], `level ${level}`);
  }
});

Deno.test("the level is read per packet from the sink (the queue thread sets it per batch)", () => {
  const { sink, logs, decide } = setup(5);
  decide(toClient);
  sink.level = 6;
  decide(toClient);
  sink.level = 4;
  decide(toClient);
  assert.deepEqual(logs, ["Failed flowLookup"]);
});

Deno.test("log and trace are independent: trace bit packet and level 6 give one of each", () => {
  const { logs, lines, decide } = setup(6, TRACE_PACKET);
  assert.equal(decide(toClient), 9);
  assert.deepEqual(logs, ["Failed flowLookup"]);
  // The trace line names the packet (D60); the log line stays 1.2.0's.
  assert.deepEqual(lines, ["Failed flowLookup, 192.168.1.2:23 -> 192.168.1.201:36112"]);
});
