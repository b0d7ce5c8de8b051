/**
 * The flow data model shared by flow parsing (`flow.ts`), the flow store,
 * the linear reference matcher and the compiled classifier (docs/COMPATIBILITY.md#flows).
 * A {@link Flow} is immutable once built; the store replaces whole flows.
 * @module
 */

/*
 * Protocol *bits* of {@link Flow.protocols} (a set of protocols a flow
 * accepts), not IP protocol numbers: those are `IPPROTO_*` in
 * `../wire/ip_proto.ts`.
 */
/** Bit of {@link Flow.protocols}: the flow accepts TCP (IP protocol 6). */
export const PROTO_TCP = 1;
/** Bit of {@link Flow.protocols}: the flow accepts UDP (IP protocol 17). */
export const PROTO_UDP = 2;
/** Bit of {@link Flow.protocols}: the flow accepts SCTP (IP protocol 132). */
export const PROTO_SCTP = 4;

/** A CIDR over 16-byte (IPv6 or mapped IPv4) addresses; `addr` is stored masked. */
export interface Cidr {
  readonly addr: Uint8Array;
  /** Prefix length 0..128 (IPv4 entries have +96). */
  readonly prefix: number;
}

/** An inclusive port range, 1 ≤ lo ≤ hi ≤ 65535. */
export interface PortRange {
  readonly lo: number;
  readonly hi: number;
}

/** Byte-match protocols. */
export type MatchProto = "tcp" | "udp" | "sctp";

/** One byte-match statement: `proto[offset:nbytes] (& mask)? = value`. */
export interface MatchStatement {
  readonly proto: MatchProto;
  readonly offset: number;
  /** 1, 2 or 4. */
  readonly nbytes: number;
  /** 0 = no mask. u32. */
  readonly mask: number;
  /** u32. */
  readonly value: number;
}

/** A flow (docs/COMPATIBILITY.md#flows). Absent (`undefined`) fields match everything. */
export interface Flow {
  readonly name: string;
  /** i32; higher is matched first. */
  readonly priority: number;
  /** Target table shm name; `undefined` for `#name` helper flows (no target). */
  readonly target: string | undefined;
  /** Set of protocol bits (`PROTO_TCP | PROTO_UDP | PROTO_SCTP`); `undefined` = all protocols. */
  readonly protocols: number | undefined;
  readonly dsts: readonly Cidr[] | undefined;
  readonly srcs: readonly Cidr[] | undefined;
  /** Sorted, merged ranges; an empty array matches nothing. */
  readonly dports: readonly PortRange[] | undefined;
  readonly sports: readonly PortRange[] | undefined;
  readonly match: readonly MatchStatement[] | undefined;
  /** UDP port carrying SCTP, 0 = none (u16). */
  readonly udpencap: number;
}
