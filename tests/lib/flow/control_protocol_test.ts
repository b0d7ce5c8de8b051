/**
 * The control protocol (docs/COMPATIBILITY.md#control-protocol), the server dispatch, and the flow
 * client commands (1.9) end to end through a fake transport:
 * CLI request bytes → request reader → store → reply → CLI output.
 */
import { currentNetns } from "../../../daemon/socket_holder.ts";
import { CIDRS_ACCEPTED, PORTS_ACCEPTED, PROTOCOLS_ACCEPTED } from "../../../lib/hints/accepted.ts";
import assert from "node:assert/strict";
import { F2_ARGS, F2_JSON } from "../../../testkit/spec_examples.ts";
import {
  buildRequest,
  type ControlRequest,
  decodeReply,
  EMPTY_CONNECTION,
  handleRequest,
  MAX_LINE_BYTES,
  MAX_REQUEST_BYTES,
  parseRequest,
  type ReadResult,
  RequestReader,
  textReply,
} from "../../../lib/flow/control_protocol.ts";
import { FlowStore } from "../../../lib/flow/store.ts";
import type { SocketAddress } from "../../../lib/ccompat/sockaddr.ts";
import { type Command, runCommand } from "../../../cli/command.ts";
import { flowCommands, type Transport, TransportError } from "../../../cli/flow_commands.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const bytes = (s: string) => enc.encode(s);

function request(text: string): ControlRequest {
  const r = parseRequest(bytes(text));
  assert.equal(r.status, "request", text.slice(0, 200));
  return (r as { request: ControlRequest }).request;
}

function rejected(
  r: ReadResult,
): { reply: string; warnings: readonly string[]; debug?: readonly string[] } {
  assert.equal(r.status, "rejected");
  const x = r as { reply: Uint8Array; warnings: readonly string[]; debug?: readonly string[] };
  return { reply: dec.decode(x.reply), warnings: x.warnings, debug: x.debug };
}

const acceptAll = () => new FlowStore({ acquire: () => true, release: () => {} });

// ---------------------------------------------------------------- reading

Deno.test("7.3: key:value lines, value may contain ':', eoc ends the request", () => {
  const r = parseRequest(bytes("action:set\nname:a\ntarget:x:y\neoc:anything\nname:ignored\n"));
  assert.equal(r.status, "request");
  const ok = r as Extract<ReadResult, { status: "request" }>;
  assert.equal(ok.request.action, "set");
  assert.equal(ok.request.fields.name, "a");
  assert.equal(ok.request.fields.target, "x:y");
  assert.deepEqual(ok.lines, ["action:set", "name:a", "target:x:y", "eoc:anything"]);
  assert.deepEqual(ok.warnings, []);
});

Deno.test("7.3: first wins / last wins per key", () => {
  const text = [
    "action:list",
    "action:set",
    "name:a",
    "name:b",
    "target:t1",
    "target:t2",
    "priority:1",
    "priority:2",
    "protocols:tcp",
    "protocols:udp",
    "dsts:1.1.1.1/32",
    "dsts:2.2.2.2/32",
    "srcs:s1",
    "srcs:s2",
    "dports:1",
    "dports:2",
    "sports:3",
    "sports:4",
    "match:m1",
    "match:m2",
    "udpencap:5",
    "udpencap:6",
    "eoc:",
    "",
  ].join("\n");
  const r = request(text);
  assert.equal(r.action, "list");
  assert.deepEqual(r.fields, {
    name: "a",
    target: "t1",
    priority: "2",
    protocols: "tcp",
    dsts: "1.1.1.1/32",
    srcs: "s1",
    dports: "1",
    sports: "3",
    match: "m1",
    udpencap: "6",
  });
});

Deno.test("7.3: no CR stripping; unknown keys are warned about and ignored", () => {
  const r = parseRequest(bytes("action:set\r\nNAME:x\n:y\nname:a\r\neoc:\n"));
  const ok = r as Extract<ReadResult, { status: "request" }>;
  assert.equal(ok.request.action, "set\r");
  assert.equal(ok.request.fields.name, "a\r");
  assert.deepEqual(ok.warnings, [
    "readCmd; Unrecognized command [NAME]",
    "readCmd; Unrecognized command []",
  ]);
  assert.deepEqual(
    dec.decode(handleRequest(acceptAll(), ok.request)),
    "FAIL: action unknown\0",
  );
});

