/**
 * `--flow-state` after a reboot (docs/COMPATIBILITY.md#differences D58, D29), as root, in private
 * network namespaces `cl` -> veth -> `lb`: flowlb starts with a state file whose flow `later`
 * points at a table that does not exist (an empty `/dev/shm`). The flow is kept: `flow-list`
 * shows it with `"pending": true`, stderr and `nfqlb_flows_pending` say so, and its UDP packets
 * (queued in mangle PREROUTING) match no flow and are dropped. An unrelated `flow-set` does not
 * drop it from the file. A table of that name that another user creates is not used. Once
 * `nfqlb init` creates the table (and `activate` fills it) the flow
 * is no longer pending and its packets are accepted with the target's fwmark (counted by a mangle
 * INPUT rule). A second test replaces the state file's directory by a file under a running
 * flowlb: the next `flow-set` exits non-zero with a message saying the change is in use but not
 * saved, and the change is in use.
 */
import assert from "node:assert/strict";
import { removeShm, tempShmName } from "../../testkit/cli.ts";
import { cli, Daemon, FLOW_ENV, httpGet, markedUdpNet } from "../../testkit/e2e_service.ts";
import { writeFlowStateFile } from "../../daemon/flow_state_file.ts";
import { decodeFlowState, encodeFlowState } from "../../lib/flow/state_file.ts";
import { FlowStore } from "../../lib/flow/store.ts";
import type { LineProcess } from "../../testkit/line_process.ts";
import { type CommandResult, isRoot, type TestNet, withTestNet } from "../../testkit/netns.ts";

const ROOT = isRoot();
const DENO = Deno.execPath();
const CLI = new URL("../../cli.ts", import.meta.url).pathname;
const LB4 = "10.217.0.1";
const CL4 = "10.217.0.2";
const PORT = 5217;
const Q = 17;
const MARK = 117;
const METRICS = "127.0.0.1:9917";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll `f` until it returns true, at most `ms`; returns its last answer. */
async function until(f: () => Promise<boolean>, ms = 10_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await f()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
}

/** `nfqlb_flows_pending` from the metrics server inside `ns`. */
async function pendingGauge(net: TestNet, ns: string): Promise<number> {
  const [, text] = await httpGet(net, ns, METRICS, "/metrics");
  const m = /^nfqlb_flows_pending (\d+)$/m.exec(text);
  assert.ok(m !== null, `no nfqlb_flows_pending in:\n${text}`);
  return Number(m[1]);
}

/** `nfqlb <args>` as a process in namespace `ns` (the flow socket is there). */
function nfqlbIn(net: TestNet, ns: string) {
  return (...args: string[]): Promise<CommandResult> =>
    net.exec(ns, [...FLOW_ENV, DENO, "run", "--allow-all", CLI, ...args]);
}

/** `nfqlb flowlb <args>` in namespace `ns`, once its queue is bound. */
async function startFlowlb(net: TestNet, ns: string, args: string[]): Promise<LineProcess> {
  const d = new Daemon(net, ns, "flowlb", [`--queue=${Q}`, ...args]);
  await d.waitLine(/^queue_length=\d+/);
  return d;
}

/** SIGTERM `d` (if still running) and wait; it must exit 0. Returns its stderr. */
async function stopFlowlb(d: LineProcess): Promise<string> {
  try {
    Deno.kill(d.pid, "SIGTERM");
  } catch { /* already gone: the status says why */ }
  const end = await d.finish();
  assert.equal(end.code, 0, `flowlb exit ${end.code}: ${end.stderr}`);
  return end.stderr;
}

