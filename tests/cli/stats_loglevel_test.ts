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
  // stdout is 1.2.0's; stderr has the host-wide note (D61), whose text other tests check.
  const loglevel = async (...args: string[]) => {
    const r = await runCli("loglevel", ...args);
    assert.match(r.err, /^(nfqlb: [^\n]*\n)?$/);
    return { code: r.code, out: r.out };
  };
  try {
    removeShm(name);
    assert.deepEqual(await loglevel(), { code: 0, out: "loglevel=5\n" });
    assert.deepEqual(Array.from(Deno.readFileSync(path)), [5, 0, 0, 0, 0, 0, 0, 0]);
    assert.equal(Deno.statSync(path).mode! & 0o777, 0o600);
    assert.deepEqual(await loglevel("7"), { code: 0, out: "loglevel=7\n" });
    assert.deepEqual(await loglevel(), { code: 0, out: "loglevel=7\n" });
    const bad = await runCli("loglevel", "abc");
    assert.equal(bad.code, 1);
    assert.match(bad.err, /^Invalid log level \[abc\]/);
    assert.deepEqual(await loglevel(), { code: 0, out: "loglevel=7\n" });
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
    const six = await run(name, "6");
    assert.deepEqual({ code: six.code, out: six.out }, { code: 0, out: "loglevel=6\n" });
    assert.match(
      six.err,
      new RegExp(
        `^nfqlb: no (running process|process this command could inspect) maps ` +
          `${escape(`/dev/shm/${name}`)}, `,
      ),
    );
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

/** A process that maps trace object `name` until its stdin closes; `netns`: in a new one. */
async function mapper(name: string, netns: boolean) {
  const mod = new URL("../../daemon/open_trace_shm.ts", import.meta.url).href;
  const code = `const { openTraceShm } = await import(${JSON.stringify(mod)});
    const m = openTraceShm(); console.log("mapped");
    await Deno.stdin.read(new Uint8Array(1)); m.close();`;
  const argv = [Deno.execPath(), "eval", code];
  const child = new Deno.Command(netns ? "unshare" : argv[0], {
    args: netns ? ["-n", ...argv] : argv.slice(1),
    env: { NFQLB_TRACE_SHM: name },
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("mapped\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`mapper exited: ${text}`);
    text += value;
  }
  return {
    pid: child.pid,
    async stop() {
      await child.stdin.close();
      await reader.cancel();
      await child.status;
    },
  };
}

Deno.test("loglevel says on stderr which processes, in which network namespace, share the level", async () => {
  const name = `nfqlb-trace.${tempShmName("hw")}`;
  const cli = new URL("../../cli.ts", import.meta.url).pathname;
  const loglevel = async (...args: string[]) => {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", cli, "loglevel", ...args],
      env: { NFQLB_TRACE_SHM: name },
    }).output();
    const text = (b: Uint8Array) => new TextDecoder().decode(b);
    return { code: r.code, out: text(r.stdout), err: text(r.stderr) };
  };
  const mappers: { pid: number; stop(): Promise<void> }[] = [];
  try {
    // Nobody maps it: setting and reading say no daemon takes or logs at this level.
    const alone = await loglevel("7");
    assert.deepEqual({ code: alone.code, out: alone.out }, { code: 0, out: "loglevel=7\n" });
    // Processes whose maps cannot be read (here even as root: a container's pid 1 may not be)
    // are counted instead of taken for none.
    const where = escape(`/dev/shm/${name}`);
    assert.match(
      alone.err,
      new RegExp(
        `^nfqlb: (no running process maps ${where}, so no daemon takes this level now ` +
          `\\(daemons started later will\\)|no process this command could inspect maps ` +
          `${where}, but \\d+ process(es)? could not be inspected \\(${escape(WHY)}\\): a ` +
          `daemon among them may take this level now); a daemon started with NFQLB_TRACE_SHM set ` +
          `uses that object: set the same for this command\n$`,
      ),
    );
    assert.match(
      (await loglevel()).err,
      /(so no daemon logs at this level|a daemon among them may log at this level);/,
    );

    mappers.push(await mapper(name, false));
    if (isRootUser()) mappers.push(await mapper(name, true));
    const set = await loglevel("6");
    assert.deepEqual({ code: set.code, out: set.out }, { code: 0, out: "loglevel=6\n" });
    const users = [{ pid: mappers[0].pid, text: "this network namespace" }];
    // unshare execs deno in place: the pid it was spawned with maps the object.
    if (mappers.length > 1) users.push({ pid: mappers[1].pid, text: "another network namespace" });
    // Listed by pid, whichever mapper got the lower one.
    users.sort((a, b) => a.pid - b.pid);
    assert.match(
      set.err,
      new RegExp(
        "^" + escape(
          `nfqlb: the log level is host-wide: /dev/shm/${name} is read by every nfqlb on this ` +
            `host that maps it, in any network namespace; mapped now by ${
              users.map((u) => `pid ${u.pid} (${u.text})`).join(", ")
            }`,
        ) + `(; \\d+ process(es)? could not be inspected \\(${escape(WHY)}\\))?` + escape(
          "; NFQLB_TRACE_SHM=nfqlb-trace.<suffix>, set for a daemon and its commands alike, " +
            "gives them one of their own\n",
        ) + "$",
      ),
    );
    // Reading, with processes that map it: 1.2.0's output only.
    assert.deepEqual(await loglevel(), { code: 0, out: "loglevel=6\n", err: "" });
  } finally {
    removeShm(name);
    for (const m of mappers) await m.stop();
  }
});

/** Why a process may not be inspected, as the notes say. */
const WHY = "another user's, or not dumpable, e.g. a daemon with file capabilities";

/** `s` as a literal in a regular expression. */
function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

Deno.test({
  name:
    "loglevel as a user who cannot read other processes' maps: they are counted, not taken for none",
  ignore: !isRootUser(),
  async fn() {
    const name = `nfqlb-trace.${tempShmName("nr")}`;
    const home = Deno.makeTempDirSync({ prefix: "nfqlb-loglevel-" });
    Deno.chownSync(home, 65534, 65534);
    try {
      const cli = new URL("../../cli.ts", import.meta.url).pathname;
      const r = await new Deno.Command("setpriv", {
        args: [
          "--reuid=65534",
          "--regid=65534",
          "--clear-groups",
          Deno.execPath(),
          "run",
          "-A",
          cli,
          "loglevel",
          "7",
        ],
        env: { NFQLB_TRACE_SHM: name, HOME: home, DENO_DIR: home },
      }).output();
      const err = new TextDecoder().decode(r.stderr);
      assert.equal(r.code, 0, err);
      // Root's processes (this test among them) are not uid 65534's to read.
      assert.match(
        err,
        new RegExp(
          `^nfqlb: no process this command could inspect maps ${escape(`/dev/shm/${name}`)}, ` +
            `but \\d+ process(es)? could not be inspected \\(${escape(WHY)}\\): a daemon among ` +
            "them may take this level now; ",
        ),
      );
    } finally {
      removeShm(name);
      Deno.removeSync(home, { recursive: true });
    }
  },
});

function isRootUser(): boolean {
  return Deno.uid() === 0;
}
