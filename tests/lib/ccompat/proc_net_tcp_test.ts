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
