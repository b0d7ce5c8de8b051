/**
 * The `--flow-state` file on disk (daemon/flow_state_file.ts, docs/COMPATIBILITY.md#flows):
 * another local user (uid 65534, via setpriv) plants files next to it in a 0777 and a 1777
 * directory; nothing of theirs is followed, written or restored, an unsafe place stops the
 * start-up with a message naming the path, a corrupt file is set aside and reported. Flows whose
 * table does not exist are restored pending and saved again (D58); a failed save turns the
 * change's `OK` into a `FAIL:` reply (D29).
 */
import assert from "node:assert/strict";
import {
  FlowStateError,
  FlowStateSaver,
  readFlowStateFile,
  removeStaleTmpFiles,
  restoreFlowState,
  writeFlowStateFile,
} from "../../daemon/flow_state_file.ts";
import { mappableTargets } from "../../daemon/open_table.ts";
import { decodeReply, textReply } from "../../lib/flow/control_protocol.ts";
import { decodeFlowState, encodeFlowState } from "../../lib/flow/state_file.ts";
import { FlowStore } from "../../lib/flow/store.ts";
import { removeShm, runCli, tempShmName } from "../../testkit/cli.ts";
import { isRoot } from "../../testkit/netns.ts";

const ROOT = isRoot();
const NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];

/** Run `argv` as uid 65534; assert it succeeded. */
async function asNobody(...argv: string[]): Promise<void> {
  const r = await new Deno.Command(NOBODY[0], { args: [...NOBODY.slice(1), ...argv] }).output();
  assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
}

const store = () => new FlowStore({ acquire: () => true, release: () => {} });
const oneFlow = (name: string) => {
  const s = store();
  assert.equal(s.set({ name, target: "t", dports: "80", protocols: "tcp" }), "OK");
  return encodeFlowState(s.flows.snapshot.flows, s.traces.snapshot.flows);
};

/** A fresh directory of `mode` (root-owned). */
async function dir(mode: number): Promise<string> {
  const d = await Deno.makeTempDir({ prefix: "nfqlb-flowstate-" });
  await Deno.chmod(d, mode);
  return d;
}

Deno.test({
  name: "flow-state: a planted flows.json.tmp symlink to a root file: the root file is untouched",
  ignore: !ROOT,
  async fn() {
    for (const mode of [0o1777, 0o755]) {
      const d = await dir(mode);
      const victim = await Deno.makeTempFile({ prefix: "nfqlb-victim-" });
      try {
        await Deno.writeTextFile(victim, "precious\n");
        if (mode === 0o1777) await asNobody("ln", "-s", victim, `${d}/flows.json.tmp`);
        else await Deno.symlink(victim, `${d}/flows.json.tmp`);
        writeFlowStateFile(`${d}/flows.json`, oneFlow("a"));
        writeFlowStateFile(`${d}/flows.json`, oneFlow("b"));
        assert.equal(await Deno.readTextFile(victim), "precious\n");
        assert.ok((await Deno.lstat(`${d}/flows.json.tmp`)).isSymlink, "the planted link stays");
        const st = await Deno.lstat(`${d}/flows.json`);
        assert.ok(st.isFile);
        assert.equal(st.mode! & 0o777, 0o600);
        assert.match(readFlowStateFile(`${d}/flows.json`)!, /"name": "b"/);
      } finally {
        await Deno.remove(d, { recursive: true });
        await Deno.remove(victim);
      }
    }
  },
});

