/** lib/nfqueue/rcvbuf.ts: the SO_RCVBUF request rule and the start-up line. */
import assert from "node:assert/strict";
import { requestedRcvbuf, startupLine } from "../../../lib/nfqueue/rcvbuf.ts";

Deno.test("requestedRcvbuf: floor(qlength * mtu / 2) in u32, multiple of 4096", () => {
  assert.equal(requestedRcvbuf(1024, 1500), 765952);
  assert.equal(requestedRcvbuf(10, 1280), 4096);
  assert.equal(requestedRcvbuf(1, 1500), 0);
  // u32 wrap-around of the product: (2^32 - 1) * 1500 mod 2^32 = 2^32 - 1500.
  assert.equal(requestedRcvbuf(4294967295, 1500), Math.floor((2 ** 32 - 1500) / 2 / 4096) * 4096);
  assert.equal(requestedRcvbuf(65536, 65536), 0);
});

Deno.test("startupLine format", () => {
  assert.equal(
    startupLine(1024, 1500, { actual: 1531904, requested: 765952 }),
    "queue_length=1024, mtu=1500, SO_RCVBUF=1531904 (765952)",
  );
  assert.equal(
    startupLine(10, 1280, { actual: 212992, requested: 4096 }),
    "queue_length=10, mtu=1280, SO_RCVBUF=212992 (4096)",
  );
});
