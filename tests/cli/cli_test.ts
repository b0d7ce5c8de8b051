/**
 * CLI behaviour: getopt_long_only semantics, help, exit codes, and bad input
 * that must fail with one clear line and leave the existing table untouched.
 */
import { ENDPOINT_ACCEPTED, FWMARK_PROTO_ACCEPTED } from "../../lib/hints/accepted.ts";
import assert from "node:assert/strict";
import { COMMANDS } from "../../cli/main.ts";
import { readShm, removeShm, runCli, tempShmName } from "../../testkit/cli.ts";

const ALL_COMMANDS = [
  "activate",
  "deactivate",
  "version",
  "flow-set",
  "flow-delete",
  "flow-list",
  "flow-list-names",
  "flowlb",
  "fwmark",
  "lb",
  "init",
  "delete",
  "show",
  "stats",
  "primebelow",
  "trace",
  "loglevel",
  "trace-flow-set",
  "trace-flow-delete",
  "trace-flow-list",
  "trace-flow-list-names",
  "doctor",
  "ruleset",
];

/** Run `fn` with a fresh M=997/N=32 table holding targets 100..103. */
async function withTable(fn: (name: string) => Promise<void>): Promise<void> {
  const name = tempShmName("cli");
  try {
    assert.equal((await runCli("init", `--shm=${name}`)).code, 0);
    assert.equal((await runCli("activate", `--shm=${name}`, "100", "101", "102", "103")).code, 0);
    await fn(name);
  } finally {
    removeShm(name);
  }
}

Deno.test("no arguments, -h and --help print the usage with all 23 commands", async () => {
  const expected = "Usage: nfqlb <command> [opt...]\nCommands:\n" +
    ALL_COMMANDS.map((c) => `  ${c}\n`).join("");
  for (const args of [["-h"], ["--help"]]) {
    assert.deepEqual(await runCli(...args), { code: 0, out: expected, err: "" });
  }
  // Bare `nfqlb`: the same stdout, and on stderr where a command's own help is.
  assert.deepEqual(await runCli(), {
    code: 0,
    out: expected,
    err: "nfqlb help <command> (or nfqlb <command> --help) describes a command\n",
  });
});

Deno.test("unknown command: exact, case-sensitive match; 1.2.0's line, then the nearest", async () => {
  const near = (typed: string, cmd: string) => ({
    code: 1,
    out: "",
    err: `Unknown command [${typed}]\n  did you mean ${cmd}? (nfqlb help lists the commands)\n`,
  });
  assert.deepEqual(await runCli("Init"), near("Init", "init"));
  assert.deepEqual(await runCli("ini"), near("ini", "init"));
  assert.deepEqual(await runCli("flowset"), near("flowset", "flow-set"));
  assert.deepEqual(await runCli("flow_list"), near("flow_list", "flow-list"));
  assert.deepEqual(await runCli("xyzzy"), {
    code: 1,
    out: "",
    err: "Unknown command [xyzzy]\n  nfqlb help lists the commands\n",
  });
});

Deno.test("help: the command list, or one command's --help, exit 0", async () => {
  const list = await runCli("-h");
  assert.deepEqual(await runCli("help"), list);
  assert.equal(list.code, 0);
  for (const name of ["flow-set", "init", "doctor"]) {
    assert.deepEqual(await runCli("help", name), await runCli(name, "--help"), name);
  }
  const bad = await runCli("help", "flowset");
  assert.equal(bad.code, 1);
  assert.equal(bad.out, "");
  assert.match(bad.err, /^Unknown command \[flowset\]\n {2}did you mean flow-set\?/);
});

Deno.test("every command has --help: header, then option lines in the 1.2.0 format", async () => {
  for (const cmd of COMMANDS) {
    const r = await runCli(cmd.name, "--help");
    assert.equal(r.code, 0, cmd.name);
    assert.equal(r.err, "", cmd.name);
    const lines = r.out.split("\n");
    assert.equal(lines.pop(), "", "ends with a newline");
    assert.ok(lines[0].startsWith(cmd.name), `${cmd.name}: header first: ${r.out}`);
    // 1.2.0 lists every option but --help itself.
    assert.ok(!lines.some((l) => l.startsWith("  --help=")), `${cmd.name}: ${r.out}`);
    const optionLines = lines.filter((l) => l.startsWith("  --"));
    assert.deepEqual(
      optionLines.map((l) => l.slice(4, l.indexOf("= "))),
      cmd.options.map((o) => o.name),
      `${cmd.name}: one line per option, in declaration order`,
    );
    for (const o of cmd.options) {
      const line = optionLines.find((l) => l.startsWith(`  --${o.name}= `))!;
      assert.ok(line.endsWith(o.required ? " (required)" : " "), line);
    }
  }
});

