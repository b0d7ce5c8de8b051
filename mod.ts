/**
 * nfqlb as a library: the pure per-packet decision parts of the nfqlb load
 * balancer (packet parsing and hashing, Maglev tables) and the shared-memory
 * layout, usable without root or FFI.
 *
 * @example
 * ```ts
 * import { parsePacket } from "./mod.ts";
 * const r = parsePacket(new Uint8Array(20));
 * r.rc; // -1: too short for IPv4 (the reference needs more than 20 bytes)
 * ```
 * @module
 */
export { addressHash, djb2, hashKey } from "./lib/packet/hash.ts";
export { KEY_LEN } from "./lib/packet/key.ts";
export {
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_SCTP,
  IPPROTO_TCP,
  IPPROTO_UDP,
} from "./lib/wire/ip_proto.ts";
export {
  ETH_P_IP,
  ETH_P_IPV6,
  KeyParse,
  type ParsedPacket,
  parseKeyAt,
  parseKeyInto,
  type ParseOptions,
  parsePacket,
  RC_FIRST_FRAG,
  RC_ICMP_INNER,
  RC_ICMP_NO_INNER,
  RC_INVALID,
  RC_NO_PORTS,
  RC_NON_FIRST_FRAG,
  RC_UDP_ENCAP,
} from "./lib/packet/parse.ts";
export { MaglevTable, TableFormatError, tableSize } from "./lib/maglev/table.ts";
export {
  activate,
  activateIndex,
  deactivate,
  deactivateIndex,
  fwmarkFor,
  type GraceHook,
  initTable,
  populate,
} from "./lib/maglev/maglev.ts";
export { primeBelow } from "./lib/maglev/prime.ts";
export { GlibcRand } from "./lib/maglev/glibc_rand.ts";
export { formatIPv6, mapIPv4, parseIPv4, parseIPv6 } from "./lib/ccompat/inet.ts";