Deno.test("7.3: a line without ':' closes without reply", () => {
  const r = rejected(parseRequest(bytes("action:list\nbogus\neoc:\n")));
  assert.equal(r.reply, "");
  assert.deepEqual(r.warnings, ["readFlowCmd; invalid param [bogus]"]);
  assert.equal(rejected(parseRequest(bytes("action:list\n\neoc:\n"))).reply, "");
  assert.equal(rejected(parseRequest(bytes("eoc\n"))).reply, "");
});

Deno.test("7.3: EOF before eoc closes without reply; final eoc without newline is accepted", () => {
  for (const text of ["", "action:list\n", "action:list\nname:a", "action:list\neo"]) {
    const r = rejected(parseRequest(bytes(text)));
    assert.equal(r.reply, "", JSON.stringify(text));
  }
  assert.deepEqual(rejected(parseRequest(bytes("action:list\n"))).warnings, [
    "readFlowCmd; unexpected eof",
  ]);
  for (const text of ["action:list\n", "name:x", "action:list\nname:a"]) {
    assert.deepEqual(rejected(parseRequest(bytes(text))).warnings, [
      "readFlowCmd; unexpected eof",
    ], JSON.stringify(text));
  }
  // Not one byte (a client that refused the server): a debug line, not the warning.
  const empty = rejected(parseRequest(bytes("")));
  assert.deepEqual([empty.warnings, empty.debug], [[], [EMPTY_CONNECTION]]);
  assert.equal(request("action:list\neoc:").action, "list");
  assert.equal(request("action:list\neoc:x").action, "list");
});

Deno.test("request lines are cut at a NUL byte (C strings)", () => {
  const r = request("action:set\nname:ab\0cd\ntarget:t\0junk\neoc:\n");
  assert.equal(r.fields.name, "ab");
  assert.equal(r.fields.target, "t");
  assert.equal(rejected(parseRequest(bytes("action:list\n\0name:x\neoc:\n"))).reply, "");
});

Deno.test("incremental reading: byte by byte, and stays final afterwards", () => {
  const data = buildRequest("set", { name: "a", target: "lb", dports: "80" });
  const reader = new RequestReader();
  let r: ReadResult = { status: "more" };
  for (let i = 0; i < data.length; i++) {
    r = reader.push(data.subarray(i, i + 1));
    if (i < data.length - 1) assert.equal(r.status, "more");
  }
  assert.equal(r.status, "request");
  assert.equal(reader.push(bytes("more")), r);
  assert.equal(reader.end(), r);
  const cut = new RequestReader();
  assert.equal(cut.push(bytes("action:li")).status, "more");
  assert.equal(cut.push(bytes("st\neoc")).status, "more");
  assert.equal(rejected(cut.end()).reply, "");
});

Deno.test("limits: 1023-byte lines accepted, longer lines rejected with FAIL", () => {
  const name = "n".repeat(MAX_LINE_BYTES - "name:".length);
  assert.equal(request(`action:list\nname:${name}\neoc:\n`).fields.name, name);
  const long = rejected(parseRequest(bytes(`action:list\nname:${name}x\neoc:\n`)));
  assert.equal(long.reply, "FAIL: request line too long\0");
  // Detected before the newline arrives.
  const reader = new RequestReader();
  assert.equal(reader.push(bytes("x".repeat(MAX_LINE_BYTES))).status, "more");
  assert.equal(rejected(reader.push(bytes("x"))).reply, "FAIL: request line too long\0");
  // A too long final line at EOF.
  assert.equal(
    rejected(parseRequest(bytes("eoc:" + "x".repeat(MAX_LINE_BYTES)))).reply,
    "FAIL: request line too long\0",
  );
});