Deno.test("--help: exact text of init (1.2.0's option order) and delete", async () => {
  assert.deepEqual(await runCli("init", "--help"), {
    code: 0,
    err: "",
    out: "init [--shm=NAME] [--M=m] [--N=n] [--ownfw=f]\n" +
      "  Create or overwrite a Maglev target table in shared memory (all targets inactive).\n" +
      "  --ownfw= Own fwmark, for an LB-tier table (default 0) \n" +
      "  --shm= Shared memory name (default nfqlb) \n" +
      "  --N= Number of target slots, <= M (default 32) \n" +
      "  --M= Lookup table size, adjusted down to a prime (default 997) \n",
  });
  assert.deepEqual(await runCli("delete", "--help"), {
    code: 0,
    err: "",
    out: "delete --shm=NAME\n  Remove a shared memory object.\n" +
      "  --shm= Shared memory name (required)\n",
  });
  assert.deepEqual(await runCli("version", "--help"), {
    code: 0,
    err: "",
    out:
      "version [--verbose]\n  Print the version (--verbose: also the implementation and Deno's).\n" +
      "  --verbose= Also print the implementation and Deno versions \n",
  });
});

Deno.test("getopt: prefixes, -name forms, separate values, permutation", async () => {
  const name = tempShmName("opt");
  try {
    assert.equal((await runCli("init", `-sh=${name}`, "-M", "7", "--N=3")).code, 0);
    assert.equal((await runCli("activate", "10", "-shm", name, "20")).code, 0);
    const r = await runCli("show", `--s=${name}`);
    assert.match(
      r.out,
      /Maglev: M=7, N=3\n {3}Lookup: 0 0 1 1 1 0 0\.\.\.\n {3}Active: 10\(0\) 20\(1\)\n$/,
    );
  } finally {
    removeShm(name);
  }
});

/** The line after an unrecognized option with no near one. */
const noHint = (cmd: string) => `  nfqlb ${cmd} --help lists its options\n`;
/** The line after an unrecognized option near `option`. */
const didYouMean = (cmd: string, option: string) =>
  `  did you mean --${option}? (nfqlb ${cmd} --help lists its options)\n`;

Deno.test("getopt errors use glibc's messages and exit 1", async () => {
  const cases: [string[], string][] = [
    [["fwmark", "-h"], "fwmark: option '-h' is ambiguous; possibilities: '-help' '-hash_mode'\n"],
    [["show", "--bogus=1"], "show: unrecognized option '--bogus=1'\n" + noHint("show")],
    [["init", "--M"], "init: option '--M' requires an argument\n"],
    [["show", "--help=1"], "show: option '--help' doesn't allow an argument\n"],
    [["primebelow", "-1"], "primebelow: unrecognized option '-1'\n" + noHint("primebelow")],
    [["fwmark"], "Missing option [--src]\nMissing option [--dst]\n"],
    [["delete"], "Missing option [--shm]\n"],
    [["show", "--bogus", "--help"], "show: unrecognized option '--bogus'\n" + noHint("show")],
    // The nearest option after glibc's line: `-`/`_` confusion, a typo, a swap.
    [
      ["flowlb", "--promiscuous-ping"],
      "flowlb: unrecognized option '--promiscuous-ping'\n" +
      didYouMean("flowlb", "promiscuous_ping"),
    ],
    [
      ["lb", "--ft-shm=x"],
      "lb: unrecognized option '--ft-shm=x'\n" + didYouMean("lb", "ft_shm"),
    ],
    [
      ["flowlb", "--fastpath_table=t"],
      "flowlb: unrecognized option '--fastpath_table=t'\n" + didYouMean("flowlb", "fastpath-table"),
    ],
    [["init", "--shn=x"], "init: unrecognized option '--shn=x'\n" + didYouMean("init", "shm")],
    [
      ["flow-set", "--protcols=tcp"],
      "flow-set: unrecognized option '--protcols=tcp'\n" + didYouMean("flow-set", "protocols"),
    ],
  ];
  for (const [args, err] of cases) {
    assert.deepEqual(await runCli(...args), { code: 1, out: "", err }, args.join(" "));
  }
});

