/**
 * What the deciders offer to the kernel fast path, against the golden packets of 1.2.0
 * (tests/testdata/packets.jsonl): a decision is offered exactly when the packet is a TCP,
 * UDP or SCTP packet that 1.2.0 keys by its 5-tuple (rc 0: no fragment, no ICMP, no SCTP
 * over UDP), IPv6 without extension headers; and the key offered is the key the kernel
 * rule builds from the same bytes (emulated here from the packet bytes alone, as the rule's
 * payload expressions read them).
 */
import assert from "node:assert/strict";
import { goldenRows, unhex } from "../../../testkit/golden_packets.ts";
import { LbDecider } from "../../../lib/decide/lb.ts";
import { FlowLbDecider, FlowSet } from "../../../lib/decide/flowlb.ts";
import { activate, initTable } from "../../../lib/maglev/maglev.ts";
import { tableSize } from "../../../lib/maglev/table.ts";
import { encodeKey } from "../../../lib/fastpath/nft_key.ts";
import { parseFlow } from "../../../lib/flow/parse.ts";
import type { Flow } from "../../../lib/flow/types.ts";
import { TRACE_PACKET } from "../../../lib/trace/mask.ts";

const table = initTable(new ArrayBuffer(tableSize(997, 4)), 997, 4, 0);
activate(table, [101]);

/** The key the kernel rule looks up for `p`, or undefined when the rule does not get that far. */
function kernelKey(p: Uint8Array): string | undefined {
  const v6 = (p[0] >> 4) === 6;
  const hex = (a: Uint8Array) => [...a].map((b) => b.toString(16).padStart(2, "0")).join("");
  const pad = (b: number[]) => [...b, ...new Array(4 - b.length).fill(0)];
  if (!v6) {
    if (p.length < 20 || ((p[6] << 8 | p[7]) & 0x3fff) !== 0) return undefined;
    const th = (p[0] & 15) * 4;
    if (p.length < th + 4) return undefined;
    return hex(Uint8Array.from([
      ...p.subarray(12, 20),
      ...pad([p[9]]),
      ...pad([p[th], p[th + 1]]),
      ...pad([p[th + 2], p[th + 3]]),
    ]));
  }
  if (p.length < 44 || ![6, 17, 132].includes(p[6])) return undefined; // the map holds only these
  return hex(Uint8Array.from([
    ...p.subarray(8, 40),
    ...pad([p[6]]),
    ...pad([p[40], p[41]]),
    ...pad([p[42], p[43]]),
  ]));
}

function offeredKey(key: Uint8Array, v6: boolean): string {
  const out = new Uint8Array(44);
  const n = encodeKey(key, v6, out, 0);
  return [...out.subarray(0, n)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("lb: offered exactly for rc 0 (IPv6: no extension header), with the kernel rule's key", () => {
  let offered = 0, checked = 0;
  for (const row of goldenRows) {
    if (row.hash_mode !== 1) continue;
    const p = unhex(row.packet);
    const v6 = (p[0] >> 4) === 6;
    const lb = new LbDecider({ table, udpencap: row.udpencap });
    const v = lb.decide(p, 0, p.length, v6 ? 0x86dd : 0x0800, 0);
    const rc = (row.fixed ?? row).rc;
    const want = rc === 0 && v >= 0 && (!v6 || [6, 17, 132].includes(p[6]));
    assert.equal(lb.cacheable, want, `${row.file}#${row.index} rc=${rc}`);
    checked++;
    if (!want) continue;
    offered++;
    assert.equal(offeredKey(lb.parse.key, v6), kernelKey(p), `${row.file}#${row.index}: key`);
  }
  assert.ok(offered > 20 && checked > offered, `${offered} of ${checked} offered`);
});

Deno.test("lb: nothing offered with the packet trace on, or without a target", () => {
  const row = goldenRows.find((r) => r.rc === 0 && r.udpencap === 0 && r.packet.startsWith("45"))!;
  const p = unhex(row.packet);
  const traced = new LbDecider({ table, trace: { mask: TRACE_PACKET, line: () => {} } });
  traced.decide(p, 0, p.length, 0x0800, 0);
  assert.equal(traced.cacheable, false);
  const empty = new LbDecider({ table: initTable(new ArrayBuffer(tableSize(997, 4)), 997, 4, 0) });
  empty.decide(p, 0, p.length, 0x0800, 0);
  assert.equal(empty.cacheable, false);
  const plain = new LbDecider({ table });
  plain.decide(p, 0, p.length, 0x0800, 0);
  assert.equal(plain.cacheable, true);
});

Deno.test("flowlb: a flow with byte matches, or a lower-priority flow, is never offered", () => {
  const row = goldenRows.find((r) =>
    r.rc === 0 && r.udpencap === 0 && r.packet.startsWith("45") && unhex(r.packet)[9] === 17
  )!;
  const p = unhex(row.packet);
  const flow = (spec: string): Flow => {
    const fields = Object.fromEntries(
      spec.split(";").map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
    );
    const r = parseFlow(fields);
    if (!r.ok) throw new Error(r.error);
    return r.flow;
  };
  const decide = (specs: string[]) => {
    const flows = specs.map(flow);
    const d = new FlowLbDecider({});
    d.setFlows(new FlowSet(flows, flows.map(() => table), new Uint32Array(flows.length), null));
    d.decide(p, 0, p.length, 0x0800, 0);
    return d.cacheable;
  };
  assert.equal(decide(["name=a;priority=1;target=t"]), true);
  // Wins, but matched on bytes beyond the 5-tuple.
  assert.equal(decide(["name=a;priority=1;target=t;match=udp[0:1] & 0x00 = 0"]), false);
  // Wins on its 5-tuple, but a byte-matching flow above it could take other packets of it.
  const above = "name=b;priority=5;target=t;match=udp[7:1] & 0x00 = 1";
  assert.equal(decide(["name=a;priority=1;target=t", above]), false);
  // A byte-matching flow below the winner cannot take its packets.
  assert.equal(decide(["name=a;priority=9;target=t", above]), true);
});
