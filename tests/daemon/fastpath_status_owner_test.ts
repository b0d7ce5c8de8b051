/**
 * The fast path's status objects (`/dev/shm/nfqlb-fastpath.<netns>.<table>`) when another user
 * could have planted one (docs/FASTPATH.md, docs/COMPATIBILITY.md#shared-memory):
 *
 * - the table commands' wait (and `stats`) ignores objects owned by another user (uid 65534),
 *   writable by group or others, naming a process that is gone or one that does not map them;
 *   so a planted object cannot make every `activate` wait 1 s;
 * - `lb --fastpath` refuses to start over a planted or writable object, with the reason and the
 *   fix, and leaves it untouched; a stale object of its own is replaced by a new one, created
 *   exclusively with mode 0644;
 * - an object whose process runs and maps it (a daemon with the same table whose table is down
 *   after a failed switch, so a second daemon's table setup succeeds) is neither removed nor
 *   replaced: the second daemon refuses to start, naming the pid and the table (before, it
 *   unlinked the live daemon's object);
 * - a daemon that stops removes its status object only if the name still is that object, not
 *   one another daemon made after ours was removed (before, it unlinked whatever had the name).
 */
import assert from "node:assert/strict";
import { Daemon } from "../../testkit/e2e_service.ts";
import { removeShm, runCli, tempShmName } from "../../testkit/cli.ts";
import { isRoot, withTestNet } from "../../testkit/netns.ts";
import {
  createStatusObject,
  openLiveFastPath,
  waitForFastPaths,
} from "../../daemon/fastpath_wait.ts";
import { initStatus, STATUS_PREFIX, STATUS_SIZE, statusPid } from "../../lib/fastpath/status.ts";

const ROOT = isRoot();
if (!ROOT) console.warn("fastpath_status_owner_test: not running as root: skipped");

const token = () => crypto.getRandomValues(new Uint32Array(1))[0].toString(36);

/** This process's network namespace inode (as in the status object's name). */
function ownNetns(): string {
  return /\[(\d+)\]/.exec(Deno.readLinkSync("/proc/self/ns/net"))![1];
}

/** Plant /dev/shm/`name`: a status object for `pid` (or `bytes`), owner `uid`, mode `mode`. */
function plant(name: string, uid: number, mode: number, pid?: number, bytes?: Uint8Array): void {
  let data = bytes;
  if (data === undefined) {
    const mem = new ArrayBuffer(STATUS_SIZE);
    initStatus(mem, pid!, "ftshm");
    data = new Uint8Array(mem);
  }
  const path = `/dev/shm/${name}`;
  Deno.writeFileSync(path, data, { createNew: true });
  Deno.chownSync(path, uid, uid);
  Deno.chmodSync(path, mode);
}

/** A pid that no process has (a child that has exited). */
async function deadPid(): Promise<number> {
  const c = new Deno.Command("true").spawn();
  await c.status;
  return c.pid;
}

const WAIT = new URL("../../daemon/fastpath_wait.ts", import.meta.url).href;

/** Another process that holds status object `name` (made with createStatusObject) while it runs. */
async function holder(name: string): Promise<{ pid: number; kill(): Promise<void> }> {
  const code = `import { createStatusObject } from ${JSON.stringify(WAIT)};
createStatusObject(${JSON.stringify(name)}, Deno.pid, "ftshm");
console.log("ready");
for await (const _ of Deno.stdin.readable);`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("ready\n")) {
    const r = await reader.read();
    if (r.done) throw new Error(`holder of ${name} exited: ${out}`);
    out += r.value;
  }
  return {
    pid: child.pid,
    async kill() {
      try {
        child.kill("SIGKILL");
      } catch {
        // gone
      }
      await child.status;
      await reader.cancel().catch(() => {});
      await child.stdin.close().catch(() => {});
    },
  };
}

