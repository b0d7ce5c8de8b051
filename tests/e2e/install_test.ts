/**
 * `./dev install --prefix=DIR` and `./dev uninstall --prefix=DIR` (scripts/install.ts), as root:
 * install into a temporary prefix (twice: it must be idempotent), then run the command three ways
 * with no `deno` in `PATH` unless said — `DIR/bin/nfqlb`, a symlink to it in another directory,
 * and a symlink straight to the bundle `DIR/lib/nfqlb/nfqlb` (run by its shebang, the issue's
 * `ln -s dist/nfqlb` case) — each for `version`, `init`/`show` on a shm object of its own, and
 * `flowlb` in a network namespace the test creates (its worker modules must be found through the
 * link: `flow-list` answers `[]`). Then uninstall must leave nothing of nfqlb (only the prefix's
 * shared directories), and both commands must refuse, changing nothing, a `bin/nfqlb` no install
 * made. Also: a reinstall removes the files an earlier install had and this one has not; the
 * prefix, `bin`, `lib` of an earlier (relocated) manifest are never removed; `--group` makes the
 * Deno and the launcher root:GROUP 0750, so a user outside the group cannot run them.
 */
import assert from "node:assert/strict";
import { isRoot, type TestNet, withTestNet } from "../../testkit/netns.ts";
import { LineProcess } from "../../testkit/line_process.ts";
import { exec } from "../../cli/exec.ts";
import { removeShm, tempShmName } from "../../testkit/cli.ts";

const ROOT = isRoot();
if (!ROOT) console.warn("install_test: not running as root: test skipped");

const DEV = new URL("../../dev", import.meta.url).pathname;
/** A PATH without the project's deno (nor any other: this machine has none on /usr/bin). */
const BARE_PATH = "/usr/bin:/bin";

/** `./dev <args>`; its exit status and output. */
function dev(...args: string[]) {
  return exec([DEV, ...args]);
}

/** `env -i` with a bare PATH, the trace object of this test run, and `extra`. */
function cleanEnv(path: string, extra: string[] = []): string[] {
  const trace = Deno.env.get("NFQLB_TRACE_SHM") ?? "";
  return ["env", "-i", `PATH=${path}`, `NFQLB_TRACE_SHM=${trace}`, ...extra];
}

/** Every path under `dir`, relative, sorted. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of Deno.readDirSync(rel === "" ? dir : `${dir}/${rel}`)) {
      const p = rel === "" ? e.name : `${rel}/${e.name}`;
      out.push(p);
      if (e.isDirectory) walk(p);
    }
  };
  walk("");
  return out.sort();
}

/** `flowlb` through `command` in `ns`: it starts, answers `flow-list` through it, stops. */
async function flowlbThrough(net: TestNet, ns: string, command: string, path: string) {
  const ftshm = tempShmName("inst-ft");
  const env = cleanEnv(path, [`NFQLB_FLOW_ADDRESS=unix:${ftshm}`]);
  const p = new LineProcess(
    net,
    ns,
    [...env, command, "flowlb", "--queue=0", `--ft_shm=${ftshm}`],
    `flowlb via ${command}`,
  );
  try {
    await p.waitLine(/^queue_length=/);
    const list = await net.exec(ns, [...env, command, "flow-list"]);
    assert.equal(list.stdout, "[]\n", `flow-list via ${command}: ${list.stderr}`);
    Deno.kill(p.pid, "SIGTERM");
    const end = await p.finish();
    assert.equal(end.code, 0, `flowlb via ${command}: ${end.stderr}`);
    assert.doesNotMatch(end.stderr, /Uncaught|Module not found/);
  } finally {
    try {
      Deno.kill(p.pid, "SIGKILL");
    } catch {
      // stopped
    }
    removeShm(ftshm);
  }
}

