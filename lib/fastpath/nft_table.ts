/**
 * The nftables table the fast path owns (docs/FASTPATH.md), as nf_tables batches: an `inet`
 * table owned by the writer's socket (the kernel removes it when the socket closes, also
 * when the process dies), two sides (A, B) of two maps `saddr . daddr . proto . sport .
 * dport : mark` (IPv4, IPv6) with a bounded size and an element timeout, a counter per
 * family, and a prerouting chain whose two rules set the mark of a packet whose 5-tuple is
 * in a map of the side in use:
 *
 * ```
 * table inet NAME {
 *   counter hits4 {}   counter hits6 {}
 *   map fp4a { type ipv4_addr . ipv4_addr . inet_proto . inet_service . inet_service : mark; size S; timeout T }
 *   map fp4b, fp6a (ipv6_addr ...), fp6b alike
 *   chain prerouting { type filter hook prerouting priority P; policy accept;
 *     meta nfproto ipv4 ip frag-off & 0x3fff == 0
 *       meta mark set ip saddr . ip daddr . ip protocol . th sport . th dport map @fp4a counter name hits4
 *     meta nfproto ipv6
 *       meta mark set ip6 saddr . ip6 daddr . ip6 nexthdr . th sport . th dport map @fp6a counter name hits6
 *   }
 * }
 * ```
 *
 * The protocol field is the IP header's own (`ip protocol`, `ip6 nexthdr`), not the
 * transport protocol the kernel finds after extension headers: an IPv6 packet with any
 * extension header (fragments included) has another value there and never matches, and
 * IPv4 fragments are excluded by the frag-off test. So only packets the queue path decides
 * by their 5-tuple alone can hit. {@link switchBatch} replaces both rules by the other
 * side's (whose maps are empty) in one small transaction, whatever the maps hold. {@link setupBatch}
 * first creates and deletes a table of that name, so a stale one (not owned by a live
 * process) is replaced in the same transaction.
 *
 * @example
 * ```ts
 * import { NlBuilder } from "../nft/builder.ts";
 * import { setupBatch } from "./nft_table.ts";
 * const b = new NlBuilder(8192);
 * setupBatch(b, { table: "nfqlb-fp", size: 1024, timeoutMs: 5000, priority: -160 }, 1);
 * b.length > 1000; // true
 * ```
 * @module
 */
import type { NlBuilder } from "../nft/builder.ts";
import {
  batchBegin,
  batchEnd,
  concatType,
  delTable,
  type Expression,
  newBaseChain,
  newCounter,
  newMap,
  newRule,
  newTable,
  nextSeq,
  NF_INET_PRE_ROUTING,
  NFPROTO_IPV4,
  NFPROTO_IPV6,
  NFT_TABLE_F_OWNER,
} from "../nft/nf_tables.ts";
import {
  bitwiseAnd,
  cmpEq,
  counterRef,
  mapLookup,
  META_MARK,
  META_NFPROTO,
  metaLoad,
  metaSet,
  PAYLOAD_NETWORK,
  PAYLOAD_TRANSPORT,
  payloadLoad,
  reg32,
} from "../nft/expressions.ts";

/** What the table is made with. */
export interface FastPathTable {
  /** nft table name (family inet). */
  readonly table: string;
  /** Most elements per map. */
  readonly size: number;
  /** Element timeout, ms. */
  readonly timeoutMs: number;
  /** Priority of the prerouting chain (before the queue rule's). */
  readonly priority: number;
}

/** The two sides: the rules use the maps of one side; a change moves them to the other's. */
export type Side = 0 | 1;
/** Names of the IPv4 maps of sides A and B. */
export const MAP4: readonly [string, string] = ["fp4a", "fp4b"];
/** Names of the IPv6 maps of sides A and B. */
export const MAP6: readonly [string, string] = ["fp6a", "fp6b"];
/** Name of the IPv4 hit counter. */
export const HITS4 = "hits4";
/** Name of the IPv6 hit counter. */
export const HITS6 = "hits6";
/** Name of the chain. */
export const CHAIN = "prerouting";
/** Key length of the IPv4 maps: 4 + 4 + 4 (proto, padded) + 4 + 4 (ports, padded). */
export const KEY4_LEN = 20;
/** Key length of the IPv6 maps: 16 + 16 + 4 + 4 + 4. */
export const KEY6_LEN = 44;

/** nft's type numbers: ipv4_addr 7, ipv6_addr 8, inet_proto 12, inet_service 13, mark 19. */
const TYPE_IPADDR = 7, TYPE_IP6ADDR = 8, TYPE_INET_PROTO = 12, TYPE_INET_SERVICE = 13;
const TYPE_MARK = 19;

/** A batch and the sequence numbers of its two rules (IPv4, IPv6), whose echoes carry their handles. */
export interface RuleBatch {
  /** The next free sequence number (wrapped to 32 bits). */
  readonly next: number;
  /** The requests of the IPv4 and the IPv6 rule. */
  readonly rules: readonly [number, number];
}