Deno.test("a status object whose process runs and maps it is not replaced; a stale one is", async () => {
  const table = `fpst${token()}held`;
  const name = `${STATUS_PREFIX}${ownNetns()}.${table}`;
  const h = await holder(name);
  try {
    const ino = Deno.statSync(`/dev/shm/${name}`).ino;
    assert.throws(
      () => createStatusObject(name, Deno.pid, "mine"),
      (e: unknown) => {
        assert.ok(e instanceof Error && e.name === "FastPathInUseError", String(e));
        assert.equal(
          e.message,
          `${name}: process ${h.pid} runs a fast path with table inet ${table} in this network ` +
            `namespace (its table is being created again); stop it or use another --fastpath-table`,
        );
        return true;
      },
    );
    assert.equal(Deno.statSync(`/dev/shm/${name}`).ino, ino, "left as it was");
    const f = openLiveFastPath(name);
    assert.notEqual(typeof f, "string", String(f));
    if (typeof f !== "string") {
      assert.equal(statusPid(f.mapping.buffer), h.pid);
      f.mapping.close();
    }
    // Killed: its object is stale now, and replaced.
    await h.kill();
    const m = createStatusObject(name, Deno.pid, "mine");
    try {
      assert.equal(statusPid(m.buffer), Deno.pid);
    } finally {
      m.close();
    }
  } finally {
    await h.kill();
    removeShm(name);
  }
});

Deno.test({
  name: "the table commands' wait ignores planted, writable, dead and unmapped status objects",
  ignore: !ROOT,
  async fn() {
    const ns = ownNetns();
    const sleeper = new Deno.Command("sleep", { args: ["60"] }).spawn();
    const t = token();
    const name = (tag: string) => `${STATUS_PREFIX}${ns}.fpst${t}${tag}`;
    const cases: [string, number, number, number, string | undefined][] = [
      // name, owner, mode, pid, why it is ignored (undefined: used)
      [name("planted"), 65534, 0o644, Deno.pid, "owned by uid 65534, expected root or uid 0"],
      [name("writable"), 0, 0o666, Deno.pid, "writable by group or others (mode 0666)"],
      [name("dead"), 0, 0o644, await deadPid(), "process DEAD is gone"],
      [name("unmapped"), 0, 0o644, sleeper.pid, `process ${sleeper.pid} does not map it`],
      // The control: root's, not writable by others, its process alive and mapping it (the
      // test maps it while it checks).
      [name("live"), 0, 0o644, Deno.pid, undefined],
    ];
    try {
      for (const [n, uid, mode, pid] of cases) plant(n, uid, mode, pid);
      // The wait: only the live object (whose scans never advance here) is waited for.
      const late = waitForFastPaths(100).filter((table) => table.includes(`fpst${t}`));
      assert.deepEqual(late, [`fpst${t}live`]);
      // Why each is used or not.
      for (const [n, , , pid, why] of cases) {
        const f = openLiveFastPath(n);
        const got = typeof f === "string" ? f : undefined;
        if (typeof f !== "string") f.mapping.close();
        assert.equal(got, why?.replace("DEAD", String(pid)), n);
      }
      // A user who owns the table written gains nothing by planting: its objects count.
      const trusted = openLiveFastPath(name("planted"), 65534);
      assert.notEqual(typeof trusted, "string");
      if (typeof trusted !== "string") trusted.mapping.close();
    } finally {
      sleeper.kill();
      await sleeper.status;
      for (const [n] of cases) removeShm(n);
    }
  },
});