Deno.test("limits: requests are bounded; endless input is cut off", () => {
  const line = "x-unknown:" + "y".repeat(1000) + "\n";
  const n = Math.floor(MAX_REQUEST_BYTES / line.length);
  // Just under the bound: accepted.
  const fits = "action:list\n" + line.repeat(n - 1) + "eoc:\n";
  assert.ok(fits.length <= MAX_REQUEST_BYTES);
  assert.equal(request(fits).action, "list");
  // Over the bound: FAIL, after reading at most a bound's worth.
  const reader = new RequestReader();
  let r: ReadResult = { status: "more" };
  let fed = 0;
  while (r.status === "more") {
    r = reader.push(bytes(line));
    fed += line.length;
    assert.ok(fed < MAX_REQUEST_BYTES + 2 * line.length, "must stop reading");
  }
  assert.equal(rejected(r).reply, "FAIL: request too large\0");
  // Endless short lines and an endless NUL-free stream of newlines.
  const nl = new RequestReader();
  let s: ReadResult = { status: "more" };
  for (let i = 0; s.status === "more" && i < 200000; i++) s = nl.push(bytes("a:b\n"));
  assert.equal(rejected(s).reply, "FAIL: request too large\0");
  // The eoc line itself must end within the bound.
  const filler = (n: number) => "k:" + "z".repeat(n - 3) + "\n"; // an n-byte line
  const room = MAX_REQUEST_BYTES - "action:list\n".length - "eoc:\n".length;
  const exact = "action:list\n" + filler(1000).repeat(Math.floor(room / 1000)) +
    filler(room % 1000) + "eoc:\n";
  assert.equal(exact.length, MAX_REQUEST_BYTES);
  assert.equal(request(exact).action, "list");
  assert.equal(rejected(parseRequest(bytes("a:b\n" + exact))).reply, "FAIL: request too large\0");
});

// ---------------------------------------------------------------- CLI requests

Deno.test("7.3: the requests the CLI sends (only given options, in order)", () => {
  const text = (a: Parameters<typeof buildRequest>[0], f: Parameters<typeof buildRequest>[1]) =>
    dec.decode(buildRequest(a, f));
  assert.equal(
    text("set", {
      udpencap: "9",
      match: "m",
      sports: "s",
      dports: "d",
      srcs: "sr",
      dsts: "ds",
      protocols: "p",
      priority: "1",
      target: "t",
      name: "n",
    }),
    "action:set\nname:n\ntarget:t\npriority:1\nprotocols:p\ndsts:ds\nsrcs:sr\n" +
      "dports:d\nsports:s\nmatch:m\nudpencap:9\neoc:\n",
  );
  assert.equal(text("set", { name: "n", target: "t" }), "action:set\nname:n\ntarget:t\neoc:\n");
  assert.equal(text("delete", { name: "n" }), "action:delete\nname:n\neoc:\n");
  assert.equal(text("list", {}), "action:list\neoc:\n");
  assert.equal(text("list", { name: "n" }), "action:list\nname:n\neoc:\n");
  assert.equal(text("list-names", { name: "n" }), "action:list-names\neoc:\n");
  assert.equal(
    text("trace-set", { name: "n", target: "t", priority: "3", protocols: "tcp", match: "m" }),
    "action:trace-set\nname:n\nprotocols:tcp\nmatch:m\neoc:\n",
  );
  assert.equal(text("trace-delete", { name: "n" }), "action:trace-delete\nname:n\neoc:\n");
  assert.equal(text("trace-list", {}), "action:trace-list\neoc:\n");
  assert.equal(text("trace-list-names", {}), "action:trace-list-names\neoc:\n");
});

// ---------------------------------------------------------------- server replies

/** Serve `text` against `store`; the reply as a string (NULs kept). */
function serve(store: FlowStore, text: string): string {
  return dec.decode(handleRequest(store, request(text)));
}

