import assert from "node:assert/strict";
import {
  isLoopback,
  procNetTcpHex,
  procNetTcpUid,
  unmapIPv4,
} from "../../../lib/ccompat/proc_net_tcp.ts";
import { parseIPv4, parseIPv6 } from "../../../lib/ccompat/inet.ts";

const v4 = (s: string) => parseIPv4(s)!;
const v6 = (s: string) => parseIPv6(s)!;

// Literal lines as Linux prints them (x86-64).
const TCP = [
  "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
  "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0",
  "   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 20 4 30 10 -1",
  "   2: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000 65534        0 4244 1 0000000000000000 20 4 30 10 -1",
  "   3: 0101A8C0:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 4245 1 0000000000000000 20 4 30 10 -1",
].join("\n");

const TCP6 = [
  "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
  "   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5000 1 0000000000000000 100 0 0 10 0",
  "   1: 00000000000000000000000001000000:E2A6 00000000000000000000000001000000:1F90 01 00000000:00000000 00:00000000 00000000 65534        0 5001 1 0000000000000000 20 4 30 10 -1",
  "   2: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:E2A6 01 00000000:00000000 00:00000000 00000000     0        0 5002 1 0000000000000000 20 4 30 10 -1",
  "   3: B80D0120000000000000000001000000:E2A6 00000000000000000000000001000000:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 5003 1 0000000000000000 20 4 30 10 -1",
].join("\n");

Deno.test("procNetTcpHex: IPv4 words in little-endian host order, port big-endian", () => {
  assert.deepStrictEqual(procNetTcpHex({ addr: v4("127.0.0.1"), port: 8080 }), "0100007F:1F90");
  assert.deepStrictEqual(procNetTcpHex({ addr: v4("192.168.1.1"), port: 0xd431 }), "0101A8C0:D431");
  assert.deepStrictEqual(procNetTcpHex({ addr: v4("0.0.0.0"), port: 0 }), "00000000:0000");
});

Deno.test("procNetTcpHex: IPv6 as four words, each printed the same way", () => {
  assert.deepStrictEqual(
    procNetTcpHex({ addr: v6("::1"), port: 8080 }),
    "00000000000000000000000001000000:1F90",
  );
  assert.deepStrictEqual(
    procNetTcpHex({ addr: v6("2001:db8::1"), port: 0xe2a6 }),
    "B80D0120000000000000000001000000:E2A6",
  );
});

Deno.test("procNetTcpUid: the peer's own line (local = peer, remote = us) gives its uid", () => {
  const us = { addr: v4("127.0.0.1"), port: 8080 };
  assert.deepStrictEqual(procNetTcpUid(TCP, { addr: v4("127.0.0.1"), port: 0xd431 }, us), 65534);
  // Our accepted socket (local = us) is a different line: uid 0.
  assert.deepStrictEqual(procNetTcpUid(TCP, us, { addr: v4("127.0.0.1"), port: 0xd431 }), 0);
  assert.deepStrictEqual(procNetTcpUid(TCP, { addr: v4("192.168.1.1"), port: 0xd431 }, us), 1000);
});

Deno.test("procNetTcpUid: IPv6 lines", () => {
  const us = { addr: v6("::1"), port: 8080 };
  assert.deepStrictEqual(procNetTcpUid(TCP6, { addr: v6("::1"), port: 0xe2a6 }, us), 65534);
  assert.deepStrictEqual(procNetTcpUid(TCP6, { addr: v6("2001:db8::1"), port: 0xe2a6 }, us), 1000);
});

Deno.test("procNetTcpUid: no matching line, header only, or a garbled uid is undefined", () => {
  const us = { addr: v4("127.0.0.1"), port: 8080 };
  assert.deepStrictEqual(
    procNetTcpUid(TCP, { addr: v4("127.0.0.1"), port: 0xd432 }, us),
    undefined,
  );
  assert.deepStrictEqual(
    procNetTcpUid(TCP, { addr: v4("127.0.0.2"), port: 0xd431 }, us),
    undefined,
  );
  assert.deepStrictEqual(procNetTcpUid(TCP.split("\n")[0], us, us), undefined);
  assert.deepStrictEqual(procNetTcpUid("", us, us), undefined);
  const bad = "   9: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000 x 0 1";
  assert.deepStrictEqual(
    procNetTcpUid(bad, { addr: v4("127.0.0.1"), port: 0xd431 }, us),
    undefined,
  );
});

