/** `stats` and `loglevel` through the CLI (docs/COMPATIBILITY.md#command-line, #trace-and-log, #shared-memory). */
import assert from "node:assert/strict";
import { DEFAULT_STATS } from "../../testkit/spec_examples.ts";
import { FTSHM_EXT_SIZE, initFtStats } from "../../lib/frag/stats.ts";
import { removeShm, runCli, tempShmName } from "../../testkit/cli.ts";
import { traceShmName } from "../../daemon/open_trace_shm.ts";
import { createStatusObject } from "../../daemon/fastpath_wait.ts";
import { STATUS_PREFIX } from "../../lib/fastpath/status.ts";

Deno.test("stats prints the spec's example for a default daemon's object", async () => {
  const name = tempShmName("ft");
  try {
    const bytes = new Uint8Array(72);
    initFtStats(bytes, { ttlMs: 200, size: 500, mtu: 1500, buckets: 500, frags: 0 });
    Deno.writeFileSync(`/dev/shm/${name}`, bytes);
    assert.deepEqual(await runCli("stats", `--ft_shm=${name}`), {
      code: 0,
      out: DEFAULT_STATS,
      err: "",
    });
    Deno.writeFileSync(`/dev/shm/${name}`, bytes.subarray(0, 10));
    const short = await runCli("stats", `--ft_shm=${name}`);
    assert.equal(short.code, 1);
    assert.match(short.err, /not fragment statistics: 10 bytes/);
  } finally {
    removeShm(name);
  }
  assert.deepEqual(await runCli("stats", `--ft_shm=${name}`), {
    code: 1,
    out: "",
    err: `FAILED mapSharedData: ${name}\n  /dev/shm/${name}: No such file or directory; ` +
      `no lb or flowlb on this host has created its statistics object ${name}: is one ` +
      "running? (one started with --ft_shm=NAME: nfqlb stats --ft_shm=NAME)\n",
  });
});

Deno.test("stats prints our counters after 1.2.0's for an object the daemons create (108 bytes)", async () => {
  const name = tempShmName("ftx");
  try {
    const bytes = new Uint8Array(FTSHM_EXT_SIZE);
    initFtStats(bytes, { ttlMs: 200, size: 500, mtu: 1500, buckets: 500, frags: 100 });
    new DataView(bytes.buffer).setUint32(104, 3, true); // kernelReassembled
    Deno.writeFileSync(`/dev/shm/${name}`, bytes);
    const r = await runCli("stats", `--ft_shm=${name}`);
    assert.equal(r.code, 0, r.err);
    const head = DEFAULT_STATS.replace('"fragsMax":         0', '"fragsMax":         100');
    // 1.2.0's lines unchanged (the last one now ends with a comma), then ours.
    assert.ok(
      r.out.startsWith(head.replace('"reAssembled":      0\n}\n', '"reAssembled":      0,\n')),
    );
    const stats = JSON.parse(r.out);
    assert.equal(stats.kernelReassembled, 3);
    assert.equal(stats.fragsInjected, 0);
  } finally {
    removeShm(name);
  }
});

Deno.test("loglevel creates nfqlb-trace with level 5, sets and reads it", async () => {
  const name = traceShmName(); // nfqlb-trace, unless the suite runs with its own
  const path = `/dev/shm/${name}`;
  let saved: Uint8Array | undefined;
  try {
    saved = Deno.readFileSync(path);
  } catch {
    saved = undefined;
  }
  try {
    removeShm(name);
    assert.deepEqual(await runCli("loglevel"), { code: 0, out: "loglevel=5\n", err: "" });
    assert.deepEqual(Array.from(Deno.readFileSync(path)), [5, 0, 0, 0, 0, 0, 0, 0]);
    assert.equal(Deno.statSync(path).mode! & 0o777, 0o600);
    assert.deepEqual(await runCli("loglevel", "7"), { code: 0, out: "loglevel=7\n", err: "" });
    assert.deepEqual(await runCli("loglevel"), { code: 0, out: "loglevel=7\n", err: "" });
    const bad = await runCli("loglevel", "abc");
    assert.equal(bad.code, 1);
    assert.match(bad.err, /^Invalid log level \[abc\]/);
    assert.deepEqual(await runCli("loglevel"), { code: 0, out: "loglevel=7\n", err: "" });
  } finally {
    if (saved === undefined) removeShm(name);
    else Deno.writeFileSync(path, saved);
  }
});

Deno.test("stats shows the fast path of the daemon whose --ft_shm it reads, not another's", async () => {
  const mine = tempShmName("ftmine");
  const other = tempShmName("ftother");
  const table = `fpstats${Deno.pid}`;
  const status = createStatusObject(`${STATUS_PREFIX}0.${table}`, Deno.pid, mine);
  try {
    for (const n of [mine, other]) {
      const bytes = new Uint8Array(FTSHM_EXT_SIZE);
      initFtStats(bytes, { ttlMs: 200, size: 500, mtu: 1500, buckets: 500, frags: 0 });
      Deno.writeFileSync(`/dev/shm/${n}`, bytes);
    }
    const own = await runCli("stats", `--ft_shm=${mine}`);
    assert.equal(own.code, 0, own.err);
    // No writer runs here: up=0.
    assert.match(own.out, new RegExp(`\\n\\}\\nFastpath ${table}: up=0, elements=0, `));
    const theirs = await runCli("stats", `--ft_shm=${other}`);
    assert.equal(theirs.code, 0, theirs.err);
    assert.doesNotMatch(theirs.out, /Fastpath/);
    JSON.parse(theirs.out); // nothing after the JSON of a daemon without a fast path
  } finally {
    status.close();
    removeShm(`${STATUS_PREFIX}0.${table}`);
    removeShm(mine);
    removeShm(other);
  }
});

Deno.test("NFQLB_TRACE_SHM names the trace object of loglevel (and the daemons); a bad name is refused", async () => {
  const name = `nfqlb-trace.${tempShmName("t")}`;
  const cli = new URL("../../cli.ts", import.meta.url).pathname;
  const run = async (value: string, ...args: string[]) => {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", cli, "loglevel", ...args],
      env: { NFQLB_TRACE_SHM: value },
    }).output();
    const text = (b: Uint8Array) => new TextDecoder().decode(b);
    return { code: r.code, out: text(r.stdout), err: text(r.stderr) };
  };
  try {
    assert.deepEqual(await run(name, "6"), { code: 0, out: "loglevel=6\n", err: "" });
    assert.deepEqual(Array.from(Deno.readFileSync(`/dev/shm/${name}`)), [6, 0, 0, 0, 0, 0, 0, 0]);
    const bad = await run("a/b");
    assert.equal(bad.code, 1);
    assert.match(bad.err, /NFQLB_TRACE_SHM=a\/b: not a trace object's name/);
    // Not a table's name either: the object is written.
    const table = await run("nfqlb");
    assert.equal(table.code, 1);
    assert.match(table.err, /NFQLB_TRACE_SHM=nfqlb: not a trace object's name/);
  } finally {
    removeShm(name);
  }
});