Deno.test("7.4: replies for every action", () => {
  const store = acceptAll();
  assert.equal(serve(store, "eoc:\n"), "FAIL: no action\0");
  assert.equal(serve(store, "action:bogus\neoc:\n"), "FAIL: action unknown\0");
  assert.equal(serve(store, "action:trace-bogus\neoc:\n"), "FAIL: action unknown\0");
  assert.equal(serve(store, "action:list\neoc:\n"), "[]\n");
  assert.equal(serve(store, "action:list-names\neoc:\n"), "[]\n");
  assert.equal(serve(store, "action:trace-list\neoc:\n"), "[]\n");
  assert.equal(serve(store, "action:trace-list-names\neoc:\n"), "[]\n");
  assert.equal(serve(store, "action:set\nname:a\ntarget:lb\neoc:\n"), "OK\0");
  assert.equal(serve(store, "action:set\nname:a b\ntarget:lb\neoc:\n"), "Invalid name\0");
  assert.equal(
    serve(store, "action:set\nname:b\neoc:\n"),
    "FAIL: Couldn't create load-balancer\0the request has no target (nfqlb flow-set --target=SHM)\0",
  );
  assert.equal(
    serve(store, "action:set\nname:s\ntarget:lb\nprotocols:sctp\nudpencap:9899\neoc:\n"),
    "OK\0",
  );
  assert.equal(serve(store, "action:list-names\neoc:\n"), '[\n  "a",\n  "#s",\n  "s"\n]\n');
  assert.equal(
    serve(store, "action:list\nname:a\neoc:\n"),
    '{\n  "name": "a",\n  "priority": 0,\n  "matches_count": 0,\n  "user_ref": "lb"\n}',
  );
  assert.equal(serve(store, "action:list\nname:zz\neoc:\n"), "");
  assert.match(serve(store, "action:list\nname:#s\neoc:\n"), /"user_ref": "NULL"\n}$/);
  assert.equal(serve(store, "action:delete\neoc:\n"), "FAIL: no name\0");
  // 1.2.0's OK for a flow that is not there, then a note (D65).
  assert.equal(
    serve(store, "action:delete\nname:zz\neoc:\n"),
    "OK\0no flow named [zz]; nothing deleted\0",
  );
  assert.equal(serve(store, "action:delete\nname:s\neoc:\n"), "OK\0");
  assert.equal(serve(store, "action:list-names\neoc:\n"), '[\n  "a"\n]\n');
  // Trace flows (11 #5: trace-set replies OK).
  assert.equal(serve(store, "action:trace-set\nname:tr\npriority:4\neoc:\n"), "OK\0");
  assert.equal(
    serve(store, "action:trace-set\nname:t2\ndports:0\neoc:\n"),
    `Invalid dports\0dports [0]: ${PORTS_ACCEPTED}\0`,
  );
  assert.equal(
    serve(store, "action:trace-list\neoc:\n"),
    '[{\n  "name": "tr",\n  "priority": 4,\n  "matches_count": 0\n}]\n',
  );
  assert.equal(
    serve(store, "action:trace-list\nname:tr\neoc:\n"),
    '{\n  "name": "tr",\n  "priority": 4,\n  "matches_count": 0\n}',
  );
  assert.equal(serve(store, "action:trace-list-names\neoc:\n"), '[\n  "tr"\n]\n');
  assert.equal(serve(store, "action:trace-delete\neoc:\n"), "FAIL: no name\0");
  assert.equal(serve(store, "action:trace-delete\nname:tr\neoc:\n"), "OK\0");
  assert.equal(
    serve(store, "action:trace-delete\nname:tr\neoc:\n"),
    "OK\0no trace flow named [tr]; nothing deleted\0",
  );
  assert.equal(serve(store, "action:trace-list-names\neoc:\n"), "[]\n");
});

Deno.test("decodeReply: text up to NUL, then the note up to the next NUL; JSON whole", () => {
  assert.deepEqual(decodeReply(bytes("OK\0")), { text: "OK", terminated: true });
  assert.deepEqual(decodeReply(bytes("OK\0junk")), { text: "OK", terminated: true, note: "junk" });
  assert.deepEqual(decodeReply(bytes("OK\0a note\0x")), {
    text: "OK",
    terminated: true,
    note: "a note",
  });
  assert.deepEqual(decodeReply(textReply("FAIL: x", "why")), {
    text: "FAIL: x",
    terminated: true,
    note: "why",
  });
  assert.deepEqual(decodeReply(bytes("[]\n")), { text: "[]\n", terminated: false });
  assert.deepEqual(decodeReply(new Uint8Array(0)), { text: "", terminated: false });
});

// ---------------------------------------------------------------- CLI round trip

interface Run {
  code: number;
  out: string;
  err: string;
}

/** The commands wired to an in-process server; records what was sent where. */
function harness(env: Record<string, string> = {}) {
  const store = acceptAll();
  const sent: { address: SocketAddress; text: string }[] = [];
  const transport: Transport = (address, req) => {
    sent.push({ address, text: dec.decode(req) });
    const r = parseRequest(req);
    if (r.status === "rejected") return Promise.resolve(r.reply);
    assert.equal(r.status, "request");
    return Promise.resolve(handleRequest(store, (r as { request: ControlRequest }).request));
  };
  // The rules of the host's namespace are not this harness's subject (config_warnings_test is).
  const commands = flowCommands(transport, (k) => env[k], () => Promise.resolve());
  const run = async (name: string, ...args: string[]): Promise<Run> => {
    const cmd = commands.find((c) => c.name === name) as Command;
    let out = "";
    let err = "";
    const code = await runCommand(cmd, args, { out: (t) => out += t, err: (t) => err += t });
    return { code, out, err };
  };
  return { store, sent, run, commands };
}