Deno.test({
  name: "flowlb --flow-state: a flow whose table is missing is kept pending, saved, and " +
    "matches once the table exists (needs root)",
  ignore: !ROOT,
  async fn() {
    const table = tempShmName("pending-t");
    const other = tempShmName("pending-o");
    const ftshm = tempShmName("pending-ft");
    const dir = await Deno.makeTempDir({ prefix: "nfqlb-pending-" });
    const file = `${dir}/flows.json`;
    try {
      // The state file of a flowlb before the reboot: `later` on `table`, which is gone now.
      const before = new FlowStore({ acquire: () => true, release: () => {} });
      const later = { name: "later", target: table, protocols: "udp", dports: `${PORT}` };
      assert.equal(before.set(later), "OK");
      writeFlowStateFile(file, encodeFlowState(before.flows.snapshot.flows, []));
      const saved = () => decodeFlowState(Deno.readTextFileSync(file)).flows.map((f) => f.name);

      await withTestNet(async (net) => {
        const u = await markedUdpNet(net, { lb4: LB4, cl4: CL4, port: PORT, queue: Q, mark: MARK });
        const { lb, send } = u;
        const nfqlb = nfqlbIn(net, lb);
        const flowList = async () => {
          const r = await nfqlb("flow-list");
          assert.equal(r.code, 0, r.stderr);
          return JSON.parse(r.stdout) as { name: string; pending?: boolean }[];
        };

        const daemon = await startFlowlb(net, lb, [
          `--ft_shm=${ftshm}`,
          `--flow-state=${file}`,
          `--metrics=${METRICS}`,
        ]);
        let err: string;
        try {
          // Kept, listed pending (the JSON of 1.2.0 plus "pending": true), counted as pending.
          const listed = await flowList();
          assert.deepEqual(listed.map((f) => [f.name, f.pending]), [["later", true]]);
          assert.equal(await pendingGauge(net, lb), 1);

          // Its packets match no flow: dropped (default --nolb_fwmark=-1).
          await send(10);
          await sleep(500);
          assert.equal(await u.counter("all"), 0, "no packet of a pending flow passed");

          // An unrelated change is saved with the pending flow in the file.
          await cli("init", `--shm=${other}`, "--M=997", "--N=4");
          const r = await nfqlb(
            "flow-set",
            "--name=other",
            `--target=${other}`,
            "--protocols=tcp",
            "--dports=1",
          );
          assert.equal(r.stdout, "OK\n", r.stderr);
          assert.deepEqual(saved(), ["later", "other"]);

          // Another user creates the table first, with fwmarks of their choosing: not used.
          await cli("init", `--shm=${table}`, "--M=997", "--N=4");
          await cli("activate", `--shm=${table}`, `${MARK + 1}`);
          Deno.chownSync(`/dev/shm/${table}`, 65534, 65534);
          await sleep(1500); // three probes (every 500 ms)
          assert.deepEqual((await flowList()).map((f) => f.pending), [true, undefined]);
          removeShm(table);

          // The table appears: the flow stops being pending and its packets get the mark.
          await cli("init", `--shm=${table}`, "--M=997", "--N=4");
          await cli("activate", `--shm=${table}`, `${MARK}`);
          assert.ok(
            await until(async () => (await flowList()).every((f) => f.pending === undefined)),
            "the flow is no longer pending",
          );
          assert.equal(await pendingGauge(net, lb), 0);
          await send(20);
          assert.ok(
            await until(async () => (await u.counter("marked")) >= 20),
            "the flow's packets are accepted with the target's fwmark",
          );
          assert.equal(await u.counter("marked"), 20);
          assert.equal(await u.counter("all"), 20);
          assert.deepEqual(saved(), ["later", "other"]);
        } finally {
          err = await stopFlowlb(daemon);
        }
        assert.match(
          err,
          new RegExp(
            // Why, and the fix: after a reboot the table is not created yet.
            `^warning: flowlb: flow-state: flow later: table \\[${table}\\]: /dev/shm/${table}: ` +
              `No such file or directory; create it with: nfqlb init --shm=${table} `,
            "m",
          ),
        );
        assert.match(
          err,
          new RegExp(`^notice: flowlb: restored 1 flows from ${file} \\(1 pending: `, "m"),
        );
        assert.match(
          err,
          new RegExp(`^notice: flowlb: flow later: table ${table} is mapped now; `, "m"),
        );
        assert.match(
          err,
          new RegExp(
            `flowlb: table ${table} of a pending flow is not used: untrusted: owned by uid 65534`,
            "m",
          ),
        );
      });
    } finally {
      for (const n of [table, other, ftshm]) removeShm(n);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "flowlb --flow-state: a failed save makes the client's flow-set exit non-zero, " +
    "saying the change is in use but not saved (needs root)",
  ignore: !ROOT,
  async fn() {
    const table = tempShmName("unsaved-t");
    const ftshm = tempShmName("unsaved-ft");
    const dir = await Deno.makeTempDir({ prefix: "nfqlb-unsaved-" });
    const file = `${dir}/flows.json`;
    const flowArgs = (name: string, port: number) => [
      "flow-set",
      `--name=${name}`,
      `--target=${table}`,
      "--protocols=tcp",
      `--dports=${port}`,
    ];
    try {
      await cli("init", `--shm=${table}`, "--M=997", "--N=4");
      await withTestNet(async (net) => {
        const lb = await net.addNs("lb");
        const nfqlb = nfqlbIn(net, lb);
        const daemon = await startFlowlb(net, lb, [`--ft_shm=${ftshm}`, `--flow-state=${file}`]);
        let err: string;
        try {
          const a = await nfqlb(...flowArgs("a", 1));
          assert.equal(a.stdout, "OK\n", a.stderr);
          // The directory is replaced by a file: the save fails; the change is in use.
          await Deno.rename(dir, `${dir}.moved`);
          await Deno.writeTextFile(dir, "not a directory");
          const b = await nfqlb(...flowArgs("b", 2));
          assert.equal(b.code, 255, `flow-set exit ${b.code}: ${b.stdout}${b.stderr}`);
          assert.match(
            b.stdout,
            new RegExp(
              `^FAIL: the change is in use but not saved: flow-state: ${file}: .*Not a directory`,
            ),
          );
          const list = await nfqlb("flow-list-names");
          assert.deepEqual(JSON.parse(list.stdout), ["a", "b"], "the change is in use");
          // The directory is back: the next change saves everything again.
          await Deno.remove(dir);
          await Deno.rename(`${dir}.moved`, dir);
          const c = await nfqlb(...flowArgs("c", 3));
          assert.equal(c.stdout, "OK\n", c.stderr);
          const saved = decodeFlowState(await Deno.readTextFile(file)).flows.map((f) => f.name);
          assert.deepEqual(saved, ["a", "b", "c"]);
        } finally {
          err = await stopFlowlb(daemon);
        }
        assert.match(
          err,
          new RegExp(`^warning: flowlb: flow-state: save to ${file} failed: `, "m"),
        );
      });
    } finally {
      removeShm(table);
      removeShm(ftshm);
      for (const d of [dir, `${dir}.moved`]) {
        await Deno.remove(d, { recursive: true }).catch(() => {});
      }
    }
  },
});

Deno.test({
  name: "flowlb --flow-state: a restored flow whose table another user made is kept pending, " +
    "never used (needs root)",
  ignore: !ROOT,
  async fn() {
    const table = tempShmName("planted-t");
    const ftshm = tempShmName("planted-ft");
    const dir = await Deno.makeTempDir({ prefix: "nfqlb-planted-" });
    const file = `${dir}/flows.json`;
    try {
      const before = new FlowStore({ acquire: () => true, release: () => {} });
      assert.equal(before.set({ name: "web", target: table, protocols: "tcp" }), "OK");
      writeFlowStateFile(file, encodeFlowState(before.flows.snapshot.flows, []));
      // Before flowlb (re)starts, another user creates the table with fwmarks of their choosing.
      await cli("init", `--shm=${table}`, "--M=997", "--N=4");
      await cli("activate", `--shm=${table}`, "666");
      Deno.chownSync(`/dev/shm/${table}`, 65534, 65534);
      await withTestNet(async (net) => {
        const lb = await net.addNs("lb");
        const daemon = await startFlowlb(net, lb, [`--ft_shm=${ftshm}`, `--flow-state=${file}`]);
        let err: string;
        try {
          const r = await nfqlbIn(net, lb)("flow-list");
          assert.equal(r.code, 0, r.stderr);
          const listed = JSON.parse(r.stdout) as { name: string; pending?: boolean }[];
          assert.deepEqual(listed.map((f) => [f.name, f.pending]), [["web", true]]);
        } finally {
          err = await stopFlowlb(daemon);
        }
        assert.match(err, new RegExp(`table ${table} of a pending flow is not used: untrusted`));
      });
    } finally {
      for (const n of [table, ftshm]) removeShm(n);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
