/** The log rate limiter (lib/log/rate_limit.ts), with an injected clock. */
import assert from "node:assert/strict";
import { LogRateLimiter } from "../../../lib/log/rate_limit.ts";

Deno.test("rate limit: first N lines per interval pass, the rest are summarised", () => {
  const rl = new LogRateLimiter({ burst: 2, intervalMs: 1000 });
  const out: string[] = [];
  for (let i = 0; i < 5; i++) out.push(...rl.offer("readCmd", `bad ${i}`, 100 + i));
  assert.deepEqual(out, ["bad 0", "bad 1"]);
  assert.deepEqual(rl.flush(500), []);
  assert.deepEqual(rl.offer("readCmd", "bad 5", 1100), ["bad 2 ... repeated 3 times", "bad 5"]);
});

Deno.test("rate limit: keys are independent", () => {
  const rl = new LogRateLimiter({ burst: 1, intervalMs: 1000 });
  assert.deepEqual(rl.offer("a", "a0", 0), ["a0"]);
  assert.deepEqual(rl.offer("a", "a1", 1), []);
  assert.deepEqual(rl.offer("b", "b0", 2), ["b0"]);
  assert.deepEqual(rl.flush(999), []);
  assert.deepEqual(rl.flush(1001), ["a1 ... repeated 1 times"]);
  assert.deepEqual(rl.flush(5000), []);
  assert.deepEqual(rl.offer("a", "a2", 5000), ["a2"]);
});

Deno.test("rate limit: a flood of distinct keys is bounded by maxKeys", () => {
  const rl = new LogRateLimiter({ burst: 1, intervalMs: 1000, maxKeys: 4 });
  let passed = 0;
  for (let i = 0; i < 10000; i++) passed += rl.offer(`k${i}`, `line ${i}`, 10).length;
  assert.deepEqual(passed, 5); // 4 keys + the shared overflow key
  assert.deepEqual(rl.flush(2000), ["line 5 ... repeated 9995 times"]);
});
