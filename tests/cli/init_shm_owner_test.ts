/**
 * Shared-memory ownership (docs/COMPATIBILITY.md#shared-memory): `init` does not adopt an object
 * another user planted (uid 65534, mode 0666) or one that group/others may write, and changes
 * nothing then; a fresh `init` creates the object without group/other write; the daemons warn
 * at start about a table others may write.
 */
import assert from "node:assert/strict";
import { removeShm, runCli, tempShmName } from "../../testkit/cli.ts";
import { isRoot } from "../../testkit/netns.ts";

const ROOT = isRoot();
const NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
const CLI = new URL("../../cli.ts", import.meta.url).pathname;

/** Create /dev/shm/`name` with `bytes` and mode 0666, as uid 65534 when `nobody`. */
async function plant(name: string, bytes: string, nobody: boolean): Promise<void> {
  const argv = [
    ...(nobody ? NOBODY : []),
    "sh",
    "-c",
    `umask 0; printf '%s' "$1" > /dev/shm/${name}`,
    "sh",
    bytes,
  ];
  const r = await new Deno.Command(argv[0], { args: argv.slice(1) }).output();
  assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
}

Deno.test({
  name: "init refuses an object planted by uid 65534 (0666) or writable by others; untouched",
  ignore: !ROOT,
  async fn() {
    for (const nobody of [true, false]) {
      const name = tempShmName("owner");
      try {
        await plant(name, "planted", nobody);
        const before = Deno.statSync(`/dev/shm/${name}`);
        const r = await runCli("init", `--shm=${name}`, "--M=997", "--N=10");
        const problem = nobody
          ? "owned by uid 65534, expected root or uid 0"
          : "writable by group or others (mode 0666)";
        assert.deepEqual(r, {
          code: 1,
          out: "",
          err: `createSharedData: ${name}: ${problem}; not changed\n`,
        });
        const after = Deno.statSync(`/dev/shm/${name}`);
        assert.equal(Deno.readTextFileSync(`/dev/shm/${name}`), "planted");
        assert.deepEqual([after.ino, after.mode, after.uid], [before.ino, before.mode, before.uid]);
      } finally {
        removeShm(name);
      }
    }
  },
});

Deno.test("init creates a new object without group/other write; re-init of its own object works", async () => {
  const name = tempShmName("owner");
  try {
    assert.equal((await runCli("init", `--shm=${name}`, "--M=997", "--N=10")).code, 0);
    const st = Deno.statSync(`/dev/shm/${name}`);
    assert.equal(st.mode! & 0o022, 0, `mode ${(st.mode! & 0o777).toString(8)}`);
    assert.equal(st.mode! & 0o777, 0o600);
    assert.equal((await runCli("init", `--shm=${name}`, "--M=997", "--N=20")).code, 0);
  } finally {
    removeShm(name);
  }
});

Deno.test({
  name: "lb warns once at start about a table others may write",
  ignore: !ROOT,
  async fn() {
    const name = tempShmName("owner");
    try {
      assert.equal((await runCli("init", `--shm=${name}`, "--M=997", "--N=10")).code, 0);
      Deno.chmodSync(`/dev/shm/${name}`, 0o666);
      // Fails after the table check (the fragment object cannot be created): no queue needed.
      const r = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", CLI, "lb", `--tshm=${name}`, "--ft_shm=a/b"],
      }).output();
      const err = new TextDecoder().decode(r.stderr);
      assert.equal(r.code, 1, err);
      const warnings = err.split("\n").filter((l) => l.startsWith("WARNING: table"));
      assert.deepEqual(warnings, [
        `WARNING: table ${name} is writable by group or others (mode 0666): ` +
        "they can steer or stop the traffic",
      ]);
    } finally {
      removeShm(name);
    }
  },
});
