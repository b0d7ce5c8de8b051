/**
 * The rtnetlink messages that list the policy-routing rules of one family (what `ip rule show`
 * prints), pure: the `RTM_GETRULE` dump request, and the fwmark rules read from the replies.
 * `activate`'s warning reads them through `ffi/rtnetlink.ts` (one dump per family, no `ip`
 * process).
 *
 * Request: `nlmsghdr` (16 bytes, type `RTM_GETRULE`, `NLM_F_REQUEST | NLM_F_DUMP`) then
 * `struct fib_rule_hdr` (12): family, dst_len, src_len, tos, table, res1, res2, action (u8 each),
 * flags (u32). Replies: `RTM_NEWRULE` messages (the same header, then attributes `rtattr`
 * {u16 len, u16 type} aligned to 4: `FRA_FWMARK`, `FRA_FWMASK`, `FRA_TABLE`, u32 each), ended by
 * `NLMSG_DONE`, or an `NLMSG_ERROR`.
 *
 * @example
 * ```ts
 * import { FIB_RULE_REQUEST_SIZE, writeFibRuleDumpRequest } from "./fib_rule.ts";
 * const buf = new Uint8Array(FIB_RULE_REQUEST_SIZE);
 * writeFibRuleDumpRequest(buf, 1, 4); // 28
 * buf[16]; // 2 (AF_INET)
 * ```
 * @module
 */
import type { FwmarkRule } from "../doctor/rules.ts";

/** `nlmsg_type` of a rule dump request and of each rule in the reply (`linux/rtnetlink.h`). */
export const RTM_GETRULE = 34;
export const RTM_NEWRULE = 32;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const NLM_F_REQUEST = 0x1;
const NLM_F_DUMP = 0x300;
const NLMSG_HDRLEN = 16;
/** `sizeof(struct fib_rule_hdr)`. */
const FIB_RULE_HDR_SIZE = 12;
/** Bytes of a whole request. */
export const FIB_RULE_REQUEST_SIZE = NLMSG_HDRLEN + FIB_RULE_HDR_SIZE;
const AF_INET = 2;
const AF_INET6 = 10;
/** Attributes (`linux/fib_rules.h`). */
export const FRA_FWMARK = 10;
export const FRA_TABLE = 15;
export const FRA_FWMASK = 16;
/** `fib_rule_hdr.flags`: the rule matches what its selectors do *not* (`ip rule add not ...`). */
export const FIB_RULE_INVERT = 0x2;
/** Offsets in `fib_rule_hdr`. */
const HDR_TABLE = 4;
/** struct fib_rule_hdr's action byte: only `FR_ACT_TO_TBL` rules route (not blackhole, goto, ...). */
const HDR_ACTION = 7;
export const FR_ACT_TO_TBL = 1;
const HDR_FLAGS = 8;

/** Write into `buf` the dump request of the rules of `family`; returns its length. */
export function writeFibRuleDumpRequest(buf: Uint8Array, seq: number, family: 4 | 6): number {
  buf.fill(0, 0, FIB_RULE_REQUEST_SIZE);
  const dv = new DataView(buf.buffer, buf.byteOffset, FIB_RULE_REQUEST_SIZE);
  dv.setUint32(0, FIB_RULE_REQUEST_SIZE, true);
  dv.setUint16(4, RTM_GETRULE, true);
  dv.setUint16(6, NLM_F_REQUEST | NLM_F_DUMP, true);
  dv.setUint32(8, seq >>> 0, true);
  buf[NLMSG_HDRLEN] = family === 4 ? AF_INET : AF_INET6;
  return FIB_RULE_REQUEST_SIZE;
}

/** Where a dump stands after one datagram: more to read, done, or the kernel's errno. */
export type DumpState = "more" | "done" | { readonly errno: number };

/**
 * Read the datagram `buf[0, len)` of the dump `seq`: each rule with a fwmark that looks up a table
 * (action `FR_ACT_TO_TBL`, as `parseFwmarkRules` keeps only `lookup` rules) and is not inverted
 * (a `not` rule routes no marked packet, as `parseFwmarkRules` leaves it out) is
 * appended to `out` (the mask 0xffffffff when none is given; the table of `FRA_TABLE`, else the
 * header's). Messages of other sequence numbers are skipped; a truncated one is an error (EIO).
 */
export function readFibRuleDump(
  buf: Uint8Array,
  len: number,
  seq: number,
  out: FwmarkRule[],
): DumpState {
  const dv = new DataView(buf.buffer, buf.byteOffset, Math.min(len, buf.length));
  let off = 0;
  while (off + NLMSG_HDRLEN <= dv.byteLength) {
    const mlen = dv.getUint32(off, true);
    if (mlen < NLMSG_HDRLEN || off + mlen > dv.byteLength) return { errno: 5 };
    const type = dv.getUint16(off + 4, true);
    const p = off + NLMSG_HDRLEN;
    if (dv.getUint32(off + 8, true) === (seq >>> 0)) {
      if (type === NLMSG_DONE) {
        // The dump's own result is in DONE's payload (e.g. -EAFNOSUPPORT without IPv6).
        const v = mlen >= NLMSG_HDRLEN + 4 ? dv.getInt32(p, true) : 0;
        return v < 0 ? { errno: -v } : "done";
      }
      if (type === NLMSG_ERROR) {
        const e = mlen >= NLMSG_HDRLEN + 4 ? -dv.getInt32(p, true) : 5;
        return e === 0 ? "done" : { errno: e };
      }
      if (type === RTM_NEWRULE && mlen >= NLMSG_HDRLEN + FIB_RULE_HDR_SIZE) {
        const rule = readRule(dv, p, off + mlen);
        if (rule !== undefined) out.push(rule);
      }
    }
    off += (mlen + 3) & ~3;
  }
  return "more";
}

/** The fwmark rule of the `RTM_NEWRULE` body at `p` (ending at `end`), if it is one. */
function readRule(dv: DataView, p: number, end: number): FwmarkRule | undefined {
  if ((dv.getUint32(p + HDR_FLAGS, true) & FIB_RULE_INVERT) !== 0) return undefined;
  if (dv.getUint8(p + HDR_ACTION) !== FR_ACT_TO_TBL) return undefined;
  let table = dv.getUint8(p + HDR_TABLE);
  let fwmark: number | undefined;
  let mask: number | undefined;
  for (let a = p + FIB_RULE_HDR_SIZE; a + 4 <= end;) {
    const alen = dv.getUint16(a, true);
    if (alen < 4 || a + alen > end) break;
    const type = dv.getUint16(a + 2, true) & 0x3fff; // without NLA_F_NESTED / NET_BYTEORDER
    if (alen >= 8) {
      const v = dv.getUint32(a + 4, true);
      if (type === FRA_FWMARK) fwmark = v;
      else if (type === FRA_FWMASK) mask = v;
      else if (type === FRA_TABLE) table = v;
    }
    a += (alen + 3) & ~3;
  }
  // Mark 0 with a mask (`fwmark 0/0xff`): the kernel sends the mask alone.
  if (fwmark === undefined && mask === undefined) return undefined;
  return { fwmark: fwmark ?? 0, mask: mask ?? 0xffffffff, table: String(table) };
}