/** The IPv4 rule of side `s` (set ids: maps 1–4 within the setup batch; names outside it). */
function rule4(s: Side, id?: number): Expression[] {
  return [
    metaLoad(META_NFPROTO, reg32(0)),
    cmpEq(reg32(0), [NFPROTO_IPV4]),
    payloadLoad(PAYLOAD_NETWORK, 6, 2, reg32(0)), // flags and fragment offset
    bitwiseAnd(reg32(0), [0x3f, 0xff]), // MF and the offset: any fragment
    cmpEq(reg32(0), [0, 0]),
    payloadLoad(PAYLOAD_NETWORK, 12, 4, reg32(0)),
    payloadLoad(PAYLOAD_NETWORK, 16, 4, reg32(1)),
    payloadLoad(PAYLOAD_NETWORK, 9, 1, reg32(2)), // ip protocol
    payloadLoad(PAYLOAD_TRANSPORT, 0, 2, reg32(3)),
    payloadLoad(PAYLOAD_TRANSPORT, 2, 2, reg32(4)),
    mapLookup(MAP4[s], id, reg32(0), reg32(0)),
    metaSet(META_MARK, reg32(0)),
    counterRef(HITS4),
  ];
}

/** The IPv6 rule of side `s`. */
function rule6(s: Side, id?: number): Expression[] {
  return [
    metaLoad(META_NFPROTO, reg32(0)),
    cmpEq(reg32(0), [NFPROTO_IPV6]),
    payloadLoad(PAYLOAD_NETWORK, 8, 16, reg32(0)),
    payloadLoad(PAYLOAD_NETWORK, 24, 16, reg32(4)),
    payloadLoad(PAYLOAD_NETWORK, 6, 1, reg32(8)), // ip6 nexthdr: no extension header
    payloadLoad(PAYLOAD_TRANSPORT, 0, 2, reg32(9)),
    payloadLoad(PAYLOAD_TRANSPORT, 2, 2, reg32(10)),
    mapLookup(MAP6[s], id, reg32(0), reg32(0)),
    metaSet(META_MARK, reg32(0)),
    counterRef(HITS6),
  ];
}

/** Sequence numbers from `seq` on, wrapped to 32 bits ({@link nextSeq}). */
function counter(seq: number): { take(): number; readonly next: number } {
  let s = seq >>> 0;
  return {
    take() {
      const x = s;
      s = nextSeq(s);
      return x;
    },
    get next() {
      return s;
    },
  };
}

/**
 * Append the batch that (re)creates the table to `b`, sequence numbers from `seq` (wrapping
 * after 2^32 - 1). Every request between the first and the last is acknowledged. The rules use
 * side A.
 */
export function setupBatch(b: NlBuilder, t: FastPathTable, seq: number): RuleBatch {
  const q = counter(seq);
  batchBegin(b, q.take());
  // Replace a stale table: create it if missing, delete it, create it owned.
  newTable(b, q.take(), t.table);
  delTable(b, q.take(), t.table);
  newTable(b, q.take(), t.table, NFT_TABLE_F_OWNER);
  newCounter(b, q.take(), t.table, HITS4);
  newCounter(b, q.take(), t.table, HITS6);
  const maps = [
    [MAP4[0], 1, TYPE_IPADDR, KEY4_LEN],
    [MAP4[1], 2, TYPE_IPADDR, KEY4_LEN],
    [MAP6[0], 3, TYPE_IP6ADDR, KEY6_LEN],
    [MAP6[1], 4, TYPE_IP6ADDR, KEY6_LEN],
  ] as const;
  for (const [name, id, addr, len] of maps) {
    newMap(b, q.take(), {
      table: t.table,
      name,
      id,
      keyType: concatType([addr, addr, TYPE_INET_PROTO, TYPE_INET_SERVICE, TYPE_INET_SERVICE]),
      keyLen: len,
      dataType: TYPE_MARK,
      dataLen: 4,
      size: t.size,
      timeoutMs: t.timeoutMs,
    });
  }
  newBaseChain(b, q.take(), t.table, CHAIN, NF_INET_PRE_ROUTING, t.priority);
  const r4 = q.take(), r6 = q.take();
  newRule(b, r4, t.table, CHAIN, rule4(0, 1), { echo: true });
  newRule(b, r6, t.table, CHAIN, rule6(0, 3), { echo: true });
  batchEnd(b, q.take());
  return { next: q.next, rules: [r4, r6] };
}

/**
 * Append the batch that moves the rules (handles `handles`, IPv4 then IPv6) to side `to`,
 * whose maps must be empty: both rules replaced in one transaction, whatever the maps hold.
 * The two requests are acknowledged and echoed (the new rules have new handles).
 */
export function switchBatch(
  b: NlBuilder,
  table: string,
  to: Side,
  handles: readonly [number, number],
  seq: number,
): RuleBatch {
  const q = counter(seq);
  batchBegin(b, q.take());
  const r4 = q.take(), r6 = q.take();
  newRule(b, r4, table, CHAIN, rule4(to), { replace: handles[0], echo: true });
  newRule(b, r6, table, CHAIN, rule6(to), { replace: handles[1], echo: true });
  batchEnd(b, q.take());
  return { next: q.next, rules: [r4, r6] };
}