Deno.test("isLoopback and unmapIPv4", () => {
  assert.deepStrictEqual(isLoopback(v4("127.0.0.1")), true);
  assert.deepStrictEqual(isLoopback(v4("127.255.3.4")), true);
  assert.deepStrictEqual(isLoopback(v4("128.0.0.1")), false);
  assert.deepStrictEqual(isLoopback(v4("10.0.0.1")), false);
  assert.deepStrictEqual(isLoopback(v6("::1")), true);
  assert.deepStrictEqual(isLoopback(v6("::2")), false);
  assert.deepStrictEqual(isLoopback(v6("::")), false);
  assert.deepStrictEqual(isLoopback(v6("::ffff:127.0.0.5")), true);
  assert.deepStrictEqual(isLoopback(v6("::ffff:10.0.0.1")), false);
  assert.deepStrictEqual(isLoopback(v6("fe80::1")), false);
  assert.deepStrictEqual(isLoopback(new Uint8Array(3)), false);
  assert.deepStrictEqual(unmapIPv4(v6("::ffff:127.0.0.5")), v4("127.0.0.5"));
  assert.deepStrictEqual(unmapIPv4(v6("::1")), undefined);
  assert.deepStrictEqual(unmapIPv4(v4("127.0.0.1")), undefined);
});

// A client (127.0.0.1:0xA5BE) of a server on port 0xC922 that sent its request and closed before
// the server accepted, as Linux 6.18 prints it: the orphaned FIN_WAIT2 socket is a time-wait
// socket, with uid 0 and inode 0 whoever made it. Then the same after the server closed
// (TIME_WAIT), a request socket (SYN_RECV, the listener's uid), and live sockets of uid 65534.
const SERVER = { addr: v4("127.0.0.1"), port: 0xc922 };
const CLIENT = { addr: v4("127.0.0.1"), port: 0xa5be };
const ORPHAN =
  "   3: 0100007F:A5BE 0100007F:C922 05 00000000:00000000 03:0000176F 00000000     0        0 0 3 000000004ec3342d";
const TIME_WAIT =
  "   3: 0100007F:A5BE 0100007F:C922 06 00000000:00000000 03:00001770 00000000     0        0 0 3 000000004ec3342d";
const SYN_RECV =
  "   4: 0100007F:A5BE 0100007F:C922 03 00000000:00000000 02:00000064 00000000     0        0 0 1 0000000012345678";
const live = (st: string, uid: number, inode: number) =>
  `   5: 0100007F:A5BE 0100007F:C922 ${st} 00000000:00000000 00:00000000 00000000 ${uid}        0 ${inode} 1 000000002aae44d6 20 0 0 10 -1`;
const HEADER = TCP.split("\n")[0];
const rows = (...lines: string[]) => [HEADER, ...lines].join("\n");

Deno.test("procNetTcpUid: an orphaned (closed) or time-wait client is unknown, not uid 0", () => {
  assert.deepStrictEqual(procNetTcpUid(rows(ORPHAN), CLIENT, SERVER), undefined);
  assert.deepStrictEqual(procNetTcpUid(rows(TIME_WAIT), CLIENT, SERVER), undefined);
  assert.deepStrictEqual(procNetTcpUid(rows(SYN_RECV), CLIENT, SERVER), undefined);
  // A state of a live socket but no inode: not a socket a process holds.
  assert.deepStrictEqual(procNetTcpUid(rows(live("01", 0, 0)), CLIENT, SERVER), undefined);
  // Not a connected peer (SYN_SENT, CLOSE, LISTEN), even with an inode.
  for (const st of ["02", "07", "0A"]) {
    assert.deepStrictEqual(procNetTcpUid(rows(live(st, 0, 77)), CLIENT, SERVER), undefined, st);
  }
});

Deno.test("procNetTcpUid: live sockets give their owner, also half-closed ones", () => {
  for (const st of ["01", "04", "05", "08", "09", "0B", "0b"]) {
    assert.deepStrictEqual(procNetTcpUid(rows(live(st, 65534, 100188)), CLIENT, SERVER), 65534, st);
  }
  assert.deepStrictEqual(procNetTcpUid(rows(live("01", 0, 100188)), CLIENT, SERVER), 0);
  // A stale time-wait row of the same ends next to the live one: the live one counts.
  assert.deepStrictEqual(
    procNetTcpUid(rows(TIME_WAIT, live("01", 65534, 9), ORPHAN), CLIENT, SERVER),
    65534,
  );
  // The same live row twice (a row repeated while the kernel's table changed): its uid.
  assert.deepStrictEqual(
    procNetTcpUid(rows(live("01", 1000, 9), live("01", 1000, 9)), CLIENT, SERVER),
    1000,
  );
});

Deno.test("procNetTcpUid: live rows that disagree, or a garbled inode, are unknown", () => {
  assert.deepStrictEqual(
    procNetTcpUid(rows(live("01", 0, 9), live("01", 65534, 10)), CLIENT, SERVER),
    undefined,
  );
  const garbled = live("01", 0, 9).replace(" 9 1 ", " 9x 1 ");
  assert.deepStrictEqual(procNetTcpUid(rows(garbled), CLIENT, SERVER), undefined);
  const short = "   5: 0100007F:A5BE 0100007F:C922 01 00000000:00000000 00:00000000 00000000 0";
  assert.deepStrictEqual(procNetTcpUid(rows(short), CLIENT, SERVER), undefined);
});
