/** djb2, hashKey and addressHash (docs/COMPATIBILITY.md#hashing-and-parsing, Appendix B). */
import assert from "node:assert/strict";
import { addressHash, djb2, hashKey } from "../../../lib/packet/hash.ts";
import { KEY_LEN, KEY_PROTO } from "../../../lib/packet/key.ts";

const hex = (s: string) => Uint8Array.from(s.match(/../g)!.map((b) => parseInt(b, 16)));

Deno.test("djb2 vectors", () => {
  assert.equal(djb2(new Uint8Array(0)), 5381);
  assert.equal(djb2(new Uint8Array(32)), 3911903493);
  assert.equal(djb2(new Uint8Array(40)), 4235337221);
});

Deno.test("djb2 equals the plain definition on random bytes", () => {
  let seed = 42;
  for (let t = 0; t < 200; t++) {
    const b = new Uint8Array(t % 64);
    for (let i = 0; i < b.length; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      b[i] = seed >>> 24;
    }
    let h = 5381n;
    for (const x of b) h = (h * 33n + BigInt(x)) % 2n ** 32n;
    assert.equal(djb2(b), Number(h));
  }
});

Deno.test("IPv4 TCP key from crafted.pcap #0 (Appendix B)", () => {
  const key = hex(
    "00000000000000000000ffff534dcaa700000000000000000000ffff0d25305e0000060095320eda",
  );
  assert.equal(key.length, KEY_LEN);
  assert.equal(hashKey(key, 0), 1487357159);
  assert.equal(hashKey(key, 1), 1487357159);
  assert.equal(addressHash(key), 1335268178);
});

Deno.test("hash_mode 1 hashes only the ports of SCTP; 65537 acts as 1, 0 and 2 do not", () => {
  const key = new Uint8Array(KEY_LEN);
  key.fill(7);
  key[KEY_PROTO] = 132;
  key[KEY_PROTO + 1] = 0;
  const portsOnly = djb2(key, 36, 40);
  assert.equal(hashKey(key, 1), portsOnly);
  assert.equal(hashKey(key, 65537), portsOnly);
  assert.equal(hashKey(key, 0), djb2(key));
  assert.equal(hashKey(key, 2), djb2(key));
  key[KEY_PROTO] = 6;
  assert.equal(hashKey(key, 1), djb2(key));
});