Deno.test({
  name: "flow-state: a planted regular tmp file (0666) in a sticky dir is not used, not restored",
  ignore: !ROOT,
  async fn() {
    const d = await dir(0o1777);
    try {
      const planted = oneFlow("planted");
      await asNobody("sh", "-c", `umask 0; printf '%s' '${planted}' > ${d}/flows.json.tmp`);
      writeFlowStateFile(`${d}/flows.json`, oneFlow("mine"));
      assert.equal(await Deno.readTextFile(`${d}/flows.json.tmp`), planted, "not written into");
      const s = store();
      assert.equal(restoreFlowState(s, `${d}/flows.json`, () => {}), 1);
      assert.deepEqual(s.flows.names(), ["mine"]);
      // The attacker's file at the final path itself is refused, not restored.
      await Deno.remove(`${d}/flows.json`);
      await asNobody("sh", "-c", `umask 0; printf '%s' '${planted}' > ${d}/flows.json`);
      assert.throws(
        () => restoreFlowState(store(), `${d}/flows.json`, () => {}),
        (e: unknown) =>
          e instanceof FlowStateError && e.path === `${d}/flows.json` &&
          /owned by uid 65534/.test(e.message),
      );
      // A FIFO at the final path is refused without hanging.
      await Deno.remove(`${d}/flows.json`);
      await asNobody("mkfifo", `${d}/flows.json`);
      assert.throws(() => readFlowStateFile(`${d}/flows.json`), /not a regular file/);
    } finally {
      await Deno.remove(d, { recursive: true });
    }
  },
});

Deno.test({
  name: "flow-state: world-writable non-sticky dir, group-writable file, symlink: refused",
  ignore: !ROOT,
  async fn() {
    const open = await dir(0o777);
    const safe = await dir(0o755);
    try {
      assert.throws(
        () => readFlowStateFile(`${open}/flows.json`),
        (e: unknown) =>
          e instanceof FlowStateError && e.path === open &&
          e.message ===
            `flow-state: ${open}: directory is writable by other users and not sticky (mode 0777)`,
      );
      await Deno.writeTextFile(`${safe}/flows.json`, oneFlow("a"));
      await Deno.chmod(`${safe}/flows.json`, 0o664);
      assert.throws(() => readFlowStateFile(`${safe}/flows.json`), /writable by other users/);
      await Deno.remove(`${safe}/flows.json`);
      await Deno.writeTextFile(`${safe}/real.json`, oneFlow("a"));
      await Deno.symlink(`${safe}/real.json`, `${safe}/flows.json`);
      assert.throws(() => readFlowStateFile(`${safe}/flows.json`), /is a symbolic link/);
      assert.equal(readFlowStateFile(`${safe}/none.json`), undefined, "no file yet: fine");
    } finally {
      await Deno.remove(open, { recursive: true });
      await Deno.remove(safe, { recursive: true });
    }
  },
});

Deno.test({
  name: "flowlb: --flow-state in a world-writable non-sticky dir: exit 1, message names the dir",
  ignore: !ROOT,
  async fn() {
    const open = await dir(0o777);
    const ftShm = tempShmName("ft");
    const address = `unix:nfqlb-test-${Deno.pid}-flowstate`;
    const saved = Deno.env.get("NFQLB_FLOW_ADDRESS");
    Deno.env.set("NFQLB_FLOW_ADDRESS", address);
    try {
      const r = await runCli("flowlb", `--ft_shm=${ftShm}`, `--flow-state=${open}/flows.json`);
      assert.equal(r.code, 1);
      assert.match(
        r.err,
        new RegExp(`flow-state: ${open}: directory is writable by other users and not sticky`),
      );
    } finally {
      if (saved === undefined) Deno.env.delete("NFQLB_FLOW_ADDRESS");
      else Deno.env.set("NFQLB_FLOW_ADDRESS", saved);
      removeShm(ftShm);
      await Deno.remove(open, { recursive: true });
    }
  },
});

Deno.test("flow-state: a corrupt file is renamed aside and reported, not replaced", async () => {
  const d = await Deno.makeTempDir({ prefix: "nfqlb-flowstate-" });
  try {
    await Deno.writeTextFile(`${d}/flows.json`, '{"version": 1, "flows": [');
    await Deno.chmod(`${d}/flows.json`, 0o600);
    const logs: string[] = [];
    const s = store();
    assert.equal(restoreFlowState(s, `${d}/flows.json`, (l) => logs.push(l)), 0);
    const names = [...Deno.readDirSync(d)].map((e) => e.name);
    assert.equal(names.length, 1);
    assert.match(names[0], /^flows\.json\.corrupt-\d{8}T\d{6}Z$/);
    assert.equal(await Deno.readTextFile(`${d}/${names[0]}`), '{"version": 1, "flows": [');
    assert.equal(logs.length, 1);
    assert.match(logs[0], new RegExp(`${d}/flows.json: corrupt .*kept as ${d}/${names[0]}`));
  } finally {
    await Deno.remove(d, { recursive: true });
  }
});