Deno.test("round trip: the f2 example, flow-list, --name, names, delete", async () => {
  const h = harness();
  assert.deepEqual(h.commands.map((c) => c.name), [
    "flow-set",
    "flow-delete",
    "flow-list",
    "flow-list-names",
    "trace-flow-set",
    "trace-flow-delete",
    "trace-flow-list",
    "trace-flow-list-names",
  ]);
  assert.deepEqual(await h.run("flow-set", ...F2_ARGS), { code: 0, out: "OK\n", err: "" });
  assert.deepEqual(h.sent[0].address, { kind: "unix", name: "nfqlb" });
  assert.equal(
    h.sent[0].text,
    "action:set\nname:f2\ntarget:lb-a\npriority:10\nprotocols:udp,TCP,tcp\n" +
      "dsts:10.0.0.0/24,1000::/64\nsrcs:192.168.1.1/32\ndports:80,22,23,100-200,150-300,1000\n" +
      "sports:1024-65535\nmatch:tcp[2:2]=5001, udp[0:4] & 0xffff0000 = 0x13890000\neoc:\n",
  );
  assert.deepEqual(await h.run("flow-set", "--name=f1", "--target=lb-a"), {
    code: 0,
    out: "OK\n",
    err: "",
  });
  const f1 = `{\n  "name": "f1",\n  "priority": 0,\n  "matches_count": 0,\n  "user_ref": "lb-a"\n}`;
  assert.deepEqual(await h.run("flow-list"), {
    code: 0,
    out: `[${F2_JSON},\n${f1}]\n`,
    err: "",
  });
  assert.deepEqual(await h.run("flow-list", "--name=f2"), { code: 0, out: F2_JSON, err: "" });
  assert.deepEqual(await h.run("flow-list", "--name=none"), { code: 0, out: "", err: "" });
  assert.deepEqual(await h.run("flow-list-names"), {
    code: 0,
    out: '[\n  "f2",\n  "f1"\n]\n',
    err: "",
  });
  assert.deepEqual(await h.run("flow-delete", "--name=f2"), { code: 0, out: "OK\n", err: "" });
  // Deleted twice: still 1.2.0's OK and exit 0, and a warning on stderr (D65).
  assert.deepEqual(await h.run("flow-delete", "--name=f2"), {
    code: 0,
    out: "OK\n",
    err: "flow-delete: no flow named [f2]; nothing deleted\n",
  });
  assert.deepEqual(await h.run("flow-delete", "--name=f1"), { code: 0, out: "OK\n", err: "" });
  assert.deepEqual(await h.run("flow-list"), { code: 0, out: "[]\n", err: "" });
  assert.deepEqual(await h.run("flow-list-names"), { code: 0, out: "[]\n", err: "" });
});

Deno.test("round trip: seed 000 udpencap flow and server errors (exit 255)", async () => {
  const h = harness();
  const r = await h.run(
    "flow-set",
    "--name=sctp",
    "--prio=100",
    "--target=nfqlb",
    "--proto=sctp",
    "--dst=10.0.0.0/32,1000::/128",
    "--dport=6000",
    "--udpencap=9899",
  );
  assert.deepEqual(r, { code: 0, out: "OK\n", err: "" });
  assert.deepEqual(await h.run("flow-list-names"), {
    code: 0,
    out: '[\n  "#sctp",\n  "sctp"\n]\n',
    err: "",
  });
  assert.match(
    (await h.run("flow-list")).out,
    /"name": "#sctp",[^]*"udpencap": 9899,\n {2}"matches_count": 0,\n {2}"user_ref": "NULL"\n},\n\{\n {2}"name": "sctp"/,
  );
  assert.deepEqual(
    await h.run("flow-set", "--name=sctp", "--target=nfqlb", "--protocols=sctp", "--udpencap=1"),
    {
      code: 255,
      out: "FAIL: Alter udpencap not allowed\n",
      err: "flow-set: flow [sctp] has udpencap 9899: delete it first " +
        "(nfqlb flow-delete --name=sctp) to change it\n",
    },
  );
  // 1.2.0's reply on stdout; the bad value and what is accepted on stderr.
  assert.deepEqual(
    await h.run("flow-set", "--name=x", "--target=t", "--protocols=tcp", "--dports=0"),
    { code: 255, out: "Invalid dports\n", err: `flow-set: dports [0]: ${PORTS_ACCEPTED}\n` },
  );
  assert.deepEqual(
    await h.run("flow-set", "--name=x", "--target=t", "--protocols=tcp", "--dports=80,443-"),
    { code: 255, out: "Invalid dports\n", err: `flow-set: dports [443-]: ${PORTS_ACCEPTED}\n` },
  );
  assert.deepEqual(
    await h.run("flow-set", "--name=x", "--target=t", "--protocols=tcp,tcpp"),
    {
      code: 255,
      out: "Invalid protocols\n",
      err: `flow-set: protocols [tcpp]: ${PROTOCOLS_ACCEPTED}\n`,
    },
  );
  assert.deepEqual(
    await h.run("flow-set", "--name=x", "--target=t", "--dsts=10.0.0.0/24,10.0.0.1"),
    {
      code: 255,
      out: "Invalid dsts\n",
      err: `flow-set: dsts [10.0.0.1]: ${CIDRS_ACCEPTED}; one address is 10.0.0.1/32\n`,
    },
  );
  assert.deepEqual(
    await h.run("flow-set", "--name=x", "--target=t", "--srcs=1000::/129"),
    { code: 255, out: "Invalid srcs\n", err: `flow-set: srcs [1000::/129]: ${CIDRS_ACCEPTED}\n` },
  );
  // 11 #9: a long reply is printed whole.
  const stmt = "tcp[0:1]=" + "1".repeat(55);
  assert.deepEqual(
    await h.run("flow-set", "--name=x", "--target=t", `--match=tcp[0:1]=1, ${stmt}0`),
    { code: 255, out: `Match [${stmt}0] String too long\n`, err: "" },
  );
  assert.deepEqual(await h.run("flow-delete", "--name=sctp"), { code: 0, out: "OK\n", err: "" });
  assert.deepEqual(await h.run("flow-list-names"), { code: 0, out: "[]\n", err: "" });
});

