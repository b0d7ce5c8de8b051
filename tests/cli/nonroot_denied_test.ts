/**
 * A non-root nfqlb denied a shared-memory object says which object, its owner and mode, and the
 * fix, after 1.2.0's first line (docs/COMPATIBILITY.md D63): `createSharedData: Permission denied`
 * for a root-owned `nfqlb-trace` object (`loglevel`) and `ftshm` object (`lb --ft_shm`), and
 * `FAILED mapSharedData: <t>` for a table root owns that `lb` running as uid 65534 must use.
 * Each object has a name of its own, created and removed here.
 */
import assert from "node:assert/strict";
import { removeShm, runCli, tempShmName } from "../../testkit/cli.ts";
import { isRoot } from "../../testkit/netns.ts";

const ROOT = isRoot();
const UID = 65534;
const CLI = new URL("../../cli.ts", import.meta.url).pathname;

/** Run `nfqlb <args>` as uid 65534 (CAP_NET_ADMIN only) in a new network namespace. */
async function asNobody(
  home: string,
  traceShm: string,
  ...args: string[]
): Promise<{ code: number; err: string }> {
  const r = await new Deno.Command("unshare", {
    args: [
      "-n",
      "setpriv",
      `--reuid=${UID}`,
      `--regid=${UID}`,
      "--clear-groups",
      "--inh-caps=+net_admin",
      "--ambient-caps=+net_admin",
      "env",
      `HOME=${home}`,
      `DENO_DIR=${home}`,
      `NFQLB_TRACE_SHM=${traceShm}`,
      Deno.execPath(),
      "run",
      "-A",
      CLI,
      ...args,
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  return { code: r.code, err: new TextDecoder().decode(r.stderr) };
}

/** A root-owned object of mode 0600 in /dev/shm. */
function rootObject(name: string): void {
  Deno.writeFileSync(`/dev/shm/${name}`, new Uint8Array(64), { mode: 0o600 });
  Deno.chmodSync(`/dev/shm/${name}`, 0o600);
}

Deno.test({
  name: "non-root: a root-owned trace object, ftshm object or table: owner, mode and fix (root)",
  ignore: !ROOT,
  async fn(t) {
    const home = Deno.makeTempDirSync({ prefix: "nfqlb-denied-" });
    Deno.chownSync(home, UID, UID);
    const tag = `${Deno.pid}-${crypto.getRandomValues(new Uint32Array(1))[0].toString(36)}`;
    const rootTrace = `nfqlb-trace.denied-${tag}`;
    const ownTrace = `nfqlb-trace.own-${tag}`;
    const rootTable = tempShmName("denied-t");
    const ownTable = tempShmName("own-t");
    const rootFt = tempShmName("denied-ft");
    try {
      rootObject(rootTrace);
      await t.step("loglevel: createSharedData: Permission denied, then the fix", async () => {
        const r = await asNobody(home, rootTrace, "loglevel", "7");
        assert.equal(r.code, 1, r.err);
        assert.equal(
          r.err,
          "createSharedData: Permission denied\n" +
            `  /dev/shm/${rootTrace}: owned by uid 0 (root), mode 0600: uid ${UID} may not open ` +
            `it; when no nfqlb uses it any more, remove it as root (rm /dev/shm/${rootTrace}), or ` +
            "give this daemon its own with " +
            "NFQLB_TRACE_SHM=nfqlb-trace.<suffix> (set the same for its commands)\n",
        );
      });

      assert.equal((await runCli("init", `--shm=${rootTable}`, "--M=997", "--N=4")).code, 0);
      Deno.chmodSync(`/dev/shm/${rootTable}`, 0o600);
      await t.step("lb denied its table: the table must belong to the daemon's uid", async () => {
        const r = await asNobody(home, ownTrace, "lb", `--tshm=${rootTable}`, "--queue=3");
        assert.equal(r.code, 1, r.err);
        assert.equal(
          r.err,
          `FAILED mapSharedData: ${rootTable}\n` +
            `  /dev/shm/${rootTable}: Permission denied; owned by uid 0 (root), mode 0600: the ` +
            `table must belong to the daemon's uid ${UID}: create it with nfqlb init run as uid ` +
            `${UID} (setpriv --reuid=${UID} nfqlb init --shm=${rootTable} ...), or chown ${UID} ` +
            `/dev/shm/${rootTable}\n`,
        );
      });

      const init = await asNobody(home, ownTrace, "init", `--shm=${ownTable}`, "--M=997", "--N=4");
      assert.equal(init.code, 0, init.err);
      rootObject(rootFt);
      await t.step("lb: a root-owned --ft_shm object: createSharedData, then the fix", async () => {
        const r = await asNobody(
          home,
          ownTrace,
          "lb",
          `--tshm=${ownTable}`,
          "--queue=3",
          `--ft_shm=${rootFt}`,
        );
        assert.equal(r.code, 1, r.err);
        const lines = r.err.trimEnd().split("\n");
        const at = lines.indexOf("createSharedData: Permission denied");
        assert.ok(at >= 0, r.err);
        assert.equal(
          lines[at + 1],
          `  /dev/shm/${rootFt}: owned by uid 0 (root), mode 0600: uid ${UID} may not open it; ` +
            `when no nfqlb uses it any more, remove it as root (rm /dev/shm/${rootFt}), or give ` +
            "this daemon its own with " +
            "--ft_shm=NAME (and nfqlb stats --ft_shm=NAME)",
        );
      });
    } finally {
      for (const n of [rootTrace, ownTrace, rootTable, ownTable, rootFt]) removeShm(n);
      Deno.removeSync(home, { recursive: true });
    }
  },
});
