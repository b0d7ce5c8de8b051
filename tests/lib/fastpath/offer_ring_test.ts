/**
 * The offer ring against a plain array queue of the same capacity (random batches of
 * offers and random reads), and the map key layout against nft's concatenation rule
 * (each field padded to 4 bytes).
 */
import assert from "node:assert/strict";
import { OfferReader, OfferRing, OfferWriter } from "../../../lib/fastpath/offer_ring.ts";
import { encodeKey } from "../../../lib/fastpath/nft_key.ts";
import { prng } from "../../../testkit/prng.ts";

Deno.test("offer ring: same offers, order and drops as a bounded array queue", () => {
  const rnd = prng(11);
  const slots = 16;
  const mem = OfferRing.create(slots);
  const w = new OfferWriter(mem);
  const r = new OfferReader(mem);
  const model: { mark: number; epoch: number; key: string }[] = [];
  let published = 0; // model entries visible to the reader
  let drops = 0;
  const key = new Uint8Array(40);
  for (let round = 0; round < 2000; round++) {
    w.begin();
    const n = Math.floor(rnd() * 10);
    for (let i = 0; i < n; i++) {
      for (let b = 0; b < 40; b++) key[b] = Math.floor(rnd() * 256);
      const v6 = rnd() < 0.5;
      const mark = Math.floor(rnd() * 2 ** 31);
      const ok = w.offer(key, v6, mark, round);
      const out = new Uint8Array(44);
      const len = encodeKey(key, v6, out, 0);
      const full = model.length >= slots;
      assert.equal(ok, !full);
      if (ok) model.push({ mark, epoch: round, key: out.subarray(0, len).join() });
      else drops++;
    }
    w.end();
    published = model.length;
    const reads = Math.floor(rnd() * 12);
    for (let i = 0; i < reads; i++) {
      const got = r.next();
      assert.equal(got, published > 0);
      if (!got) break;
      const m = model.shift()!;
      published--;
      assert.equal(r.mark, m.mark);
      assert.equal(r.epoch, m.epoch);
      assert.equal(r.bytes.subarray(r.keyAt, r.keyAt + r.keyLen).join(), m.key);
    }
    r.release();
  }
  assert.equal(r.dropped, drops);
  assert.ok(drops > 0, "the ring filled up at times");
});

Deno.test("offer ring: the counts wrap at 2^32 without losing the full test", () => {
  const mem = OfferRing.create(8);
  const words = new Int32Array(mem, 0, 2);
  words[0] = words[1] = 2 ** 31 - 3; // tail and head just before the int32 wrap
  const w = new OfferWriter(mem);
  const r = new OfferReader(mem);
  const key = new Uint8Array(40);
  let seen = 0;
  for (let round = 0; round < 4; round++) {
    w.begin();
    let accepted = 0;
    for (let i = 0; i < 20; i++) if (w.offer(key, false, round * 100 + i, 0)) accepted++;
    w.end();
    assert.equal(accepted, 8, `round ${round}: exactly the ring's size`);
    for (let i = 0; i < 8; i++) {
      assert.ok(r.next());
      assert.equal(r.mark, round * 100 + i, "in order, nothing overwritten");
      seen++;
    }
    assert.equal(r.next(), false);
  }
  assert.equal(seen, 32);
});

Deno.test("map key: addresses, protocol, ports, each field padded to 4 bytes", () => {
  const key = new Uint8Array(40);
  for (let i = 0; i < 32; i++) key[i] = i + 1;
  key[34] = 6;
  key.set([0x12, 0x34, 0x56, 0x78], 36);
  const out = new Uint8Array(44);
  assert.equal(encodeKey(key, true, out, 0), 44);
  assert.deepEqual([...out.subarray(0, 32)], [...key.subarray(0, 32)]);
  assert.deepEqual([...out.subarray(32)], [6, 0, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78, 0, 0]);
  assert.equal(encodeKey(key, false, out, 0), 20);
  assert.deepEqual([...out.subarray(0, 8)], [13, 14, 15, 16, 29, 30, 31, 32]);
});