Deno.test("flow-state: stale temporary files of a killed daemon are removed (once started)", async () => {
  const d = await Deno.makeTempDir({ prefix: "nfqlb-flowstate-" });
  try {
    writeFlowStateFile(`${d}/flows.json`, oneFlow("a"));
    const stale = `${d}/.flows.json.0123456789abcdef01234567.tmp`;
    await Deno.writeTextFile(stale, "partial");
    await Deno.writeTextFile(`${d}/flows.json.tmp`, "someone else's"); // not ours: kept
    const s = store();
    // The restore removes nothing: it runs before the queues are bound (another flowlb may be
    // writing that file); the control thread removes them once the daemon has started.
    assert.equal(restoreFlowState(s, `${d}/flows.json`, () => {}), 1);
    assert.equal([...Deno.readDirSync(d)].length, 3);
    assert.equal(removeStaleTmpFiles(`${d}/flows.json`), 1);
    const names = [...Deno.readDirSync(d)].map((e) => e.name).sort();
    assert.deepEqual(names, ["flows.json", "flows.json.tmp"]);
  } finally {
    await Deno.remove(d, { recursive: true });
  }
});

Deno.test("flow-state: kill -9 during a write loop leaves a parseable file", async () => {
  const d = await Deno.makeTempDir({ prefix: "nfqlb-flowstate-" });
  const module = new URL("../../daemon/flow_state_file.ts", import.meta.url).href;
  const storeModule = new URL("../../lib/flow/store.ts", import.meta.url).href;
  const stateModule = new URL("../../lib/flow/state_file.ts", import.meta.url).href;
  const loop = `
    import { writeFlowStateFile } from "${module}";
    import { FlowStore } from "${storeModule}";
    import { encodeFlowState } from "${stateModule}";
    const s = new FlowStore({ acquire: () => true, release: () => {} });
    for (let i = 0; ; i++) {
      s.set({ name: "f" + i, target: "t", dports: String(1 + (i % 65535)) });
      writeFlowStateFile("${d}/flows.json", encodeFlowState(s.flows.snapshot.flows, []));
      if (i === 20) console.log("running");
    }`;
  try {
    for (let round = 0; round < 4; round++) {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["eval", loop],
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const reader = child.stdout.getReader();
      await reader.read(); // "running"
      await new Promise((r) => setTimeout(r, 20 + round * 37));
      child.kill("SIGKILL");
      reader.releaseLock();
      await child.stdout.cancel();
      await child.status;
      const s = store();
      const n = restoreFlowState(s, `${d}/flows.json`, (l) => assert.fail(l));
      assert.ok(n >= 21, `restored ${n}`);
    }
  } finally {
    await Deno.remove(d, { recursive: true });
  }
});

Deno.test("flow-state: flows whose table does not exist are restored pending and saved again", async () => {
  const d = await Deno.makeTempDir({ prefix: "nfqlb-flowstate-" });
  const table = tempShmName("pending");
  const other = tempShmName("there");
  try {
    assert.equal((await runCli("init", `--shm=${other}`, "--M=7", "--N=2")).code, 0);
    const file = `${d}/flows.json`;
    const s0 = store();
    assert.equal(s0.set({ name: "web", target: table, protocols: "tcp", dports: "80" }), "OK");
    assert.equal(s0.set({ name: "dns", target: other, protocols: "udp", dports: "53" }), "OK");
    writeFlowStateFile(file, encodeFlowState(s0.flows.snapshot.flows, []));
    // The daemon's own registry: the table of "web" does not exist (after a reboot).
    const s = new FlowStore(mappableTargets);
    const logs: string[] = [];
    assert.equal(restoreFlowState(s, file, (l) => logs.push(l)), 2);
    assert.deepEqual(s.flows.names(), ["web", "dns"]);
    assert.ok(s.flows.isPending("web") && !s.flows.isPending("dns"));
    assert.deepEqual(logs, [
      `flow-state: flow web: table [${table}]: /dev/shm/${table}: No such file or directory; ` +
      `create it with: nfqlb init --shm=${table} [--M=997 --N=32]; the flow is kept, pending: ` +
      "it matches once the table can be used",
    ]);
    // An unrelated change is saved with the pending flow in it.
    const saver = new FlowStateSaver(file, s, (l) => assert.fail(l));
    s.flows.onChange(() => saver.save());
    assert.equal(s.set({ name: "x", target: other, dports: "99" }), "OK");
    assert.deepEqual(decodeFlowState(readFlowStateFile(file)!).flows.map((f) => f.name), [
      "web",
      "dns",
      "x",
    ]);
  } finally {
    removeShm(table);
    removeShm(other);
    await Deno.remove(d, { recursive: true });
  }
});

