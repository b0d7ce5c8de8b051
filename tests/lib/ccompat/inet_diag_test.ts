/**
 * The sock_diag lookup messages (lib/ccompat/inet_diag.ts) against the layouts of
 * `linux/netlink.h` and `linux/inet_diag.h`, written out byte by byte here.
 */
import assert from "node:assert/strict";
import {
  INET_DIAG_REQUEST_SIZE,
  liveOwner,
  readInetDiagReply,
  writeInetDiagRequest,
} from "../../../lib/ccompat/inet_diag.ts";

const v4 = (a: number, b: number, c: number, d: number, port: number) => ({
  addr: new Uint8Array([a, b, c, d]),
  port,
});
const CLIENT = v4(127, 0, 0, 1, 0xa001);
const SERVER = v4(127, 0, 0, 2, 8080);
const le32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
const le16 = (v: number) => [v & 0xff, v >>> 8];
const be16 = (v: number) => [v >>> 8, v & 0xff];
const pad = (bytes: number[], n: number) => [...bytes, ...new Array(n - bytes.length).fill(0)];

/** `inet_diag_sockid` of (src, dst) as the kernel reads it. */
const sockid = (src: number[], sport: number, dst: number[], dport: number) => [
  ...be16(sport),
  ...be16(dport),
  ...pad(src, 16),
  ...pad(dst, 16),
  ...le32(0), // if
  ...le32(0xffffffff),
  ...le32(0xffffffff), // INET_DIAG_NOCOOKIE
];

Deno.test("inet_diag: the request for one IPv4 socket, byte by byte", () => {
  const buf = new Uint8Array(100).fill(0xee);
  assert.equal(writeInetDiagRequest(buf, 0x01020304, CLIENT, SERVER), INET_DIAG_REQUEST_SIZE);
  const want = [
    ...le32(72), // nlmsg_len
    ...le16(20), // SOCK_DIAG_BY_FAMILY
    ...le16(1), // NLM_F_REQUEST, no NLM_F_DUMP: an exact lookup
    ...le32(0x01020304), // seq
    ...le32(0), // pid
    2, // AF_INET
    6, // IPPROTO_TCP
    0, // ext
    0, // pad
    ...le32(0xffffffff), // every state
    ...sockid([127, 0, 0, 1], 0xa001, [127, 0, 0, 2], 8080),
  ];
  assert.deepEqual([...buf.subarray(0, 72)], want);
  assert.equal(buf[72], 0xee, "nothing written past the request");
});

Deno.test("inet_diag: IPv4-mapped ends are asked as IPv4; IPv6 as IPv6; mixed not at all", () => {
  const mapped = (d: number, port: number) => ({
    addr: new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, d]),
    port,
  });
  const a = new Uint8Array(72);
  const b = new Uint8Array(72);
  writeInetDiagRequest(a, 1, mapped(1, 0xa001), mapped(2, 8080));
  writeInetDiagRequest(b, 1, CLIENT, SERVER);
  assert.deepEqual(a, b);
  const six = (last: number, port: number) => ({
    addr: new Uint8Array([...new Array(15).fill(0), last]),
    port,
  });
  writeInetDiagRequest(a, 1, six(1, 1000), six(1, 2000));
  assert.equal(a[16], 10, "AF_INET6");
  assert.deepEqual(
    [...a.subarray(24, 72)],
    sockid([...new Array(15).fill(0), 1], 1000, [...new Array(15).fill(0), 1], 2000),
  );
  assert.equal(writeInetDiagRequest(a, 1, CLIENT, six(1, 2000)), 0);
});

/** A reply datagram: `inet_diag_msg` of a socket, as the kernel sends it. */
function reply(seq: number, state: number, uid: number, inode: number, src = CLIENT, dst = SERVER) {
  return new Uint8Array([
    ...le32(16 + 72),
    ...le16(20),
    ...le16(0),
    ...le32(seq),
    ...le32(0),
    2, // family
    state,
    0, // timer
    0, // retrans
    ...sockid([...src.addr], src.port, [...dst.addr], dst.port),
    ...le32(0), // expires
    ...le32(0), // rqueue
    ...le32(0), // wqueue
    ...le32(uid),
    ...le32(inode),
  ]);
}

Deno.test("inet_diag: replies and who owns the socket, failing closed", () => {
  const ok = reply(9, 1, 65534, 4242);
  const a = readInetDiagReply(ok, ok.length, 9);
  assert.deepEqual(a, { state: 1, uid: 65534, inode: 4242, local: CLIENT, remote: SERVER });
  assert.equal(liveOwner(a, CLIENT, SERVER), 65534);
  assert.equal(readInetDiagReply(ok, ok.length, 8), undefined, "another request's answer");
  assert.equal(readInetDiagReply(ok, 40, 9), undefined, "truncated");
  // The client closed: an orphan (FIN_WAIT2, inode 0) or time-wait socket says uid 0.
  for (const [state, inode] of [[5, 0], [6, 0], [10, 77], [2, 77], [7, 77]]) {
    const r = reply(9, state, 0, inode);
    assert.equal(liveOwner(readInetDiagReply(r, r.length, 9), CLIENT, SERVER), undefined);
  }
  // Live states with an inode: ESTABLISHED, FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK, CLOSING.
  for (const state of [1, 4, 5, 8, 9, 11]) {
    const r = reply(9, state, 0, 5);
    assert.equal(liveOwner(readInetDiagReply(r, r.length, 9), CLIENT, SERVER), 0, `${state}`);
  }
  // A socket of other ends (e.g. a listener the kernel found instead) is not the peer.
  const other = reply(9, 1, 0, 5, v4(127, 0, 0, 1, 0xa001), v4(127, 0, 0, 2, 9999));
  assert.equal(liveOwner(readInetDiagReply(other, other.length, 9), CLIENT, SERVER), undefined);
  // NLMSG_ERROR -ENOENT: no such socket.
  const err = new Uint8Array([
    ...le32(36),
    ...le16(2),
    ...le16(0),
    ...le32(9),
    ...le32(0),
    ...le32(-2 >>> 0),
    ...new Array(16).fill(0),
  ]);
  const e = readInetDiagReply(err, err.length, 9);
  assert.deepEqual(e, { errno: 2 });
  assert.equal(liveOwner(e, CLIENT, SERVER), undefined);
});
