/**
 * lib/nfqueue/config.ts: the NFQNL_MSG_CONFIG requests decoded field by
 * field, exact bytes of the bind request, and the numbers against the
 * installed kernel UAPI header.
 */
import assert from "node:assert/strict";
import { HOST_LE, NLA_HDRLEN, nlAlign } from "../../../lib/nfqueue/codec.ts";
import {
  BIND_MSG_LEN,
  bindRequest,
  COMMAND_MSG_LEN,
  commandRequest,
  NFQ_TYPE_CONFIG,
  NFQA_CFG_CMD,
  NFQA_CFG_F_FAIL_OPEN,
  NFQA_CFG_F_GSO,
  NFQA_CFG_FLAGS,
  NFQA_CFG_MASK,
  NFQA_CFG_PARAMS,
  NFQA_CFG_QUEUE_MAXLEN,
  NFQNL_CFG_CMD_BIND,
  NFQNL_CFG_CMD_PF_BIND,
  NFQNL_CFG_CMD_PF_UNBIND,
  NFQNL_CFG_CMD_UNBIND,
  NFQNL_COPY_PACKET,
} from "../../../lib/nfqueue/config.ts";

const toHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

/** A decoded config request. */
interface Decoded {
  len: number;
  type: number;
  flags: number;
  seq: number;
  pid: number;
  family: number;
  version: number;
  queue: number;
  /** Attribute type → data bytes, in order of appearance. */
  attrs: [number, Uint8Array][];
}

/** Decode one netlink message the way the kernel reads it (checks the framing). */
function decode(b: Uint8Array): Decoded {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const len = v.getUint32(0, HOST_LE);
  assert.equal(len, b.length, "nlmsg_len is the message length");
  const attrs: [number, Uint8Array][] = [];
  let a = 20;
  while (a < len) {
    const alen = v.getUint16(a, HOST_LE);
    assert.ok(alen >= NLA_HDRLEN && a + alen <= len, `attribute at ${a} inside the message`);
    attrs.push([v.getUint16(a + 2, HOST_LE), b.slice(a + NLA_HDRLEN, a + alen)]);
    a += nlAlign(alen);
  }
  assert.equal(a, len, "attributes fill the message exactly");
  return {
    len,
    type: v.getUint16(4, HOST_LE),
    flags: v.getUint16(6, HOST_LE),
    seq: v.getUint32(8, HOST_LE),
    pid: v.getUint32(12, HOST_LE),
    family: b[16],
    version: b[17],
    queue: v.getUint16(18, false),
    attrs,
  };
}

const be32 = (d: Uint8Array) => new DataView(d.buffer, d.byteOffset).getUint32(0, false);

Deno.test("literal config constants", () => {
  assert.equal(NFQ_TYPE_CONFIG, 0x0302);
  assert.deepEqual(
    [NFQNL_CFG_CMD_BIND, NFQNL_CFG_CMD_UNBIND, NFQNL_CFG_CMD_PF_BIND, NFQNL_CFG_CMD_PF_UNBIND],
    [1, 2, 3, 4],
  );
  assert.equal(NFQNL_COPY_PACKET, 2);
  assert.deepEqual(
    [NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN, NFQA_CFG_MASK, NFQA_CFG_FLAGS],
    [1, 2, 3, 4, 5],
  );
  assert.deepEqual([NFQA_CFG_F_FAIL_OPEN, NFQA_CFG_F_GSO], [1, 4]);
  assert.equal(COMMAND_MSG_LEN, 28);
  assert.equal(BIND_MSG_LEN, 64);
});