Deno.test("--help wins when reached before an error or missing options", async () => {
  for (const args of [["show", "--help", "--bogus"], ["fwmark", "--he"], ["delete", "--help"]]) {
    const r = await runCli(...args);
    assert.equal(r.code, 0, args.join(" "));
    assert.equal(r.err, "", args.join(" "));
    assert.equal(r.out, (await runCli(args[0], "--help")).out, args.join(" "));
    assert.match(r.out, new RegExp(`^${args[0]} .*\n(.*\n)*  --`), args.join(" "));
  }
});

Deno.test("version and primebelow", async () => {
  assert.deepEqual(await runCli("version"), { code: 0, out: "1.2.0\n", err: "" });
  const verbose = await runCli("version", "--verbose");
  assert.equal(
    verbose.out,
    `1.2.0\nnfqlb in TypeScript 1.2.0; deno ${Deno.version.deno}, ` +
      `v8 ${Deno.version.v8}, typescript ${Deno.version.typescript}\n`,
  );
  const cases: [string, string][] = [
    ["2", "2"],
    ["4", "3"],
    ["100", "97"],
    ["994009", "993997"],
    ["4000000000", "993997"],
  ];
  for (const [n, p] of cases) {
    assert.deepEqual(await runCli("primebelow", n), { code: 0, out: `${p}\n`, err: "" });
  }
  assert.deepEqual(await runCli("primebelow", "--", "-1"), { code: 0, out: "993997\n", err: "" });
  assert.deepEqual(await runCli("primebelow"), { code: 0, out: "", err: "" });
  assert.deepEqual(await runCli("primebelow", "1"), {
    code: 1,
    out: "",
    err: "There is no prime below 1\n",
  });
});

Deno.test("show prints the exact 1.2.0 format", async () => {
  await withTable(async (name) => {
    const r = await runCli("show", `--shm=${name}`);
    assert.deepEqual(r, {
      code: 0,
      err: "",
      out: `Shm: ${name}\n  Fw: own=0\n  Maglev: M=997, N=32\n` +
        "   Lookup: 2 0 0 2 2 1 0 1 0 0 1 2 3 1 2 1 3 0 2 0 3 0 2 3 2...\n" +
        "   Active: 100(0) 101(1) 102(2) 103(3)\n",
    });
    await runCli("deactivate", `--shm=${name}`, "100", "101", "102", "103");
    assert.match((await runCli("show", `--shm=${name}`)).out, /\n {3}Active:\n$/);
  });
});

Deno.test("init --ownfw is stored and shown signed", async () => {
  const name = tempShmName("own");
  try {
    assert.equal((await runCli("init", `--shm=${name}`, "--ownfw=-7", "--M=7", "--N=1")).code, 0);
    assert.match((await runCli("show", `--shm=${name}`)).out, /Fw: own=-7\n/);
  } finally {
    removeShm(name);
  }
});