Deno.test("round trip: trace flows (11 #5: OK, exit 0)", async () => {
  const h = harness();
  assert.deepEqual(await h.run("trace-flow-set", "--name=tshm-stream-a-flow-a"), {
    code: 0,
    out: "OK\n",
    err: "",
  });
  assert.equal(h.sent[0].text, "action:trace-set\nname:tshm-stream-a-flow-a\neoc:\n");
  assert.deepEqual(await h.run("trace-flow-set", "--name=t2", "--protocols=udp", "--sports=0"), {
    code: 255,
    out: "Invalid sports\n",
    err: `trace-flow-set: sports [0]: ${PORTS_ACCEPTED}\n`,
  });
  assert.deepEqual(await h.run("trace-flow-list"), {
    code: 0,
    out: '[{\n  "name": "tshm-stream-a-flow-a",\n  "priority": 0,\n  "matches_count": 0\n}]\n',
    err: "",
  });
  assert.deepEqual(await h.run("trace-flow-list-names"), {
    code: 0,
    out: '[\n  "tshm-stream-a-flow-a"\n]\n',
    err: "",
  });
  assert.deepEqual(await h.run("trace-flow-delete", "--name=tshm-stream-a-flow-a"), {
    code: 0,
    out: "OK\n",
    err: "",
  });
  assert.deepEqual(await h.run("trace-flow-list"), { code: 0, out: "[]\n", err: "" });
});

/** 1.2.0's `Invalid name` line, then what a name may be (COMPATIBILITY D63). */
const invalidName = (name: string) =>
  `Invalid name\n  --name=${JSON.stringify(name)}: a flow name is 1 to 1023 bytes of letters, ` +
  "digits, '-', '+' and '_'\n";
/** 1.2.0's line, then the fix. */
const PORTS_WITHOUT_PROTOCOLS = "ports specified without protocols\n" +
  "  ports select tcp, udp or sctp packets: give --protocols too (e.g. --protocols=tcp)\n";