Deno.test({
  name:
    "./dev install: nfqlb runs through its link and further links, flowlb too; uninstall (root)",
  ignore: !ROOT,
  async fn() {
    const tmp = Deno.makeTempDirSync({ prefix: "nfqlb-install-test-" });
    const prefix = `${tmp}/prefix`;
    const shm = tempShmName("inst");
    try {
      const first = await dev("install", `--prefix=${prefix}`);
      assert.equal(first.code, 0, first.stderr);
      assert.match(first.stdout, /^install: .*\/bin\/nfqlb runs \(nfqlb version: 1\.2\.0\)$/m);
      const manifest = Deno.readTextFileSync(`${prefix}/lib/nfqlb/MANIFEST`);
      const again = await dev("install", `--prefix=${prefix}`);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(Deno.readTextFileSync(`${prefix}/lib/nfqlb/MANIFEST`), manifest, "idempotent");

      Deno.mkdirSync(`${tmp}/elsewhere`);
      const viaLink = `${tmp}/elsewhere/nfqlb`;
      Deno.symlinkSync(`${prefix}/bin/nfqlb`, viaLink);
      const bundleLink = `${tmp}/elsewhere/nfqlb-bundle`;
      Deno.symlinkSync(`${prefix}/lib/nfqlb/nfqlb`, bundleLink);
      // The bundle's shebang looks deno up in PATH: the installed one.
      const ways: [string, string][] = [
        [`${prefix}/bin/nfqlb`, BARE_PATH],
        [viaLink, BARE_PATH],
        [bundleLink, `${prefix}/lib/nfqlb:${BARE_PATH}`],
      ];
      for (const [command, path] of ways) {
        const v = await exec([...cleanEnv(path), command, "version"]);
        assert.deepEqual([v.code, v.stdout], [0, "1.2.0\n"], `${command} version: ${v.stderr}`);
        const init = await exec([
          ...cleanEnv(path),
          command,
          "init",
          `--shm=${shm}`,
          "--M=7",
          "--N=2",
        ]);
        assert.equal(init.code, 0, `${command} init: ${init.stderr}`);
        const show = await exec([...cleanEnv(path), command, "show", `--shm=${shm}`]);
        assert.equal(show.code, 0, `${command} show: ${show.stderr}`);
        assert.match(show.stdout, /^ {2}Maglev: M=7, N=/m, `${command} show`);
        removeShm(shm);
      }
      await withTestNet(async (net) => {
        const ns = await net.addNs("inst");
        for (const [command, path] of ways) await flowlbThrough(net, ns, command, path);
      });

      const un = await dev("uninstall", `--prefix=${prefix}`);
      assert.equal(un.code, 0, un.stderr);
      assert.match(un.stdout, /^uninstall: removed .*\/lib\/nfqlb\/deno$/m);
      // nfqlb's own directories go; the prefix's shared ones (made by the install here) stay.
      assert.deepEqual(tree(tmp), [
        "elsewhere",
        "elsewhere/nfqlb",
        "elsewhere/nfqlb-bundle",
        "prefix",
        "prefix/bin",
        "prefix/lib",
        "prefix/share",
        "prefix/share/doc",
      ]);

      // Something no install made: both refuse and leave it.
      Deno.mkdirSync(`${prefix}/bin`, { recursive: true });
      Deno.writeTextFileSync(`${prefix}/bin/nfqlb`, "#!/bin/sh\necho mine\n");
      const refused = await dev("install", `--prefix=${prefix}`);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /bin\/nfqlb exists and no earlier \.\/dev install made it/);
      const notOurs = await dev("uninstall", `--prefix=${prefix}`);
      assert.equal(notOurs.code, 1);
      assert.match(notOurs.stderr, /not installed by \.\/dev install; nothing removed/);
      assert.deepEqual(tree(prefix), ["bin", "bin/nfqlb", "lib", "share", "share/doc"]);
      assert.equal(Deno.readTextFileSync(`${prefix}/bin/nfqlb`), "#!/bin/sh\necho mine\n");
    } finally {
      removeShm(shm);
      Deno.removeSync(tmp, { recursive: true });
    }
  },
});

