/** The key log against a plain array: appends, takes from the front, capacity. */
import assert from "node:assert/strict";
import { KeyLog } from "../../../lib/fastpath/key_log.ts";
import { prng } from "../../../testkit/prng.ts";

Deno.test("key log: same keys in the same order as an array queue, bounded", () => {
  const rnd = prng(3);
  const log = new KeyLog(20, 300);
  let overflows = 0;
  const model: string[] = [];
  let appended = 0; // since the log was last taken empty
  const key = new Uint8Array(25);
  for (let step = 0; step < 20000; step++) {
    if (rnd() < 0.9) {
      for (let i = 0; i < key.length; i++) key[i] = Math.floor(rnd() * 256);
      const ok = log.add(key, 5);
      assert.equal(ok, appended < 300);
      if (ok) {
        model.push(key.subarray(5, 25).join());
        appended++;
      } else {
        overflows++;
        assert.equal(log.overflowed, true);
        log.clear(); // what the writer does after a whole flush
        model.length = appended = 0;
        continue;
      }
    } else {
      const n = Math.floor(rnd() * 9);
      const k = log.take(n);
      assert.equal(k, Math.min(n, model.length));
      for (let i = 0; i < k; i++) {
        const at = (log.from + i) * 20;
        assert.equal(log.bytes.subarray(at, at + 20).join(), model.shift());
      }
      if (model.length === 0) appended = 0;
    }
    assert.equal(log.pending, model.length);
  }
  assert.ok(overflows > 0, "the log filled up at times");
});
