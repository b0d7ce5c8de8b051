/**
 * The addresses, ports, ICMP type/code and fragment id that packet trace lines carry after
 * 1.2.0's fields (docs/COMPATIBILITY.md D60), for IPv4 and IPv6, from packets built byte by byte.
 */
import assert from "node:assert/strict";
import { endpointsTail, packetEndpoints } from "../../../lib/trace/packet_lines.ts";
import { ETH_P_IP, ETH_P_IPV6, KeyParse, parseKeyAt } from "../../../lib/packet/parse.ts";

const C = [10, 0, 0, 5]; // client
const V = [10, 0, 0, 1]; // VIP
const C6 = [0x10, 0, ...Array(13).fill(0), 5]; // 1000::5
const V6 = [0x10, 0, ...Array(13).fill(0), 1]; // 1000::1

function ipv4(proto: number, src: number[], dst: number[], l4: number[], frag = [0, 0, 0, 0]) {
  const total = 20 + l4.length;
  // id (2 bytes) and flags/offset (2 bytes) come from `frag`.
  return [0x45, 0, total >> 8, total & 0xff, ...frag, 64, proto, 0, 0, ...src, ...dst, ...l4];
}

function ipv6(nh: number, src: number[], dst: number[], l4: number[]) {
  return [0x60, 0, 0, 0, l4.length >> 8, l4.length & 0xff, nh, 64, ...src, ...dst, ...l4];
}

const ports = (s: number, d: number) => [s >> 8, s & 0xff, d >> 8, d & 0xff];
const udp = (
  s: number,
  d: number,
  payload = 4,
) => [...ports(s, d), 0, 8 + payload, 0, 0, ...Array(payload).fill(0)];
const tcp = (s: number, d: number) => [...ports(s, d), ...Array(16).fill(0), 0];

function where(bytes: number[]): string {
  const pkt = Uint8Array.from(bytes);
  const p = new KeyParse();
  const rc = parseKeyAt(p, pkt, 0, pkt.length, (bytes[0] >> 4) === 6 ? ETH_P_IPV6 : ETH_P_IP, 0);
  assert.ok(rc >= 0, `parsable: rc ${rc}`);
  return packetEndpoints(p, pkt);
}

Deno.test("packetEndpoints: IPv4 and IPv6 addresses and ports (TCP, UDP)", () => {
  assert.equal(where(ipv4(6, C, V, tcp(40000, 80))), "10.0.0.5:40000 -> 10.0.0.1:80");
  assert.equal(where(ipv6(17, C6, V6, udp(40001, 5001))), "[1000::5]:40001 -> [1000::1]:5001");
});

Deno.test("packetEndpoints: ICMP type and code; an ICMP error names the flow it was balanced as", () => {
  const echo = [8, 0, 0, 0, 0x12, 0x34, 0, 1, 0, 0];
  assert.equal(where(ipv4(1, C, V, echo)), "10.0.0.5 -> 10.0.0.1, icmp type=8 code=0");
  const echo6 = [128, 0, 0, 0, 0x12, 0x34, 0, 1, 0, 0];
  assert.equal(where(ipv6(58, C6, V6, echo6)), "1000::5 -> 1000::1, icmp6 type=128 code=0");
  // A router's "fragmentation needed" to the VIP, quoting the VIP's reply to the client.
  const quoted = ipv4(6, V, C, tcp(80, 40000)).slice(0, 28);
  const needFrag = [3, 4, 0, 0, 0, 0, 0x05, 0x78, ...quoted, 0];
  assert.equal(
    where(ipv4(1, [192, 168, 0, 9], V, needFrag)),
    "192.168.0.9 -> 10.0.0.1, icmp type=3 code=4, flow 10.0.0.5:40000 -> 10.0.0.1:80",
  );
  const quoted6 = ipv6(17, V6, C6, udp(5001, 40001)).slice(0, 48);
  const tooBig = [2, 0, 0, 0, 0, 0, 0x05, 0x00, ...quoted6, 0];
  assert.equal(
    where(ipv6(58, [0x20, 1, ...Array(13).fill(0), 9], V6, tooBig)),
    "2001::9 -> 1000::1, icmp6 type=2 code=0, flow [1000::5]:40001 -> [1000::1]:5001",
  );
});

Deno.test("packetEndpoints: fragments show the id as on the wire and the offset; non-first ones no ports", () => {
  const id = [0x12, 0x34]; // 4660
  assert.equal(
    where(ipv4(17, C, V, udp(40000, 80, 16), [...id, 0x20, 0])),
    "10.0.0.5:40000 -> 10.0.0.1:80, frag id=4660 offset=0",
  );
  assert.equal(
    where(ipv4(17, C, V, Array(16).fill(0xaa), [...id, 0, 185])),
    "10.0.0.5 -> 10.0.0.1, frag id=4660 offset=1480",
  );
  // IPv6 fragment header: next header UDP, offset and M flag, identification 0x00012345.
  const fh = (offset: number, more: boolean) => [
    17,
    0,
    (offset >> 8) & 0xff,
    (offset & 0xf8) | (more ? 1 : 0),
    0,
    1,
    0x23,
    0x45,
  ];
  assert.equal(
    where(ipv6(44, C6, V6, [...fh(0, true), ...udp(40001, 5001, 16)])),
    "[1000::5]:40001 -> [1000::1]:5001, frag id=74565 offset=0",
  );
  assert.equal(
    where(ipv6(44, C6, V6, [...fh(1448, false), ...Array(16).fill(0xaa)])),
    "1000::5 -> 1000::1, frag id=74565 offset=1448",
  );
});

Deno.test("endpointsTail: ', ' and the packet when it parsed; nothing (1.2.0's line) when not", () => {
  const good = Uint8Array.from(ipv4(17, C, V, udp(40000, 80)));
  const p = new KeyParse();
  assert.ok(parseKeyAt(p, good, 0, good.length, ETH_P_IP, 0) >= 0);
  assert.equal(endpointsTail(p, good), ", 10.0.0.5:40000 -> 10.0.0.1:80");
  const bad = Uint8Array.from([0x45, 0, 0]); // a truncated IPv4 header
  assert.ok(parseKeyAt(p, bad, 0, bad.length, ETH_P_IP, 0) < 0);
  assert.equal(endpointsTail(p, bad), "");
});
