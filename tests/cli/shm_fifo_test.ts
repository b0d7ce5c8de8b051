/**
 * A FIFO another user makes in `/dev/shm` (mode 1777) under a name nfqlb opens — a fast-path
 * status object, a table, the statistics object — must never make a command wait for a writer:
 * objects are opened `O_NONBLOCK` and only regular files are used (ffi/shm.ts). Each command
 * runs in its own process with a deadline far above its normal run time; a hang is a failure.
 */
import assert from "node:assert/strict";
import { removeShm, tempShmName } from "../../testkit/cli.ts";
import { isRoot } from "../../testkit/netns.ts";
import { STATUS_PREFIX } from "../../lib/fastpath/status.ts";

const ROOT = isRoot();
const CLI = new URL("../../cli.ts", import.meta.url).pathname;
/** Far above a command's run time (~0.1 s); a command blocked in open() never returns. */
const DEADLINE_MS = 30_000;

/** Make /dev/shm/`name` a FIFO of uid 65534. */
async function plantFifo(name: string): Promise<void> {
  const r = await new Deno.Command("setpriv", {
    args: ["--reuid=65534", "--regid=65534", "--clear-groups", "mkfifo", `/dev/shm/${name}`],
  }).output();
  assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
}

async function nfqlb(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    signal: AbortSignal.timeout(DEADLINE_MS),
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: r.code, out: text(r.stdout), err: text(r.stderr) };
}

Deno.test({
  name: "a FIFO planted as a status object, a table or ftshm makes no command hang",
  ignore: !ROOT,
  async fn() {
    const table = tempShmName("t");
    const fifoTable = tempShmName("fifot");
    const fifoFt = tempShmName("fifoft");
    const ns = /\[(\d+)\]/.exec(Deno.readLinkSync("/proc/self/ns/net"))![1];
    const status = `${STATUS_PREFIX}${ns}.fifo${Deno.pid}`;
    try {
      for (const n of [fifoTable, fifoFt, status]) await plantFifo(n);
      assert.equal((await nfqlb("init", `--shm=${table}`, "--M=97", "--N=4")).code, 0);
      // The table commands' wait and stats look at every status object.
      const act = await nfqlb("activate", `--shm=${table}`, "101");
      assert.equal(act.code, 0, act.err);
      const show = await nfqlb("show", `--shm=${fifoTable}`);
      assert.notEqual(show.code, 0, "a FIFO is no table");
      assert.match(show.err, /FAILED mapSharedData/);
      const stats = await nfqlb("stats", `--ft_shm=${fifoFt}`);
      assert.notEqual(stats.code, 0, "a FIFO is no statistics object");
      const init = await nfqlb("init", `--shm=${fifoTable}`, "--M=97", "--N=4");
      assert.notEqual(init.code, 0, "init does not take over a FIFO");
      assert.match(init.err, /not a regular file/);
    } finally {
      for (const n of [table, fifoTable, fifoFt, status]) removeShm(n);
    }
  },
});
