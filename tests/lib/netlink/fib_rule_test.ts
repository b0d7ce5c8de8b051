/** The RTM_GETRULE dump request and the fwmark rules read from hand-built replies. */
import assert from "node:assert/strict";
import {
  FIB_RULE_INVERT,
  FIB_RULE_REQUEST_SIZE,
  FRA_FWMARK,
  FRA_FWMASK,
  FRA_TABLE,
  readFibRuleDump,
  RTM_NEWRULE,
  writeFibRuleDumpRequest,
} from "../../../lib/netlink/fib_rule.ts";
import type { FwmarkRule } from "../../../lib/doctor/rules.ts";

/** One netlink message: header (type, seq) and body, padded to 4. */
function msg(type: number, seq: number, body: number[]): number[] {
  const len = 16 + body.length;
  const h = new DataView(new ArrayBuffer(16));
  h.setUint32(0, len, true);
  h.setUint16(4, type, true);
  h.setUint16(6, 2, true); // NLM_F_MULTI
  h.setUint32(8, seq, true);
  const out = [...new Uint8Array(h.buffer), ...body];
  while (out.length % 4 !== 0) out.push(0);
  return out;
}

const u32 = (v: number) => {
  const b = new DataView(new ArrayBuffer(4));
  b.setUint32(0, v >>> 0, true);
  return [...new Uint8Array(b.buffer)];
};
const attr = (type: number, v: number) => [8, 0, type, 0, ...u32(v)];
/** `fib_rule_hdr`: family, dst_len, src_len, tos, table, res1, res2, action, flags. */
const hdr = (table: number, flags = 0, action = 1) => [
  2,
  0,
  0,
  0,
  table,
  0,
  0,
  action,
  ...u32(flags),
];

const rule = (seq: number, table: number, attrs: number[][], flags = 0, action = 1) =>
  msg(RTM_NEWRULE, seq, [...hdr(table, flags, action), ...attrs.flat()]);

Deno.test("the dump request: RTM_GETRULE, NLM_F_REQUEST | NLM_F_DUMP, the family", () => {
  const buf = new Uint8Array(FIB_RULE_REQUEST_SIZE).fill(0xee);
  assert.equal(writeFibRuleDumpRequest(buf, 7, 6), 28);
  assert.deepEqual(
    [...buf],
    [28, 0, 0, 0, 34, 0, 0x01, 0x03, 7, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
  );
  writeFibRuleDumpRequest(buf, 1, 4);
  assert.equal(buf[16], 2);
});

Deno.test("fwmark rules: mask, FRA_TABLE over the header's, not rules and markless ones left out", () => {
  const bytes = new Uint8Array([
    ...rule(5, 255, []), // `from all lookup local`: no fwmark
    ...rule(5, 104, [attr(FRA_TABLE, 104), attr(FRA_FWMARK, 104)]), // no mask: all bits
    ...rule(5, 252, [attr(FRA_TABLE, 5000), attr(FRA_FWMARK, 0x10), attr(FRA_FWMASK, 0xf0)]),
    ...rule(5, 105, [attr(FRA_FWMARK, 105), attr(FRA_TABLE, 105)], FIB_RULE_INVERT), // `not`
    ...rule(9, 106, [attr(FRA_FWMARK, 106)]), // another dump's
  ]);
  const out: FwmarkRule[] = [];
  assert.equal(readFibRuleDump(bytes, bytes.length, 5, out), "more");
  assert.deepEqual(out, [
    { fwmark: 104, mask: 0xffffffff, table: "104" },
    { fwmark: 0x10, mask: 0xf0, table: "5000" },
  ]);
});

Deno.test("the end of the dump, the kernel's error, a truncated message", () => {
  const out: FwmarkRule[] = [];
  const done = new Uint8Array([...rule(3, 7, [attr(FRA_FWMARK, 7)]), ...msg(3, 3, u32(0))]);
  assert.equal(readFibRuleDump(done, done.length, 3, out), "done");
  assert.deepEqual(out, [{ fwmark: 7, mask: 0xffffffff, table: "7" }]);
  const err = new Uint8Array(msg(2, 3, [...u32(-13), ...new Array(16).fill(0)]));
  assert.deepEqual(readFibRuleDump(err, err.length, 3, []), { errno: 13 });
  const cut = new Uint8Array(rule(3, 7, [attr(FRA_FWMARK, 7)]));
  assert.deepEqual(readFibRuleDump(cut, cut.length - 4, 3, []), { errno: 5 });
});

Deno.test("fwmark rules: only those that look up a table; a mask alone is mark 0", () => {
  // FR_ACT_GOTO 2, FR_ACT_NOP 3, FR_ACT_BLACKHOLE 6, FR_ACT_UNREACHABLE 7, FR_ACT_PROHIBIT 8.
  const bytes = new Uint8Array([
    ...[2, 3, 6, 7, 8].flatMap((action) => rule(5, 0, [attr(FRA_FWMARK, 104)], 0, action)),
    ...rule(5, 5, [attr(FRA_FWMASK, 0xff), attr(FRA_TABLE, 5)]), // `fwmark 0/0xff lookup 5`
  ]);
  const out: FwmarkRule[] = [];
  assert.equal(readFibRuleDump(bytes, bytes.length, 5, out), "more");
  assert.deepEqual(out, [{ fwmark: 0, mask: 0xff, table: "5" }]);
});

Deno.test("a dump that failed says so in its DONE message: the errno, not an empty list", () => {
  const done = new Uint8Array(msg(3, 4, u32(-97))); // -EAFNOSUPPORT
  assert.deepEqual(readFibRuleDump(done, done.length, 4, []), { errno: 97 });
});