Deno.test("flow-state: a failed save turns OK into a FAIL reply; other replies unchanged", async () => {
  const d = await Deno.makeTempDir({ prefix: "nfqlb-flowstate-" });
  try {
    const file = `${d}/sub/flows.json`;
    await Deno.mkdir(`${d}/sub`);
    const s = store();
    const logs: string[] = [];
    const saver = new FlowStateSaver(file, s, (l) => logs.push(l));
    s.flows.onChange(() => saver.save());
    const set = (name: string) =>
      decodeReply(saver.reply(() => textReply(s.set({ name, target: "t" })))).text;
    assert.equal(set("a"), "OK");
    assert.deepEqual(logs, []);
    // The directory is replaced by a file: the save fails, the change is in use.
    await Deno.remove(`${d}/sub`, { recursive: true });
    await Deno.writeTextFile(`${d}/sub`, "not a directory");
    const reply = set("b");
    assert.match(
      reply,
      new RegExp(
        `^FAIL: the change is in use but not saved: flow-state: ${file}: .*Not a directory.*; ` +
          "it is lost when flowlb restarts, unless a later change is saved$",
      ),
    );
    assert.deepEqual(s.flows.names(), ["a", "b"], "the change is applied");
    assert.equal(logs.length, 1);
    assert.match(logs[0], new RegExp(`^flow-state: save to ${file} failed: `));
    // A request that changes nothing keeps its own reply; a failed save is not remembered.
    assert.equal(
      decodeReply(saver.reply(() => textReply(s.set({ name: "c" })))).text,
      "FAIL: Couldn't create load-balancer",
    );
    await Deno.remove(`${d}/sub`);
    await Deno.mkdir(`${d}/sub`);
    assert.equal(set("c"), "OK", "saved again once the directory is back");
    assert.deepEqual(decodeFlowState(readFlowStateFile(file)!).flows.map((f) => f.name), [
      "a",
      "b",
      "c",
    ]);
  } finally {
    await Deno.remove(d, { recursive: true });
  }
});

Deno.test({
  name: "flow-state: a file the daemon's uid may not read: owner, mode and the fix, not errno",
  ignore: !ROOT,
  async fn() {
    const d = await dir(0o755);
    try {
      // Root's file (a run as root), then the daemon started as uid 65534.
      writeFlowStateFile(`${d}/flows.json`, oneFlow("a"));
      const mod = new URL("../../daemon/flow_state_file.ts", import.meta.url).href;
      const code = `const { readFlowStateFile } = await import(${JSON.stringify(mod)});
        try { readFlowStateFile(${JSON.stringify(`${d}/flows.json`)}); console.log("read"); }
        catch (e) { console.log(e.message); }`;
      const r = await new Deno.Command(NOBODY[0], {
        args: [...NOBODY.slice(1), Deno.execPath(), "eval", code],
      }).output();
      assert.equal(
        new TextDecoder().decode(r.stdout),
        `flow-state: ${d}/flows.json: Permission denied: owned by uid 0 (root), mode 0600, and ` +
          `this daemon runs as uid 65534: chown 65534 ${d}/flows.json (or remove it, and the ` +
          "flows it holds)\n",
        new TextDecoder().decode(r.stderr),
      );
    } finally {
      await Deno.remove(d, { recursive: true });
    }
  },
});
