/**
 * The `flowlb` decision (docs/COMPATIBILITY.md#packet-decisions, #flows) over golden packets: flows built
 * by the real flow store, expected fwmarks read from golden table bytes for
 * the golden hashes.
 */
import assert from "node:assert/strict";
import { FlowLbDecider, FlowSet } from "../../../lib/decide/flowlb.ts";
import { FlowStore } from "../../../lib/flow/store.ts";
import { activate, initTable } from "../../../lib/maglev/maglev.ts";
import { MaglevTable, tableSize } from "../../../lib/maglev/table.ts";
import { TRACE_PACKET, TRACE_SCTP } from "../../../lib/trace/mask.ts";
import { type GoldenRow, goldenRows, unhex } from "../../../testkit/golden_packets.ts";

type Row = GoldenRow;
const rows = goldenRows;
const row = (file: string, index: number, udpencap = 0) =>
  rows.find((r) =>
    r.file === file && r.index === index && r.hash_mode === 1 && r.udpencap === udpencap
  )!;
const bytes = (r: Row) => unhex(r.packet);

/** Two tables: "a" = golden default-4 (100..103), "b" = fresh with target 200 only. */
function tables(): Map<string, MaglevTable> {
  const golden = Deno.readFileSync(new URL("../../testdata/shm/default-4.shm", import.meta.url));
  const b = initTable(new ArrayBuffer(tableSize(997, 4)), 997, 4, 0);
  activate(b, [200]);
  return new Map([["a", MaglevTable.view(golden.slice().buffer)], ["b", b]]);
}

/** fwmark of `hash` in `t` computed from the layout (docs/COMPATIBILITY.md#maglev). */
function expected(t: MaglevTable, hash: number): number {
  const a = t.lookup[hash % t.m];
  return a < 0 ? -1 : t.active[a];
}

function setup(defs: Record<string, string>[], opts = {}) {
  const store = new FlowStore({ acquire: () => true, release: () => {} }, { lanes: 1 });
  for (const d of defs) assert.equal(store.set(d), "OK", JSON.stringify(d));
  const tbl = tables();
  const snap = store.flows.snapshot;
  const set = new FlowSet(
    snap.flows,
    snap.flows.map((f) => f.target === undefined ? undefined : tbl.get(f.target)),
    snap.slots,
    store.flows.counters.lane(0),
  );
  const d = new FlowLbDecider({ nolbFwmark: 9, ...opts });
  d.setFlows(set);
  const decide = (r: Row) => {
    const p = bytes(r);
    return d.decide(p, 0, p.length, 0x0800);
  };
  const count = (name: string) => store.flows.get(name)!.matchesCount;
  return { tbl, decide, count, store };
}

const telnet = row("telnet-ipv4.pcap", 0); // TCP 192.168.1.201:36112 -> 192.168.1.2:23

Deno.test("flowlb: a flow by protocol/port sends the packet to its table; no match gives nolb", () => {
  const { tbl, decide, count } = setup([
    { name: "web", target: "b", protocols: "tcp", dports: "80" },
    { name: "telnet", target: "a", protocols: "tcp", dports: "23" },
  ]);
  assert.equal(decide(telnet), expected(tbl.get("a")!, telnet.hash));
  assert.equal(count("telnet"), 1);
  assert.equal(count("web"), 0);
  const reply = row("telnet-ipv4.pcap", 1); // from port 23: dport is the client port
  assert.equal(decide(reply), 9, "--nolb_fwmark when no flow matches");
});

Deno.test("flowlb: the higher priority wins; equal priority keeps definition order", () => {
  const { decide } = setup([
    { name: "low", target: "a", priority: "1", protocols: "tcp" },
    { name: "high", target: "b", priority: "5", dsts: "192.168.1.0/24" },
  ]);
  assert.equal(decide(telnet), 200);
  const { tbl, decide: d2 } = setup([
    { name: "first", target: "a", dsts: "192.168.1.2/32" },
    { name: "second", target: "b", dsts: "0.0.0.0/0" },
  ]);
  assert.equal(d2(telnet), expected(tbl.get("a")!, telnet.hash));
});

Deno.test("flowlb: SCTP over UDP is re-classified by the helper flow and hashed as SCTP", () => {
  const { tbl, decide, count } = setup([
    { name: "sctp", target: "a", protocols: "sctp", udpencap: "9899" },
    { name: "udp-all", target: "b", priority: "-1", protocols: "udp" },
  ]);
  const encap = row("sctp-encap-ipv4.pcap", 0, 9899); // rc 4: key/hash of the inner SCTP ports
  assert.equal(encap.rc, 4);
  assert.equal(decide(encap), expected(tbl.get("a")!, encap.hash));
  assert.equal(count("#sctp"), 1, "the helper flow matched the UDP packet");
  assert.equal(count("sctp"), 1, "then the SCTP flow matched the re-parsed packet");
  assert.equal(count("udp-all"), 0);
});

Deno.test("flowlb: promiscuous ping matches ICMP echo on address checks alone", () => {
  const echo = rows.find((r) =>
    r.file === "crafted.pcap" && r.rc === 16 && r.hash_mode === 1 &&
    r.packet.startsWith("45")
  )!;
  const defs = [{ name: "tcp-only", target: "b", protocols: "tcp", dports: "80" }];
  assert.equal(setup(defs).decide(echo), 9, "without --promiscuous_ping ICMP has no ports");
  assert.equal(setup(defs, { promiscuousPing: true }).decide(echo), 200);
});

Deno.test("flowlb: a table without targets gives --notargets_fwmark", () => {
  const store = setup([{ name: "t", target: "b" }]);
  store.tbl.get("b")!.active.fill(-1);
  store.tbl.get("b")!.lookup.fill(-1);
  assert.equal(store.decide(telnet), -1);
});

Deno.test("flowlb: trace lines for packets and SCTP over UDP (docs/COMPATIBILITY.md#trace-and-log)", () => {
  const lines: string[] = [];
  const trace = { mask: TRACE_PACKET, line: (t: string) => lines.push(t) };
  const { tbl, decide } = setup([{ name: "telnet", target: "a", protocols: "tcp", dports: "23" }], {
    trace,
  });
  const fw = expected(tbl.get("a")!, telnet.hash);
  assert.equal(decide(telnet), fw);
  assert.equal(decide(row("telnet-ipv4.pcap", 1)), 9);
  const len = bytes(telnet).length;
  assert.deepEqual(lines, [
    "Using LB; a",
    // 1.2.0's fields, then the packet's addresses and ports (D60).
    `Packet; proto=6, len=${len}, fwmark=${fw}, 192.168.1.201:36112 -> 192.168.1.2:23`,
    "Failed flowLookup, 192.168.1.2:23 -> 192.168.1.201:36112",
  ]);

  lines.length = 0;
  trace.mask = TRACE_SCTP;
  const s = setup([{ name: "sctp", target: "a", protocols: "sctp", udpencap: "9899" }], { trace });
  const encap = row("sctp-encap-ipv4.pcap", 0, 9899);
  assert.equal(s.decide(encap), expected(tbl.get("a")!, encap.hash));
  assert.equal(s.decide(telnet), 9, "no flow: nothing traced without the packet bit");
  assert.deepEqual(lines, [
    "Udp encapsulated sctp packet on port 9899",
    "Using LB; a",
    `Packet; proto=132, len=${bytes(encap).length}, fwmark=${
      expected(tbl.get("a")!, encap.hash)
    }, ` +
    "192.168.2.221:9899 -> 10.0.0.0:9899, sctp 35857 -> 6000",
  ]);
});
