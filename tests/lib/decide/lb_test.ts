/**
 * The `lb` decision (docs/COMPATIBILITY.md#packet-decisions) over every golden packet against the
 * golden default-4 table: the verdict is the table's fwmark for the golden
 * hash, read straight from the golden bytes.
 */
import assert from "node:assert/strict";
import { type FragmentTracker, LbDecider } from "../../../lib/decide/lb.ts";
import { activate, deactivate, initTable } from "../../../lib/maglev/maglev.ts";
import { MaglevTable, tableSize } from "../../../lib/maglev/table.ts";
import { ETH_P_IP, ETH_P_IPV6, type KeyParse } from "../../../lib/packet/parse.ts";
import { TRACE_FRAG, TRACE_PACKET, type TraceSink } from "../../../lib/trace/mask.ts";
import { goldenRows, unhex } from "../../../testkit/golden_packets.ts";

const golden = Deno.readFileSync(new URL("../../testdata/shm/default-4.shm", import.meta.url));
const rows = goldenRows;
const hex = unhex;

/** fwmark for `hash` read from the golden default-4 bytes (docs/COMPATIBILITY.md#shared-memory, #maglev). */
function goldenFwmark(hash: number): number {
  const dv = new DataView(golden.buffer, golden.byteOffset);
  const m = dv.getUint32(4, true);
  const n = dv.getUint32(8, true);
  const a = dv.getInt32(16 + 4 * (hash % m), true);
  return a < 0 ? -1 : dv.getInt32(16 + 4 * m + 4 * m * n + 4 * a, true);
}

/** L3 protocol from the version nibble (the golden malformed frames have other nibbles). */
function l3(pkt: Uint8Array): number {
  const v = pkt.length > 0 ? pkt[0] >> 4 : 0;
  return v === 4 ? ETH_P_IP : v === 6 ? ETH_P_IPV6 : 0;
}

/** Records calls; answers `fw` for non-first fragments and `ok` for first ones. */
class RecordingTracker implements FragmentTracker {
  calls: string[] = [];
  constructor(readonly fw: number, readonly ok: boolean) {}
  nonFirst(p: KeyParse): number {
    this.calls.push(`nonFirst ${Array.from(p.key.subarray(32), (b) => b.toString(16)).join(",")}`);
    return this.fw;
  }
  first(p: KeyParse, fw: number): boolean {
    this.calls.push(
      `first ${fw} ${Array.from(p.key.subarray(32), (b) => b.toString(16)).join(",")}`,
    );
    return this.ok;
  }
}

Deno.test("lb: every golden packet gets the golden table's fwmark (or DROP)", () => {
  const table = MaglevTable.view(golden.slice().buffer);
  for (const row of rows) {
    const want = row.fixed ?? row;
    const frags = new RecordingTracker(777, true);
    const lb = new LbDecider({
      table,
      fragments: frags,
      hashMode: row.hash_mode,
      udpencap: row.udpencap,
    });
    const pkt = hex(row.packet);
    const v = lb.decide(pkt, 0, pkt.length, l3(pkt));
    const where = `${row.file}#${row.index} mode ${row.hash_mode} rc ${want.rc}`;
    if (want.rc < 0) assert.equal(v, -1, where);
    else if (want.rc & 2) {
      assert.equal(v, 777, where);
      assert.equal(frags.calls.length, 1, where);
      assert.match(frags.calls[0], /^nonFirst /, where);
    } else {
      assert.equal(v, goldenFwmark(want.hash), where);
      assert.equal(frags.calls.length, want.rc & 1, where);
    }
  }
});

Deno.test("lb: first fragments register with the id-form key; a refused one is dropped", () => {
  const table = MaglevTable.view(golden.slice().buffer);
  const row = rows.find((r) => r.file === "crafted.pcap" && r.index === 15 && r.hash_mode === 1)!;
  assert.equal(row.rc, 1);
  const pkt = hex(row.packet);
  const ok = new RecordingTracker(0, true);
  const fw = new LbDecider({ table, fragments: ok }).decide(pkt, 0, pkt.length, ETH_P_IP);
  assert.equal(fw, goldenFwmark(row.hash));
  // fragid 32318 = 0x7e3e: id form is its little-endian bytes then zeros (docs/COMPATIBILITY.md#hashing-and-parsing).
  assert.deepEqual(ok.calls, [`first ${fw} 3e,7e,0,0,0,0,0,0`]);
  const refuse = new RecordingTracker(0, false);
  assert.equal(
    new LbDecider({ table, fragments: refuse }).decide(pkt, 0, pkt.length, ETH_P_IP),
    -1,
  );
});

Deno.test("lb: no target gives --notargets_fwmark; activate/deactivate apply to the next packet", () => {
  const table = initTable(new ArrayBuffer(tableSize(997, 8)), 997, 8, 0);
  const row = rows.find((r) => r.rc === 0 && r.hash_mode === 1)!;
  const pkt = hex(row.packet);
  assert.equal(new LbDecider({ table }).decide(pkt, 0, pkt.length, l3(pkt)), -1);
  const lb = new LbDecider({ table, notargetsFwmark: 5 });
  assert.equal(lb.decide(pkt, 0, pkt.length, l3(pkt)), 5);
  activate(table, [42]);
  assert.equal(lb.decide(pkt, 0, pkt.length, l3(pkt)), 42);
  deactivate(table, [42]);
  assert.equal(lb.decide(pkt, 0, pkt.length, l3(pkt)), 5);
});

