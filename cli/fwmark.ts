/**
 * `fwmark`: compute the hash (and with `--shm` the fwmark) a packet daemon
 * would compute for an address pair (docs/COMPATIBILITY.md#command-line).
 * @module
 */
import { ENDPOINT_ACCEPTED, FWMARK_PROTO_ACCEPTED } from "../lib/hints/accepted.ts";
import { parseStrictInt } from "../lib/ccompat/cnum.ts";
import { addressHash, hashKey } from "../lib/packet/hash.ts";
import { KEY_DPORT, KEY_DST, KEY_LEN, KEY_PROTO, KEY_SPORT, KEY_SRC } from "../lib/packet/key.ts";
import { IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP } from "../lib/wire/ip_proto.ts";
import { mapIPv4, parseIPv4, parseIPv6 } from "../lib/ccompat/inet.ts";
import { type Command, die } from "./command.ts";
import { FWMARK_SPEC } from "./specs.ts";
import { openTable } from "../daemon/open_table.ts";

const MAX_ADDRESS_TEXT = 60;
const PROTOCOLS: Record<string, number> = {
  tcp: IPPROTO_TCP,
  udp: IPPROTO_UDP,
  sctp: IPPROTO_SCTP,
};

/** A parsed `a.b.c.d:port` or `[ipv6]:port` (IPv4 in mapped form). */
export interface Endpoint {
  readonly addr: Uint8Array;
  readonly port: number;
}

/** Parse an endpoint the way `fwmark --src/--dst` does; dies with 1.2.0's messages. */
export function parseEndpoint(arg: string): Endpoint {
  if (arg.length > MAX_ADDRESS_TEXT) die(`Address too long [${arg}]`);
  let host: string;
  let portText: string;
  let addr: Uint8Array | undefined;
  if (arg.includes("[")) {
    const m = /^\[([^\]]*)\]:(.*)$/.exec(arg);
    if (m === null) die(`Parse address failed [${arg}]\n  ${ENDPOINT_ACCEPTED}`);
    [, host, portText] = m;
    // 1.2.0 hashes uninitialised memory for a bracketed IPv4 address; use its mapped form.
    const v4 = parseIPv4(host);
    addr = v4 !== undefined ? mapIPv4(v4) : parseIPv6(host);
  } else {
    const colon = arg.lastIndexOf(":");
    if (colon < 0) die(`No port in [${arg}]\n  ${ENDPOINT_ACCEPTED}`);
    host = arg.slice(0, colon);
    portText = arg.slice(colon + 1);
    const v4 = parseIPv4(host);
    addr = v4 === undefined ? undefined : mapIPv4(v4);
  }
  const port = portText === "" ? 0 : parseStrictInt(portText, 0, 65535);
  if (
    addr === undefined || port === undefined || portText.startsWith("+") || portText.startsWith("-")
  ) {
    die(`Parse address failed [${arg}]\n  ${ENDPOINT_ACCEPTED}`);
  }
  return { addr, port };
}

/** `fwmark`: print `{ "hash": … }`, or with `--shm` the lookup result too. */
export const fwmarkCommand: Command = {
  ...FWMARK_SPEC,
  run(inv) {
    const src = parseEndpoint(inv.opts.get("src")!);
    const dst = parseEndpoint(inv.opts.get("dst")!);
    const hm = inv.opts.get("hash_mode");
    const hashMode = hm === undefined ? 1 : parseStrictInt(hm, -(2 ** 31), 2 ** 32 - 1);
    if (hashMode === undefined) die(`Invalid --hash_mode=${hm}; expected an integer`);
    const key = new Uint8Array(KEY_LEN);
    key.set(src.addr, KEY_SRC);
    key.set(dst.addr, KEY_DST);
    key[KEY_SPORT] = src.port >> 8;
    key[KEY_SPORT + 1] = src.port & 0xff;
    key[KEY_DPORT] = dst.port >> 8;
    key[KEY_DPORT + 1] = dst.port & 0xff;
    const protoText = inv.opts.get("proto");
    let hash: number;
    if (protoText !== undefined) {
      const proto = PROTOCOLS[protoText.toLowerCase()];
      if (proto === undefined) {
        die(`Failed to parse protocol [${protoText}]\n  ${FWMARK_PROTO_ACCEPTED}`);
      }
      key[KEY_PROTO] = proto;
      hash = hashKey(key, hashMode);
    } else {
      hash = addressHash(key);
    }
    const shm = inv.opts.get("shm");
    if (shm === undefined) {
      inv.io.out(`{ "hash": ${hash} }\n`);
      return 0;
    }
    const { table, close } = openTable(shm, false);
    try {
      const idx = hash % table.m;
      const a = table.lookup[idx];
      const fw = a >= 0 && a < table.n ? table.active[a] : -1;
      inv.io.out(
        `{ "hash": ${hash}, "lookupindex": ${idx}, "activeindex": ${a}, "fwmark": ${fw} }\n`,
      );
    } finally {
      close();
    }
    return 0;
  },
};