Deno.test("config constants agree with the installed kernel UAPI header", async (t) => {
  let header: string;
  try {
    header = await Deno.readTextFile("/usr/include/linux/netfilter/nfnetlink_queue.h");
  } catch {
    await t.step({ name: "header not installed (linux-libc-dev)", ignore: true, fn: () => {} });
    return;
  }
  const enumOf = (name: string) => {
    const body = new RegExp(`enum ${name} \\{([^}]*)\\}`).exec(header)![1];
    const names = body.replace(/\/\*[\s\S]*?\*\//g, "").split(",").map((s) => s.trim())
      .filter((s) => s !== "");
    return new Map(names.map((n, i) => [n, i]));
  };
  const msg = enumOf("nfqnl_msg_types");
  assert.equal(NFQ_TYPE_CONFIG, (3 << 8) | msg.get("NFQNL_MSG_CONFIG")!);
  const cmd = enumOf("nfqnl_msg_config_cmds");
  assert.equal(NFQNL_CFG_CMD_BIND, cmd.get("NFQNL_CFG_CMD_BIND"));
  assert.equal(NFQNL_CFG_CMD_UNBIND, cmd.get("NFQNL_CFG_CMD_UNBIND"));
  assert.equal(NFQNL_CFG_CMD_PF_BIND, cmd.get("NFQNL_CFG_CMD_PF_BIND"));
  assert.equal(NFQNL_CFG_CMD_PF_UNBIND, cmd.get("NFQNL_CFG_CMD_PF_UNBIND"));
  assert.equal(NFQNL_COPY_PACKET, enumOf("nfqnl_config_mode").get("NFQNL_COPY_PACKET"));
  const cfg = enumOf("nfqnl_attr_config");
  assert.equal(NFQA_CFG_CMD, cfg.get("NFQA_CFG_CMD"));
  assert.equal(NFQA_CFG_PARAMS, cfg.get("NFQA_CFG_PARAMS"));
  assert.equal(NFQA_CFG_QUEUE_MAXLEN, cfg.get("NFQA_CFG_QUEUE_MAXLEN"));
  assert.equal(NFQA_CFG_MASK, cfg.get("NFQA_CFG_MASK"));
  assert.equal(NFQA_CFG_FLAGS, cfg.get("NFQA_CFG_FLAGS"));
  assert.match(header, /#define NFQA_CFG_F_FAIL_OPEN\s+\(1 << 0\)/);
  assert.match(header, /#define NFQA_CFG_F_GSO\s+\(1 << 2\)/);
});

Deno.test("commandRequest: header, AF_UNSPEC, queue in big endian, one NFQA_CFG_CMD", () => {
  const d = decode(commandRequest(0x1234, NFQNL_CFG_CMD_PF_BIND, 10, 7));
  assert.equal(d.len, 28);
  assert.equal(d.type, 0x0302);
  assert.equal(d.flags, 0x01 | 0x04, "NLM_F_REQUEST | NLM_F_ACK");
  assert.equal(d.seq, 7);
  assert.equal(d.pid, 0);
  assert.deepEqual([d.family, d.version, d.queue], [0, 0, 0x1234]);
  assert.equal(d.attrs.length, 1);
  const [type, data] = d.attrs[0];
  assert.equal(type, NFQA_CFG_CMD);
  // struct nfqnl_msg_config_cmd { u8 command; u8 _pad; be16 pf; }
  assert.equal(toHex(data), "0300000a");
});

Deno.test("bindRequest: BIND, PARAMS (COPY_PACKET, range = mtu), MAXLEN, MASK, FLAGS", () => {
  for (const failOpen of [false, true]) {
    const d = decode(bindRequest({ queue: 7, mtu: 1500, qlength: 1024, failOpen }, 5));
    assert.equal(d.type, 0x0302);
    assert.equal(d.flags, 0x05);
    assert.equal(d.seq, 5);
    assert.equal(d.queue, 7);
    const byType = new Map(d.attrs);
    assert.deepEqual(
      d.attrs.map(([t]) => t),
      [NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN, NFQA_CFG_MASK, NFQA_CFG_FLAGS],
      "one message with every attribute",
    );
    assert.equal(toHex(byType.get(NFQA_CFG_CMD)!), "01000000", "BIND, pf 0");
    const params = byType.get(NFQA_CFG_PARAMS)!;
    assert.equal(params.length, 5, "packed nfqnl_msg_config_params");
    assert.equal(be32(params), 1500);
    assert.equal(params[4], NFQNL_COPY_PACKET);
    assert.equal(be32(byType.get(NFQA_CFG_QUEUE_MAXLEN)!), 1024);
    assert.equal(be32(byType.get(NFQA_CFG_MASK)!), NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN);
    assert.equal(
      be32(byType.get(NFQA_CFG_FLAGS)!),
      failOpen ? NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN : NFQA_CFG_F_GSO,
    );
  }
});

Deno.test("bindRequest: exact bytes (little-endian host), u32 values and padding", () => {
  const b = bindRequest({ queue: 65535, mtu: 65535, qlength: 0xffffffff, failOpen: true }, 1);
  if (!HOST_LE) return;
  assert.equal(
    toHex(b),
    "40000000" + "0203" + "0500" + "01000000" + "00000000" + // nlmsghdr
      "0000ffff" + // nfgenmsg
      "0800" + "0100" + "01000000" + // NFQA_CFG_CMD
      "0900" + "0200" + "0000ffff" + "02" + "000000" + // NFQA_CFG_PARAMS + padding
      "0800" + "0300" + "ffffffff" + // NFQA_CFG_QUEUE_MAXLEN
      "0800" + "0400" + "00000005" + // NFQA_CFG_MASK
      "0800" + "0500" + "00000005", // NFQA_CFG_FLAGS
  );
});
