/**
 * nf_tables messages against the bytes nft 1.0.6 sends for the same objects (captured with
 * `nft --debug=mnl -f` on `table inet fpspike { map fp4 { type ipv4_addr . ipv4_addr .
 * inet_proto . inet_service . inet_service : mark; size 65536; flags timeout; timeout 5s } }`,
 * the attributes compared as a set: nft orders some of them differently), and the reply
 * parsers on messages laid out as the kernel sends them.
 */
import assert from "node:assert/strict";
import { NlBuilder } from "../../../lib/nft/builder.ts";
import { concatType, newMap, newTable } from "../../../lib/nft/nf_tables.ts";
import { parseCounterObject, readAcks } from "../../../lib/nft/replies.ts";

/** Top-level attributes of the first message in `b`: type -> payload hex. */
function attrs(bytes: Uint8Array, len: number): Map<number, string> {
  const v = new DataView(bytes.buffer, bytes.byteOffset);
  const out = new Map<number, string>();
  for (let off = 20; off < len;) {
    const alen = v.getUint16(off, true);
    const type = v.getUint16(off + 2, true) & 0x3fff;
    out.set(
      type,
      [...bytes.subarray(off + 4, off + alen)].map((x) => x.toString(16).padStart(2, "0")).join(""),
    );
    off += (alen + 3) & ~3;
  }
  return out;
}

Deno.test("NEWTABLE: nft's attributes, family inet", () => {
  const b = new NlBuilder(256);
  newTable(b, 1, "fpspike");
  assert.equal(b.length, 40);
  assert.equal(b.bytes[16], 1, "NFPROTO_INET");
  assert.deepEqual(attrs(b.bytes, b.length), new Map([[1, "66707370696b6500"], [2, "00000000"]]));
});

Deno.test("NEWSET of the IPv4 map: nft's key type, lengths, flags, size and timeout", () => {
  assert.equal(concatType([7, 7, 12, 13, 13]), 0x071cc34d);
  const b = new NlBuilder(512);
  newMap(b, 4, {
    table: "fpspike",
    name: "fp4",
    id: 1,
    keyType: concatType([7, 7, 12, 13, 13]),
    keyLen: 20,
    dataType: 19,
    dataLen: 4,
    size: 65536,
    timeoutMs: 5000,
  });
  const a = attrs(b.bytes, b.length);
  // From nft's message (seq 4): NFTA_SET_TABLE .. NFTA_SET_TIMEOUT (nft adds userdata, 13).
  assert.equal(a.get(1), "66707370696b6500");
  assert.equal(a.get(2), "66703400");
  assert.equal(a.get(3), "00000018", "NFT_SET_MAP | NFT_SET_TIMEOUT");
  assert.equal(a.get(4), "071cc34d");
  assert.equal(a.get(5), "00000014");
  assert.equal(a.get(6), "00000013");
  assert.equal(a.get(7), "00000004");
  assert.equal(a.get(10), "00000001");
  assert.equal(a.get(9), "0800010000010000", "NFTA_SET_DESC { NFTA_SET_DESC_SIZE 65536 }");
  assert.equal(a.get(11), "0000000000001388", "5000 ms");
});

Deno.test("acks and errors: the request's sequence number and errno; counter values", () => {
  // Two NLMSG_ERROR messages (ack for 5, ENFILE for 6) and a NOOP, as one datagram.
  const m = new Uint8Array(36 * 2 + 16);
  const v = new DataView(m.buffer);
  for (const [i, seq, err] of [[0, 5, 0], [1, 6, -23]]) {
    v.setUint32(i * 36, 36, true);
    v.setUint16(i * 36 + 4, 2, true);
    v.setInt32(i * 36 + 16, err, true);
    v.setUint32(i * 36 + 28, seq, true);
  }
  v.setUint32(72, 16, true);
  v.setUint16(76, 1, true);
  const got: [number, number][] = [];
  assert.equal(readAcks(m, m.length, (s, e) => got.push([s, e])), 3);
  assert.deepEqual(got, [[5, 0], [6, 23]]);
  assert.equal(readAcks(m, 50, () => {}), 1, "a cut message ends the walk");

  // NFT_MSG_NEWOBJ { NFTA_OBJ_DATA { NFTA_COUNTER_BYTES 9000, NFTA_COUNTER_PACKETS 2^32 + 7 } }
  const o = new Uint8Array(20 + 4 + 12 + 12);
  const ov = new DataView(o.buffer);
  ov.setUint32(0, o.length, true);
  ov.setUint16(4, (10 << 8) | 18, true);
  ov.setUint16(20, 28, true);
  ov.setUint16(22, 4 | 0x8000, true);
  ov.setUint16(24, 12, true);
  ov.setUint16(26, 1, true);
  ov.setUint32(32, 9000, false);
  ov.setUint16(36, 12, true);
  ov.setUint16(38, 2, true);
  ov.setUint32(40, 1, false);
  ov.setUint32(44, 7, false);
  assert.deepEqual(parseCounterObject(o, o.length), { packets: 2 ** 32 + 7, bytes: 9000 });
  assert.equal(parseCounterObject(o, 30), undefined);
});