Deno.test("bad input: one clear line on stderr, exit 1, existing table untouched", async () => {
  await withTable(async (name) => {
    const before = readShm(name);
    const shm = `--shm=${name}`;
    const cases: [string[], RegExp][] = [
      [["init", shm, "--M=7", "--N=8"], /^N can't be larger than M\n$/],
      [["init", shm, "--M=2"], /^Invalid --M=2; expected an integer in 3\.\.993997\n$/],
      [["init", shm, "--M=abc"], /^Invalid --M=abc;/],
      [["init", shm, "--M=-1"], /^Invalid --M=-1;/],
      [["init", shm, "--M=7x"], /^Invalid --M=7x;/],
      [["init", shm, "--M=99999999999"], /^Invalid --M=99999999999;/],
      [["init", shm, "--M=994009"], /^M too large; 994009 > 993997\n$/],
      [["init", shm, "--N=-1"], /^Invalid --N=-1;/],
      [["init", shm, "--N=x"], /^Invalid --N=x;/],
      [["init", shm, "--ownfw=4294967296"], /^Invalid --ownfw=4294967296;/],
      [["init", shm, "--bogus=1"], /^init: unrecognized option '--bogus=1'\n {2}nfqlb init --help/],
      [["activate", shm, "abc"], /^Invalid fwmark \[abc\]/],
      [["activate", shm, "100", "4294967296"], /^Invalid fwmark \[4294967296\]/],
      // A target's fwmark is 0..2^31-1; a negative value (inactive) only for one --index slot.
      [
        ["activate", shm, "2147483648"],
        /^Invalid fwmark \[2147483648\]; expected an integer in 0\.\.2147483647\n$/,
      ],
      [
        ["activate", shm, "--", "-5"],
        /^Invalid fwmark \[-5\]; expected an integer in 0\.\.2147483647\n$/,
      ],
      [
        ["activate", shm, "--index=1", "2147483648"],
        /^Invalid fwmark \[2147483648\]; expected an integer in -2147483648\.\.2147483647\n$/,
      ],
      // N = 0: a table nothing can be activated in (1.2.0 accepts it).
      [["init", shm, "--N=0"], /^Invalid --N=0; expected an integer in 1\.\.4294967295\n$/],
      [["activate", shm, "--index=32", "7"], /^Lookup index too large; --index=32, N=32\n$/],
      [["activate", shm, "--index=-1", "7"], /^Lookup index too large; --index=-1, N=32\n$/],
      [
        ["activate", shm, "--index=x", "7"],
        /^Invalid --index=x; expected an integer in 0\.\.31\n$/,
      ],
      [["deactivate", shm, "--index=32"], /^Lookup index too large/],
      [["deactivate", shm, "1.5"], /^Invalid fwmark \[1\.5\]/],
    ];
    for (const [args, err] of cases) {
      const r = await runCli(...args);
      assert.equal(r.code, 1, args.join(" "));
      assert.match(r.err, err, args.join(" "));
      const lines = args.includes("--bogus=1") ? 3 : 2; // an unknown option: where the options are
      assert.equal(r.err.split("\n").length, lines, `one line: ${r.err}`);
      assert.deepEqual(readShm(name), before, `${args.join(" ")} changed the table`);
    }
  });
});

Deno.test("init over active targets: still overwritten (1.2.0), with one warning naming them", async () => {
  await withTable(async (name) => {
    assert.equal((await runCli("deactivate", `--shm=${name}`, "100", "103")).code, 0);
    const r = await runCli("init", `--shm=${name}`, "--M=997", "--N=32");
    assert.deepEqual(r, {
      code: 0,
      out: "",
      err: `init: /dev/shm/${name} had 2 active targets (fwmarks 101 102): all are inactive ` +
        `now; activate them again (nfqlb activate --shm=${name} 101 102)\n`,
    });
    const shown = (await runCli("show", `--shm=${name}`)).out;
    assert.match(shown, /Active:\n$/, "no target active");
    // Nothing active: nothing said.
    assert.deepEqual(await runCli("init", `--shm=${name}`), { code: 0, out: "", err: "" });
  });
});

Deno.test("missing or invalid shm objects give a clear error naming the object", async () => {
  const missing = tempShmName("missing");
  // 1.2.0's line, then the errno text and the command that creates the table.
  const err =
    `FAILED mapSharedData: ${missing}\n  /dev/shm/${missing}: No such file or directory; ` +
    `create it with: nfqlb init --shm=${missing} [--M=997 --N=32]\n`;
  for (const cmd of ["show", "activate", "deactivate"]) {
    const r = await runCli(cmd, `--shm=${missing}`, "1");
    assert.deepEqual(r, { code: 1, out: "", err }, cmd);
  }
  const fw = await runCli("fwmark", `--shm=${missing}`, "--src=1.1.1.1:1", "--dst=2.2.2.2:2");
  assert.equal(fw.err, err);
  const slash = await runCli("show", "--shm=a/b");
  assert.equal(
    slash.err,
    "FAILED mapSharedData: a/b\n  [a/b]: Invalid argument: a shm name is one file name in " +
      "/dev/shm, without '/'; give another name with --shm=NAME\n",
  );
  const corrupt = tempShmName("corrupt");
  try {
    const bytes = new Uint8Array(200);
    new DataView(bytes.buffer).setUint32(4, 7, true);
    new DataView(bytes.buffer).setUint32(8, 3, true);
    Deno.writeFileSync(`/dev/shm/${corrupt}`, bytes);
    const invocations = [
      ["show"],
      ["activate", "1"],
      ["fwmark", "--src=1.1.1.1:1", "--dst=2.2.2.2:2"],
    ];
    for (const args of invocations) {
      const r = await runCli(...args, `--shm=${corrupt}`);
      assert.equal(r.code, 1);
      assert.equal(
        r.err,
        `FAILED mapSharedData: ${corrupt}; not a valid target table: ` +
          "M=7, N=3 need 152 bytes, the object has 200\n",
      );
    }
    assert.deepEqual(readShm(corrupt), bytes, "activate left the invalid object alone");
  } finally {
    removeShm(corrupt);
  }
});

Deno.test("init re-run overwrites in place (same inode); invalid names fail cleanly", async () => {
  await withTable(async (name) => {
    const ino = Deno.statSync(`/dev/shm/${name}`).ino;
    assert.equal((await runCli("init", `--shm=${name}`, "--M=7", "--N=3")).code, 0);
    assert.equal(Deno.statSync(`/dev/shm/${name}`).ino, ino);
    assert.equal(readShm(name).length, 152);
    assert.match((await runCli("show", `--shm=${name}`)).out, /M=7, N=3\n {3}Lookup: -1 -1/);
  });
  assert.deepEqual(await runCli("init", "--shm=a/b"), {
    code: 1,
    out: "",
    err: "createSharedData: Invalid argument\n",
  });
});

Deno.test("delete: removes; missing and invalid names are not errors", async () => {
  const name = tempShmName("del");
  await runCli("init", `--shm=${name}`, "--M=7", "--N=1");
  assert.deepEqual(await runCli("delete", `--shm=${name}`), { code: 0, out: "", err: "" });
  assert.throws(() => Deno.statSync(`/dev/shm/${name}`), Deno.errors.NotFound);
  assert.equal((await runCli("delete", `--shm=${name}`)).code, 0);
  assert.equal((await runCli("delete", "--shm=a/b")).code, 0);
});

Deno.test("fwmark: address parsing and hash without --shm", async () => {
  const ok = await runCli(
    "fwmark",
    "--src=194.206.111.68:7728",
    "--dst=115.17.216.163:32469",
    "--proto=TCP",
  );
  assert.deepEqual(ok, { code: 0, out: '{ "hash": 2642638058 }\n', err: "" });
  const bracketV4 = await runCli("fwmark", "--src=[10.0.0.1]:80", "--dst=10.0.0.2:80");
  const mappedV6 = await runCli("fwmark", "--src=[::ffff:10.0.0.1]:80", "--dst=10.0.0.2:80");
  assert.equal(bracketV4.out, mappedV6.out, "bracketed IPv4 is the mapped address");
  // 1.2.0's line, then the accepted forms (the address-too-long line stays alone).
  const ENDPOINT = ENDPOINT_ACCEPTED;
  const long = "1".repeat(61);
  const bad: [string, string][] = [
    [`--src=${long}`, `Address too long [${long}]\n`],
    ["--src=10.0.0.1", "No port in [10.0.0.1]\n  " + ENDPOINT + "\n"],
    ["--src=1000::1:80", "Parse address failed [1000::1:80]\n  " + ENDPOINT + "\n"],
    ["--src=10.0.0.1:99999", "Parse address failed [10.0.0.1:99999]\n  " + ENDPOINT + "\n"],
    ["--src=10.0.0.1:-1", "Parse address failed [10.0.0.1:-1]\n  " + ENDPOINT + "\n"],
    ["--src=10.0.0.1:abc", "Parse address failed [10.0.0.1:abc]\n  " + ENDPOINT + "\n"],
    ["--src=[1::1:80", "Parse address failed [[1::1:80]\n  " + ENDPOINT + "\n"],
  ];
  for (const [src, err] of bad) {
    assert.deepEqual(await runCli("fwmark", src, "--dst=1.1.1.1:1"), { code: 1, out: "", err });
  }
  assert.deepEqual(
    await runCli("fwmark", "--src=1.1.1.1:", "--dst=1.1.1.1:0"),
    await runCli("fwmark", "--src=1.1.1.1:0", "--dst=1.1.1.1:0"),
    "an empty port is 0",
  );
  assert.deepEqual(await runCli("fwmark", "--src=1.1.1.1:1", "--dst=1.1.1.1:1", "--proto=icmp"), {
    code: 1,
    out: "",
    // 1.2.0's line, then the accepted values.
    err: `Failed to parse protocol [icmp]\n  ${FWMARK_PROTO_ACCEPTED}\n`,
  });
});