Deno.test({
  name: "./dev install: an earlier install's files it no longer has are removed; " +
    "a relocated manifest's shared dirs are never removed (root)",
  ignore: !ROOT,
  async fn() {
    const tmp = Deno.makeTempDirSync({ prefix: "nfqlb-install-test-" });
    const prefix = `${tmp}/usr`;
    try {
      const first = await dev("install", `--prefix=${prefix}`);
      assert.equal(first.code, 0, first.stderr);
      const manifestPath = `${prefix}/lib/nfqlb/MANIFEST`;
      const manifest = Deno.readTextFileSync(manifestPath);
      assert.doesNotMatch(manifest, /^dir (\.|bin|lib|share|share\/doc)$/m, "shared dirs recorded");
      // An earlier version's install, relocated: a file the new one no longer has, and the
      // shared directories (the prefix, bin, lib) recorded as made by it.
      Deno.writeTextFileSync(`${prefix}/lib/nfqlb/old_worker.ts`, "// 1.0\n");
      Deno.writeTextFileSync(
        manifestPath,
        `dir .\ndir bin\ndir lib\n${manifest}file lib/nfqlb/old_worker.ts\n`,
      );
      const again = await dev("install", `--prefix=${prefix}`);
      assert.equal(again.code, 0, again.stderr);
      assert.match(
        again.stdout,
        /^install: removed .*\/lib\/nfqlb\/old_worker\.ts \(no longer installed\)$/m,
      );
      assert.equal(Deno.readTextFileSync(manifestPath), manifest, "the new install's list only");
      assert.ok(!tree(prefix).includes("lib/nfqlb/old_worker.ts"), "orphan left");
      assert.deepEqual(tree(prefix).filter((p) => p.includes(".new-")), [], "temporary files");

      // The same earlier manifest at uninstall: the shared directories stay, even when empty.
      Deno.writeTextFileSync(manifestPath, `dir .\ndir bin\ndir lib\n${manifest}`);
      const un = await dev("uninstall", `--prefix=${prefix}`);
      assert.equal(un.code, 0, un.stderr);
      assert.match(un.stdout, /^uninstall: kept .*\/usr\/bin: not nfqlb's own directory$/m);
      assert.deepEqual(tree(tmp), ["usr", "usr/bin", "usr/lib", "usr/share", "usr/share/doc"]);
    } finally {
      Deno.removeSync(tmp, { recursive: true });
    }
  },
});

Deno.test({
  name: "./dev install --group: the Deno and the launcher are root:GROUP 0750; " +
    "only the group runs nfqlb; a plain reinstall makes them 0755 again (root)",
  ignore: !ROOT,
  async fn() {
    const tmp = Deno.makeTempDirSync({ prefix: "nfqlb-install-test-" });
    Deno.chmodSync(tmp, 0o755); // others must reach the files to be refused by their modes
    const prefix = `${tmp}/usr`;
    const command = `${prefix}/bin/nfqlb`;
    /** `nfqlb version` as uid 65534, with supplementary `groups` (numbers). */
    const asNobody = (groups: string) =>
      exec([
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        groups === "" ? "--clear-groups" : `--groups=${groups}`,
        ...cleanEnv(BARE_PATH),
        command,
        "version",
      ]);
    try {
      const bad = await dev("install", `--prefix=${prefix}`, "--group=nfqlb-no-such-group");
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /--group=nfqlb-no-such-group: no such group/);
      assert.equal(lstatOrUndefined(`${prefix}/lib/nfqlb`), undefined, "nothing installed");

      const r = await dev("install", `--prefix=${prefix}`, "--group=daemon");
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /lib\/nfqlb\/deno \(root:daemon 0750: only root and daemon/);
      for (const f of ["lib/nfqlb/deno", "lib/nfqlb/nfqlb.sh"]) {
        const st = Deno.statSync(`${prefix}/${f}`);
        assert.deepEqual([st.uid, st.gid, st.mode! & 0o7777], [0, 1, 0o750], f);
      }
      const outsider = await asNobody("");
      assert.notEqual(outsider.code, 0, "a user outside the group ran nfqlb");
      assert.match(outsider.stderr, /Permission denied/);
      const member = await asNobody("1");
      assert.deepEqual([member.code, member.stdout], [0, "1.2.0\n"], member.stderr);

      const plain = await dev("install", `--prefix=${prefix}`);
      assert.equal(plain.code, 0, plain.stderr);
      const st = Deno.statSync(`${prefix}/lib/nfqlb/deno`);
      assert.deepEqual([st.gid, st.mode! & 0o7777], [0, 0o755]);
      assert.equal((await asNobody("")).code, 0);
    } finally {
      Deno.removeSync(tmp, { recursive: true });
    }
  },
});

function lstatOrUndefined(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.lstatSync(path);
  } catch {
    return undefined;
  }
}
