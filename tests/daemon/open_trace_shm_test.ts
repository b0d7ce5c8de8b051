/**
 * `nfqlb-trace` when another user could have planted it (daemon/open_trace_shm.ts,
 * docs/COMPATIBILITY.md#shared-memory): an object of uid 65534, or one group or others may write,
 * is refused with the reason and the fix and left as it was; a missing one is created
 * exclusively with mode 0600; one of root or this uid is used as it is. The objects have names of
 * their own (`openTraceShm(name)`), and the command-line check runs `nfqlb loglevel` with a
 * private /dev/shm, so the host's `nfqlb-trace` is never touched.
 */
import assert from "node:assert/strict";
import { openTraceShm, traceShmName } from "../../daemon/open_trace_shm.ts";
import { ShmUntrustedError } from "../../daemon/errors.ts";
import { removeShm, tempShmName } from "../../testkit/cli.ts";
import { isRoot } from "../../testkit/netns.ts";

const ROOT = isRoot();
const CLI = new URL("../../cli.ts", import.meta.url).pathname;

/** Create /dev/shm/`name` with `bytes`, owner `uid`, mode `mode`. */
function plant(name: string, bytes: Uint8Array, uid: number, mode: number): void {
  const path = `/dev/shm/${name}`;
  Deno.writeFileSync(path, bytes, { createNew: true });
  Deno.chownSync(path, uid, uid);
  Deno.chmodSync(path, mode);
}

/** Log level 7, trace mask 0xffffffff: what a planter would set. */
const PLANTED = new Uint8Array([7, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);

Deno.test({
  name: "nfqlb-trace: planted by uid 65534 or writable by others is refused, untouched",
  ignore: !ROOT,
  fn() {
    for (
      const [uid, mode, problem] of [
        [65534, 0o644, "owned by uid 65534, expected root or uid 0"],
        [65534, 0o600, "owned by uid 65534, expected root or uid 0"],
        [0, 0o666, "writable by group or others (mode 0666)"],
        [0, 0o620, "writable by group or others (mode 0620)"],
      ] as const
    ) {
      const name = tempShmName("trace");
      try {
        plant(name, PLANTED, uid, mode);
        const before = Deno.statSync(`/dev/shm/${name}`);
        assert.throws(() => openTraceShm(name), (e: unknown) => {
          assert.ok(e instanceof ShmUntrustedError, String(e));
          assert.equal(
            e.message,
            `${name}: refusing /dev/shm/${name}: ${problem} (another user could change or ` +
              `truncate it); remove it (rm /dev/shm/${name}) and try again`,
          );
          return true;
        });
        const after = Deno.statSync(`/dev/shm/${name}`);
        assert.deepEqual([after.ino, after.uid, after.mode], [before.ino, before.uid, before.mode]);
        assert.deepEqual(Deno.readFileSync(`/dev/shm/${name}`), PLANTED);
      } finally {
        removeShm(name);
      }
    }
  },
});

Deno.test("nfqlb-trace: created exclusively with mode 0600 and defaults; an own one used as it is", () => {
  const name = tempShmName("trace");
  try {
    const m = openTraceShm(name);
    assert.deepEqual([...m.words], [5, 0], "log level notice, no trace");
    m.words[0] = 7;
    m.close();
    const st = Deno.statSync(`/dev/shm/${name}`);
    assert.deepEqual([st.uid, st.mode! & 0o7777], [Deno.uid(), 0o600]);
    const again = openTraceShm(name);
    assert.deepEqual([...again.words], [7, 0], "the existing object, as it was");
    again.close();
    assert.equal(Deno.statSync(`/dev/shm/${name}`).ino, st.ino);
  } finally {
    removeShm(name);
  }
});

Deno.test({
  name: "nfqlb loglevel refuses a planted nfqlb-trace (private /dev/shm)",
  ignore: !ROOT,
  async fn() {
    const name = traceShmName(); // nfqlb-trace, unless the suite runs with its own
    const path = `/dev/shm/${name}`;
    const script = "mount -t tmpfs -o mode=1777 tmpfs /dev/shm && " +
      `printf 'xxxxxxxx' > ${path} && chown 65534:65534 ${path} && chmod 0644 ${path} && ` +
      `"$0" run -A "$1" loglevel 7; echo "exit=$?"; cat ${path}`;
    const r = await new Deno.Command("unshare", {
      args: ["-m", "sh", "-c", script, Deno.execPath(), CLI],
    }).output();
    const out = new TextDecoder().decode(r.stdout);
    const err = new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 0, err);
    assert.equal(out, "exit=1\nxxxxxxxx", "loglevel failed; the object is unchanged");
    assert.equal(
      err,
      `${name}: refusing ${path}: owned by uid 65534, expected root or uid 0 (another user ` +
        `could change or truncate it); remove it (rm ${path}) and try again\n`,
    );
  },
});

/**
 * `nfqlb lb` on a new table with statistics object `ft` (and `NFQLB_TRACE_SHM=trace` if given), in
 * a network namespace of its own (unshare -n: the queue it would bind is nobody's); killed after a
 * deadline, since a daemon that started would run on. Returns its exit code and stderr.
 */
async function lbOver(ft: string, trace?: string): Promise<{ code: number; err: string }> {
  const table = tempShmName("t");
  try {
    const init = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", CLI, "init", `--shm=${table}`, "--M=97", "--N=4"],
    }).output();
    assert.equal(init.code, 0);
    const lb = ["lb", "--queue=3", `--tshm=${table}`, `--ft_shm=${ft}`];
    const r = await new Deno.Command("unshare", {
      args: ["-n", Deno.execPath(), "run", "-A", CLI, ...lb],
      env: trace === undefined ? {} : { NFQLB_TRACE_SHM: trace },
      signal: AbortSignal.timeout(20_000),
    }).output();
    return { code: r.code, err: new TextDecoder().decode(r.stderr) };
  } finally {
    removeShm(table);
  }
}

Deno.test({
  name: "lb over a planted trace object: one line with the reason, exit 1, nothing shared touched",
  ignore: !ROOT,
  async fn() {
    const trace = `nfqlb-trace.${tempShmName("planted")}`;
    const ft = tempShmName("ft");
    plant(trace, PLANTED, 65534, 0o644);
    try {
      const { code, err } = await lbOver(ft, trace);
      assert.equal(code, 1, err);
      assert.equal(
        err,
        `${trace}: refusing /dev/shm/${trace}: owned by uid 65534, expected root or uid 0 ` +
          `(another user could change or truncate it); remove it (rm /dev/shm/${trace}) and ` +
          `try again\n`,
      );
      assert.deepEqual(Deno.readFileSync(`/dev/shm/${trace}`), PLANTED, "left as it was");
      assert.throws(() => Deno.statSync(`/dev/shm/${ft}`), Deno.errors.NotFound, "no ftshm made");
    } finally {
      for (const n of [trace, ft]) removeShm(n);
    }
  },
});

Deno.test({
  name: "lb over a planted ftshm: refused with the reason, exit 1, the object untouched",
  ignore: !ROOT,
  async fn() {
    const ft = tempShmName("ft");
    const planted = new Uint8Array(72).fill(0x5a);
    plant(ft, planted, 65534, 0o666);
    try {
      const { code, err } = await lbOver(ft);
      assert.equal(code, 1, err);
      assert.match(err, new RegExp(`^${ft}: refusing /dev/shm/${ft}: owned by uid 65534, `));
      assert.deepEqual(Deno.readFileSync(`/dev/shm/${ft}`), planted, "left as it was");
    } finally {
      removeShm(ft);
    }
  },
});
