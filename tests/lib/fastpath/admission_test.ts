/**
 * Admission and the element count against plain reference models: a Map of every tuple
 * ever offered (no slot sharing: few tuples, many slots, so the direct-mapped table never
 * evicts), and a list of every add with its time.
 */
import assert from "node:assert/strict";
import { Admission, ElementClock } from "../../../lib/fastpath/admission.ts";
import { prng } from "../../../testkit/prng.ts";

/** The rule, stated plainly: add on the min-th offer within a timeout, then not until it expires. */
class ReferenceAdmission {
  #m = new Map<string, { added: boolean; count: number; time: number; epoch: number }>();
  constructor(readonly min: number, readonly timeout: number) {}
  admit(k: string, epoch: number, now: number): boolean {
    let e = this.#m.get(k);
    if (e !== undefined && e.epoch !== epoch) e = undefined;
    if (e?.added && now >= e.time) e = undefined;
    if (e !== undefined && !e.added && now - e.time >= this.timeout) e = undefined;
    if (e?.added) return false;
    const count = (e?.count ?? 0) + 1;
    if (count < this.min) {
      this.#m.set(k, { added: false, count, time: e?.time ?? now, epoch });
      return false;
    }
    this.#m.set(k, { added: true, count, time: now + this.timeout, epoch });
    return true;
  }
}

for (const min of [1, 2, 3]) {
  Deno.test(`admission (min ${min}): agrees with the reference model`, () => {
    const rnd = prng(min);
    const a = new Admission(1 << 16, min, 1000);
    const ref = new ReferenceAdmission(min, 1000);
    const keys = Array.from({ length: 40 }, (_, i) => Uint8Array.from([10, 0, 0, i, 17, 0, 0, 0]));
    let now = 0, epoch = 0, added = 0;
    for (let i = 0; i < 20000; i++) {
      now += rnd() * 20;
      if (rnd() < 0.001) epoch++;
      const k = keys[Math.floor(rnd() * keys.length)];
      const got = a.admit(k, 0, k.length, epoch, now);
      assert.equal(got, ref.admit(k.join(), epoch, now), `step ${i}`);
      if (got) added++;
    }
    assert.ok(added > 100);
  });
}

Deno.test("element clock: counts the adds of the last timeout, to the 100 ms step", () => {
  const rnd = prng(5);
  const c = new ElementClock(2000);
  const adds: [number, number][] = [];
  let now = 0;
  for (let i = 0; i < 5000; i++) {
    now += rnd() * 30;
    if (rnd() < 0.5) {
      const n = 1 + Math.floor(rnd() * 5);
      c.added(n, now);
      adds.push([now, n]);
    }
    if (rnd() < 0.002) {
      c.clear();
      adds.length = 0;
    }
    // An add counts from its step until its step's end + timeout has passed.
    const step = (t: number) => Math.floor(t / 100);
    const want = adds.filter(([t]) => step(t) >= step(now - 2000)).reduce((s, [, n]) => s + n, 0);
    assert.equal(c.count(now), want, `at ${now}`);
  }
});
