/**
 * Maglev microbenchmarks: populate for three table sizes (all N slots active),
 * lookup of a hashed key in a mapped table, and djb2 over a 40-byte key.
 * Run: `deno bench --allow-all bench/maglev_bench.ts`.
 */
import { createShm, unlinkShm } from "../ffi/shm.ts";
import { djb2, hashKey } from "../lib/packet/hash.ts";
import { KEY_LEN } from "../lib/packet/key.ts";
import { activate, fwmarkFor, initTable, populate } from "../lib/maglev/maglev.ts";
import { type MaglevTable, tableSize } from "../lib/maglev/table.ts";

function table(m: number, n: number): MaglevTable {
  const t = initTable(new ArrayBuffer(tableSize(m, n)), m, n, 0);
  t.active.set(Array.from({ length: n }, (_, i) => 1000 + i));
  return t;
}

for (const [m, n] of [[997, 32], [65537, 100], [65537, 1000]]) {
  const t = table(m, n);
  const out = new Int32Array(m);
  Deno.bench({
    name: `populate M=${m} N=${n}`,
    group: "populate",
    fn: () => populate(t.permutation, t.active, m, out),
  });
}

// A mapped table in /dev/shm, as the daemons see it.
const shmName = `nfqlbbench-${Deno.pid}`;
const mapping = createShm(shmName, tableSize(997, 32));
const mapped = initTable(mapping.buffer, 997, 32, 0);
activate(mapped, [100, 101, 102, 103]);
unlinkShm(shmName);

const keys: Uint8Array[] = [];
let seed = 1;
for (let k = 0; k < 1024; k++) {
  const key = new Uint8Array(KEY_LEN);
  for (let i = 0; i < KEY_LEN; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    key[i] = seed >>> 24;
  }
  keys.push(key);
}
const hashes = Uint32Array.from(keys, (k) => djb2(k));

let sink = 0;
Deno.bench({
  name: "lookup: fwmarkFor(hash) in a mapped table, 1024 hashes",
  group: "per-packet",
  fn: () => {
    for (let i = 0; i < hashes.length; i++) sink ^= fwmarkFor(mapped, hashes[i]);
  },
});
Deno.bench({
  name: "djb2 over a 40-byte key, 1024 keys",
  group: "per-packet",
  fn: () => {
    for (let i = 0; i < keys.length; i++) sink ^= djb2(keys[i]);
  },
});
Deno.bench({
  name: "hashKey + fwmarkFor, 1024 keys",
  group: "per-packet",
  fn: () => {
    for (let i = 0; i < keys.length; i++) sink ^= fwmarkFor(mapped, hashKey(keys[i], 1));
  },
});
globalThis.addEventListener("unload", () => {
  if (sink === 0.5) console.log(sink);
  mapping.close();
});