Deno.test("1.9: client-side checks, in order, exit 1, nothing sent", async () => {
  const h = harness();
  const long = (n: number) => "x".repeat(n);
  const cases: [string[], string][] = [
    [["--name=a b", "--target=" + long(256)], invalidName("a b")],
    [["--name=#a", "--target=t"], invalidName("#a")],
    [["--name=", "--target=t"], invalidName("")],
    [["--name=a", "--target=" + long(256), "--protocols=" + long(1001)], "target too long\n"],
    [
      ["--name=a", "--target=t", "--protocols=" + long(1001), "--dsts=" + long(1001)],
      "protocols too long\n",
    ],
    [["--name=a", "--target=t", "--dsts=" + long(1001)], "dsts too long\n"],
    [["--name=a", "--target=t", "--srcs=" + long(1001)], "srcs too long\n"],
    [["--name=a", "--target=t", "--dports=" + long(1001)], "dports too long\n"],
    [["--name=a", "--target=t", "--sports=" + long(1001)], "sports too long\n"],
    [["--name=a", "--target=t", "--match=" + long(1001)], "match too long\n"],
    [
      ["--name=a", "--target=t", "--udpencap=", "--dports=1"],
      "udpencap specified without protocols\n",
    ],
    [
      ["--name=a", "--target=t", "--udpencap=0", "--protocols=tcp"],
      "udpencap specified without sctp\n",
    ],
    [["--name=a", "--target=t", "--dports=80"], PORTS_WITHOUT_PROTOCOLS],
    [["--name=a", "--target=t", "--sports=80"], PORTS_WITHOUT_PROTOCOLS],
    [["--name=a", "--target=t\nx"], "target contains a newline\n"],
    [["--name=a", "--target=t", "--prio=1\npriority:9"], "priority contains a newline\n"],
  ];
  for (const [args, err] of cases) {
    assert.deepEqual(await h.run("flow-set", ...args), { code: 1, out: "", err }, args.join(" "));
  }
  // Limits are inclusive.
  const ok = await h.run(
    "flow-set",
    "--name=a",
    "--target=" + long(255),
    "--protocols=sctp," + "tcp,".repeat(248) + "udp", // 1000 bytes
    "--udpencap=9",
  );
  assert.match(ok.err, /^flow-set: udpencap 9 needs protocols=sctp alone, got \[sctp,tcp,/);
  assert.equal(ok.out, "FAIL: only sctp for updencap\n"); // server side: "sctp" substring only
  const sctpOk = await h.run(
    "flow-set",
    "--name=b",
    "--target=t",
    "--protocols=xSCTPx",
    "--udpencap=9",
  );
  // Passes the client's substring check; the server's udpencap check (6.8 step 3) comes first.
  assert.equal(sctpOk.out, "FAIL: only sctp for updencap\n");
  const sentBefore = h.sent.length;
  assert.equal(
    (await h.run("trace-flow-set", "--name=a", "--dports=1")).err,
    PORTS_WITHOUT_PROTOCOLS,
  );
  assert.equal((await h.run("trace-flow-set", "--name=a b")).err, invalidName("a b"));
  assert.equal(
    (await h.run("trace-flow-set", "--name=a", "--match=" + long(1001))).err,
    "match too long\n",
  );
  assert.equal(h.sent.length, sentBefore);
  assert.equal(h.sent.length, 2);
});

Deno.test("1.9: required options and help", async () => {
  const h = harness();
  assert.deepEqual(await h.run("flow-set"), {
    code: 1,
    out: "",
    err: "Missing option [--name]\nMissing option [--target]\n",
  });
  assert.deepEqual(await h.run("flow-delete"), {
    code: 1,
    out: "",
    err: "Missing option [--name]\n",
  });
  assert.equal((await h.run("trace-flow-delete")).err, "Missing option [--name]\n");
  assert.equal((await h.run("trace-flow-set")).err, "Missing option [--name]\n");
  const help = await h.run("flow-set", "--help");
  assert.equal(help.code, 0);
  assert.match(
    help.out,
    /\n {2}--name= .* \(required\)\n {2}--target= .* \(required\)\n {2}--prio= /,
  );
  assert.match(help.out, /--udpencap= .* \n$/);
  assert.equal(h.sent.length, 0);
});

Deno.test("1.9: address from NFQLB_FLOW_ADDRESS, parse and connect failures", async () => {
  const tcp = harness({ NFQLB_FLOW_ADDRESS: "tcp:[::1]:7000" });
  assert.equal((await tcp.run("flow-list")).out, "[]\n");
  assert.deepEqual(tcp.sent[0].address, { kind: "tcp", host: "::1", port: 7000, v6: true });
  const bad = harness({ NFQLB_FLOW_ADDRESS: "udp:x" });
  for (const cmd of ["flow-list", "flow-list-names", "trace-flow-list", "trace-flow-list-names"]) {
    assert.deepEqual(await bad.run(cmd), {
      code: 1,
      out: "",
      err: "Failed to parse address [udp:x]\n",
    });
  }
  assert.deepEqual(await bad.run("flow-delete", "--name=a"), {
    code: 1,
    out: "",
    err: "Failed to parse address [udp:x]\n",
  });
  const refused = flowCommands(
    () => Promise.reject(new TransportError("Connection refused")),
    () => undefined,
  );
  for (const cmd of refused) {
    const args = cmd.name.endsWith("-set")
      ? ["--name=a", "--target=t"].slice(0, cmd.name === "flow-set" ? 2 : 1)
      : cmd.name.endsWith("-delete")
      ? ["--name=a"]
      : [];
    let err = "";
    const code = await runCommand(cmd, args, { out: () => {}, err: (t) => err += t });
    assert.equal(code, 1, cmd.name);
    // 1.2.0's line, then where it tried (the default address, this namespace) and the fix.
    assert.equal(
      err,
      "Connect failed. Connection refused\n" +
        "  no flowlb answers on unix:nfqlb, the abstract unix socket @nfqlb of network namespace " +
        `${currentNetns()}; start nfqlb flowlb in this network namespace, run the command in ` +
        "the daemon's (ip netns exec NS nfqlb ...), or set NFQLB_FLOW_ADDRESS to the daemon's " +
        "address\n",
      cmd.name,
    );
  }
});

/** Run every flow command once against a daemon that answers `reply` to anything. */
async function allAgainst(reply: Uint8Array): Promise<Record<string, Run>> {
  const results: Record<string, Run> = {};
  for (const cmd of flowCommands(() => Promise.resolve(reply.slice()), () => undefined)) {
    const args = cmd.name === "flow-set"
      ? ["--name=a", "--target=t"]
      : cmd.name.endsWith("-set") || cmd.name.endsWith("-delete")
      ? ["--name=a"]
      : [];
    let out = "";
    let err = "";
    const code = await runCommand(cmd, args, { out: (t) => out += t, err: (t) => err += t });
    results[cmd.name] = { code, out, err };
  }
  return results;
}

const SET_DELETE = ["flow-set", "flow-delete", "trace-flow-set", "trace-flow-delete"];
const LISTS = ["flow-list", "flow-list-names", "trace-flow-list", "trace-flow-list-names"];

Deno.test("1.4: no reply at all prints nothing, as 1.2.0 (set/delete exit 255, lists 0)", async () => {
  const r = await allAgainst(new Uint8Array(0));
  for (const name of SET_DELETE) assert.deepEqual(r[name], { code: 255, out: "", err: "" }, name);
  for (const name of LISTS) assert.deepEqual(r[name], { code: 0, out: "", err: "" }, name);
});

Deno.test("1.4: a reply of only a NUL is an empty text: one empty line, exit 255", async () => {
  // 1.2.0 prints the empty C string + "\n" for set/delete; lists treat text replies as errors.
  const r = await allAgainst(new Uint8Array(1));
  for (const name of [...SET_DELETE, ...LISTS]) {
    assert.deepEqual(r[name], { code: 255, out: "\n", err: "" }, name);
  }
});

Deno.test("1.4: text replies to lists", async () => {
  const out: string[] = [];
  const io = { out: (t: string) => out.push(t), err: () => {} };
  const failing = flowCommands(
    () => Promise.resolve(enc.encode("FAIL: action unknown\0")),
    () => undefined,
  );
  assert.equal(await runCommand(failing[7], [], io), 255);
  assert.deepEqual(out, ["FAIL: action unknown\n"]);
});

Deno.test("flow-set --prio that is not a number: sent as given (1.2.0's atoi), and said", async () => {
  const h = harness();
  const r = await h.run("flow-set", "--name=p", "--target=t", "--prio=1O");
  assert.equal(r.code, 0);
  assert.equal(r.out, "OK\n");
  assert.equal(
    r.err,
    "warning: --prio=1O is not a number in -2147483648..2147483647: read as 1 (as 1.2.0's atoi does)\n",
  );
  assert.match(h.sent.at(-1)!.text, /\npriority:1O\n/);
  const n = await h.run("flow-set", "--name=q", "--target=t", "--prio=-7");
  assert.deepEqual([n.code, n.err], [0, ""]);
  // Not C whitespace (atoi reads 0), and a number atoi wraps.
  for (const [prio, read] of [["\u00a05", 0], ["2147483648", -2147483648]] as const) {
    const w = await h.run("flow-set", "--name=w", "--target=t", `--prio=${prio}`);
    assert.equal(
      w.err,
      `warning: --prio=${prio} is not a number in -2147483648..2147483647: read as ${read} (as 1.2.0's atoi does)\n`,
    );
  }
});