Deno.test("lb: LB tier sends fragments owned by another instance there, keeps its own", () => {
  const table = MaglevTable.view(golden.slice().buffer);
  const frag = rows.find((r) => r.rc === 2 && r.hash_mode === 1)!;
  const pkt = hex(frag.packet);
  const tierBuf = new ArrayBuffer(tableSize(997, 4));
  const other = initTable(tierBuf, 997, 4, 1);
  activate(other, [2]); // the only instance is "2", we are "1": forward there
  const frags = new RecordingTracker(777, true);
  assert.equal(
    new LbDecider({ table, lbTier: other, fragments: frags }).decide(pkt, 0, pkt.length, l3(pkt)),
    2,
  );
  assert.equal(frags.calls.length, 0);
  const mine = initTable(new ArrayBuffer(tableSize(997, 4)), 997, 4, 1);
  activate(mine, [1]); // we own it: handle locally
  assert.equal(
    new LbDecider({ table, lbTier: mine, fragments: frags }).decide(pkt, 0, pkt.length, l3(pkt)),
    777,
  );
  const unfragmented = rows.find((r) => r.rc === 0 && r.hash_mode === 1)!;
  const u = hex(unfragmented.packet);
  assert.equal(
    new LbDecider({ table, lbTier: other }).decide(u, 0, u.length, l3(u)),
    goldenFwmark(unfragmented.hash),
    "non-fragments never consult the LB tier",
  );
});

Deno.test("lb: fragment tracking gets the parse and the caller's buffer and range, no view", () => {
  const table = MaglevTable.view(golden.slice().buffer);
  const seen: [KeyParse, Uint8Array, number, number][] = [];
  const tracker: FragmentTracker = {
    nonFirst: (p, buf, off, len) => (seen.push([p, buf, off, len]), 777),
    first: (p, _fw, buf, off, len) => (seen.push([p, buf, off, len]), true),
  };
  const lb = new LbDecider({ table, fragments: tracker });
  for (const rc of [1, 2]) {
    const row = rows.find((r) => r.rc === rc && r.hash_mode === 1)!;
    const pkt = hex(row.packet);
    const buf = new Uint8Array(pkt.length + 40).fill(0xee);
    buf.set(pkt, 13);
    seen.length = 0;
    assert.ok(lb.decide(buf, 13, pkt.length, l3(pkt)) >= 0);
    assert.equal(seen.length, 1);
    const [p, b, off, len] = seen[0];
    assert.equal(p, lb.parse);
    assert.equal(b, buf, "the decider's own buffer, not a view of it");
    assert.deepEqual([off, len, p.rc & 3], [13, pkt.length, rc]);
  }
});

/** A trace sink that keeps its lines. */
function recordingSink(mask: number): TraceSink & { lines: string[] } {
  const lines: string[] = [];
  return { mask, lines, line: (t) => lines.push(t) };
}

Deno.test("lb: trace lines (docs/COMPATIBILITY.md#trace-and-log) only for the bits in the mask", () => {
  const table = MaglevTable.view(golden.slice().buffer);
  const row = rows.find((r) => r.rc === 0 && r.hash_mode === 1)!;
  const pkt = hex(row.packet);
  const fw = goldenFwmark(row.hash);
  const off = recordingSink(TRACE_FRAG);
  new LbDecider({ table, trace: off }).decide(pkt, 0, pkt.length, l3(pkt));
  assert.deepEqual(off.lines, [], "no packet line without the packet bit");
  const on = recordingSink(TRACE_PACKET);
  assert.equal(new LbDecider({ table, trace: on }).decide(pkt, 0, pkt.length, l3(pkt)), fw);
  // 1.2.0's text, then the packet's addresses and ports (D60).
  assert.deepEqual(on.lines, [
    `Load-balance packet. fw=${fw}, 83.77.202.167:38194 -> 13.37.48.94:3802`,
  ]);

  const frag = rows.find((r) => r.rc === 2 && r.hash_mode === 1)!;
  const f = hex(frag.packet);
  const fr = recordingSink(TRACE_FRAG);
  new LbDecider({ table, fragments: new RecordingTracker(777, true), trace: fr })
    .decide(f, 0, f.length, l3(f));
  const stored = recordingSink(TRACE_FRAG);
  const storing = Object.assign(new RecordingTracker(-1, true), { lastStatus: 1 });
  new LbDecider({ table, fragments: storing, trace: stored }).decide(f, 0, f.length, l3(f));
  const dropped = recordingSink(TRACE_FRAG);
  new LbDecider({ table, trace: dropped }).decide(f, 0, f.length, l3(f));
  assert.deepEqual(
    [fr.lines, stored.lines, dropped.lines],
    [
      ["Handle non-first frag locally fwmark=777, 83.77.202.167 -> 13.37.48.94, frag id=15998 offset=1000"],
      ["Fragment stored, 83.77.202.167 -> 13.37.48.94, frag id=15998 offset=1000"],
      ["Fragment dropped, 83.77.202.167 -> 13.37.48.94, frag id=15998 offset=1000"],
    ],
  );

  const first = rows.find((r) => r.file === "crafted.pcap" && r.index === 15 && r.hash_mode === 1)!;
  const p1 = hex(first.packet);
  const both = recordingSink(TRACE_FRAG | TRACE_PACKET);
  new LbDecider({ table, fragments: new RecordingTracker(0, false), trace: both })
    .decide(p1, 0, p1.length, ETH_P_IP);
  // 1.2.0's order (as observed by users, issue "Observability"): the first fragment is handled
  // before the packet line.
  assert.deepEqual(both.lines, [
    "First fragment, 83.77.202.167:5365 -> 13.37.48.94:37646, frag id=15998 offset=0",
    "FAILED: Handle first fragment",
    `Load-balance packet. fw=${
      goldenFwmark(first.hash)
    }, 83.77.202.167:5365 -> 13.37.48.94:37646, frag id=15998 offset=0`,
  ]);
});
