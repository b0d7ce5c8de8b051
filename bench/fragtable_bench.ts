/**
 * Benchmarks for fragment tracking (lib/frag/table.ts): the per-fragment work
 * `lb` does after parsing (docs/COMPATIBILITY.md#packet-decisions), with the default table parameters.
 *
 * Run: `deno bench --allow-all bench/fragtable_bench.ts`. Each iteration
 * handles one datagram of two IPv4 fragments (a first fragment and one
 * non-first fragment) with a fresh fragment id; the clock advances 1 µs per
 * datagram, so about 200 000 datagrams share one ttl window and the table
 * runs full (inserts are rejected, stale entries are reclaimed lazily) —
 * the worst case for bucket scans.
 */

import { FragTable, setIdForm } from "../lib/frag/table.ts";
import { FTSHM_SIZE } from "../lib/frag/stats.ts";
import { ETH_P_IP, KeyParse, parseKeyAt, RC_FIRST_FRAG } from "../lib/packet/parse.ts";

function ipv4Frag(offset8: number, mf: boolean, payload: number): Uint8Array {
  const len = 20 + payload;
  const p = new Uint8Array(len);
  const ff = (mf ? 0x2000 : 0) | offset8;
  p.set([0x45, 0, len >> 8, len & 0xff, 0, 0, ff >> 8, ff & 0xff, 64, 17, 0, 0]);
  p.set([10, 0, 0, 1, 10, 0, 0, 2], 12);
  return p;
}

/** Accumulates results so the work cannot be optimised away. */
let sink = 0;

const FIRST = ipv4Frag(0, true, 1480);
const LAST = ipv4Frag(185, false, 520);

/** The parse of a fragment as `lb` hands it to the table: key in id form (fragment id 0). */
function fragParse(pkt: Uint8Array): KeyParse {
  const p = new KeyParse();
  const rc = parseKeyAt(p, pkt, 0, pkt.length, ETH_P_IP, 0);
  if ((rc & RC_FIRST_FRAG) !== 0) setIdForm(p.key, p.fragId);
  return p;
}

/** Sets the id of a parse's id-form key (bytes 32..35). */
function setId(key: Uint8Array, id: number): void {
  key[32] = id & 0xff;
  key[33] = (id >>> 8) & 0xff;
  key[34] = (id >>> 16) & 0xff;
  key[35] = id >>> 24;
}

function makeTable(reassembler: number, ttlMs = 200, shared = false): FragTable {
  return new FragTable({
    shared,
    size: 500,
    buckets: 500,
    frags: 100,
    mtu: 1500,
    ttlMs,
    reassembler,
    stats: new ArrayBuffer(FTSHM_SIZE),
    inject: (_b, len) => {
      sink += len;
    },
  });
}

function datagramBench(ft: FragTable, stepNs: number, outOfOrder: boolean): () => void {
  const first = fragParse(FIRST);
  const last = fragParse(LAST);
  let id = 0;
  let now = 1e12;
  return () => {
    id = (id + 1) & 0xffffffff;
    setId(first.key, id);
    setId(last.key, id);
    now += stepNs;
    if (outOfOrder) {
      sink += ft.nonFirst(last, LAST, 0, LAST.length, now);
      sink += ft.first(first, 7, FIRST, 0, FIRST.length, now) ? 1 : 0;
    } else {
      sink += ft.first(first, 7, FIRST, 0, FIRST.length, now) ? 1 : 0;
      sink += ft.nonFirst(last, LAST, 0, LAST.length, now);
    }
  };
}

Deno.bench(
  "first + non-first, in order, table full (1 µs/datagram, ttl 200 ms)",
  { group: "datagram", baseline: true },
  datagramBench(makeTable(0), 1_000, false),
);

Deno.bench(
  "first + non-first, in order, steady state (1 ms/datagram: ~200 live entries)",
  { group: "datagram" },
  datagramBench(makeTable(0), 1_000_000, false),
);

Deno.bench(
  "first + non-first, in order, --reassembler=64 (entry freed on completion)",
  { group: "datagram" },
  datagramBench(makeTable(64), 1_000, false),
);

Deno.bench(
  "non-first stored + first re-injects it (1 ms/datagram)",
  { group: "datagram" },
  datagramBench(makeTable(0), 1_000_000, true),
);

// The same with the table the daemons use: in a SharedArrayBuffer, every call under its lock
// (uncontended here: one thread), as all queue threads share one table.
Deno.bench(
  "shared table (lock): first + non-first, in order, steady state (1 ms/datagram)",
  { group: "shared" },
  datagramBench(makeTable(0, 200, true), 1_000_000, false),
);
Deno.bench(
  "private table: first + non-first, in order, steady state (1 ms/datagram)",
  { group: "shared", baseline: true },
  datagramBench(makeTable(0, 200, false), 1_000_000, false),
);
Deno.bench(
  "shared table (lock): non-first stored + first re-injects it (1 ms/datagram)",
  { group: "shared" },
  datagramBench(makeTable(0, 200, true), 1_000_000, true),
);

// Lookup hit of a valid entry: the cost of each further fragment of a datagram.
const hitTable = makeTable(0, 1_000_000);
const hitFirst = fragParse(FIRST);
const hitLast = fragParse(LAST);
setId(hitFirst.key, 0x42);
setId(hitLast.key, 0x42);
hitTable.first(hitFirst, 9, FIRST, 0, FIRST.length, 1e12);
let hitNow = 1e12;
Deno.bench("non-first fragment, valid entry (lookup hit)", { group: "fragment" }, () => {
  hitNow += 1000;
  sink += hitTable.nonFirst(hitLast, LAST, 0, LAST.length, hitNow);
});

addEventListener("unload", () => {
  if (sink === 0.5) console.log(sink);
});