Deno.test({
  name: "lb --fastpath refuses a planted or writable status object; replaces a stale own one",
  ignore: !ROOT,
  async fn() {
    const t = token();
    const table = `fpst${t}`;
    const tshm = tempShmName("fpst");
    const ftshm = tempShmName("fpstft");
    let status = "";
    try {
      assert.equal((await runCli("init", `--shm=${tshm}`, "--M=997", "--N=4")).code, 0);
      await withTestNet(async (net) => {
        const lb = await net.addNs("st");
        const inode = /\[(\d+)\]/.exec(await net.run(lb, ["readlink", "/proc/self/ns/net"]))![1];
        status = `${STATUS_PREFIX}${inode}.${table}`;
        const path = `/dev/shm/${status}`;
        const args = [
          `--tshm=${tshm}`,
          `--ft_shm=${ftshm}`,
          "--queue=3",
          "--fastpath",
          `--fastpath-table=${table}`,
        ];
        const planted = new TextEncoder().encode("planted");
        for (
          const [uid, mode, problem] of [
            [65534, 0o644, "owned by uid 65534, expected root or uid 0"],
            [0, 0o666, "writable by group or others (mode 0666)"],
          ] as const
        ) {
          plant(status, uid, mode, undefined, planted);
          const before = Deno.statSync(path);
          const d = new Daemon(net, lb, "lb", args);
          if (await d.ready().then(() => true, () => false)) {
            await d.kill();
            assert.fail(`lb started over an object of uid ${uid}, mode ${mode.toString(8)}`);
          }
          const r = await d.finish();
          assert.equal(r.code, 1, r.stderr);
          const want = `fastpath: ${status}: refusing ${path}: ${problem} (another user could ` +
            `change or truncate it); remove it (rm ${path}) and try again`;
          assert.ok(r.stderr.includes(want), `stderr has:\n${want}\ngot:\n${r.stderr}`);
          const after = Deno.statSync(path);
          assert.deepEqual([after.ino, after.uid, after.mode], [
            before.ino,
            before.uid,
            before.mode,
          ]);
          assert.deepEqual(Deno.readFileSync(path), planted, "left as it was");
          removeShm(status);
        }

        // A stale object of our own (a killed daemon's): removed, a new one made exclusively.
        plant(status, 0, 0o600, await deadPid());
        const stale = Deno.statSync(path).ino;
        const d = new Daemon(net, lb, "lb", args);
        try {
          await d.ready();
          const st = Deno.statSync(path);
          assert.notEqual(st.ino, stale, "a new object");
          assert.deepEqual([st.uid, st.mode! & 0o7777], [0, 0o644]);
          const f = openLiveFastPath(status);
          assert.notEqual(typeof f, "string", String(f));
          if (typeof f !== "string") {
            assert.equal(statusPid(f.mapping.buffer), d.pid);
            f.mapping.close();
          }
          const r = await d.stop();
          assert.equal(r.code, 0, r.stderr);
          assert.throws(() => Deno.statSync(path), Deno.errors.NotFound, "removed at stop");
        } finally {
          await d.kill();
        }

        // Another process (a daemon whose table is down) holds the object: lb refuses, names it.
        const h = await holder(status);
        try {
          const held = Deno.statSync(path).ino;
          const d2 = new Daemon(net, lb, "lb", args);
          if (await d2.ready().then(() => true, () => false)) {
            await d2.kill();
            assert.fail("lb started over a live daemon's status object");
          }
          const r = await d2.finish();
          assert.equal(r.code, 1, r.stderr);
          const want = `fastpath: ${status}: process ${h.pid} runs a fast path with table inet ` +
            `${table} in this network namespace`;
          assert.ok(r.stderr.includes(want), `stderr has:\n${want}\ngot:\n${r.stderr}`);
          assert.equal(Deno.statSync(path).ino, held, "left as it was");
        } finally {
          await h.kill();
          removeShm(status);
        }

        // Ours removed by hand while running, another made under the name: left at stop.
        const d3 = new Daemon(net, lb, "lb", args);
        try {
          await d3.ready();
          removeShm(status);
          const other = createStatusObject(status, Deno.pid, "other");
          const ino = Deno.statSync(path).ino;
          other.close();
          const r = await d3.stop();
          assert.equal(r.code, 0, r.stderr);
          assert.equal(Deno.statSync(path).ino, ino, "the other object is left at stop");
        } finally {
          await d3.kill();
        }
      });
    } finally {
      removeShm(tshm);
      removeShm(ftshm);
      if (status !== "") removeShm(status);
    }
  },
});
