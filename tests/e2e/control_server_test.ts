/**
 * The flow control server serves many clients at once (docs/COMPATIBILITY.md#control-protocol):
 * with 500 idle connections and a half-sent request from uid 65534 held open, root's
 * `flow-list` and `flow-set` are answered; 150 concurrent `flow-set` are all answered `OK`; the
 * half request is closed at its deadline; a flood of 20k garbage requests from uid 65534 leaves
 * the daemon alive and answering, with a bounded number of log lines. With 1500 flows (a 380 kB
 * list), 31 connections of uid 65534 that ask for the list and take 16 bytes a second (or none)
 * do not hold up root's `flow-set` (under 2 s here; 30 s before replies were written without
 * blocking) and are closed at their reply deadline. Timings are measured in
 * bench/control_bench.ts, not asserted here beyond such generous bounds.
 */
import assert from "node:assert/strict";
import { removeShm, tempShmName } from "../../testkit/cli.ts";
import { isRoot, withTestNet } from "../../testkit/netns.ts";
import { LineProcess } from "../../testkit/line_process.ts";
import {
  CONTROL_CLIENTS,
  controlClient,
  flowlbIn,
  longFlowState,
  nfqlbIn,
  NOBODY,
  untilAccepted,
} from "../../testkit/control_load.ts";

/** This file's fragment statistics object (not the default `ftshm`), removed at exit. */
const FTSHM = tempShmName("ctl-ft");
globalThis.addEventListener("unload", () => removeShm(FTSHM));

const ROOT = isRoot();
Deno.test({
  name:
    "control server: hostile idle connections, stalled request and garbage flood do not stall root",
  ignore: !ROOT,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const shm = `ctlsrv-${Deno.pid}`;
    await withTestNet(async (net) => {
      const ns = await net.addNs("ctlsrv");
      const init = await nfqlbIn(net, ns, "init", `--shm=${shm}`, "--M=997", "--N=8");
      assert.equal(init.code, 0, init.stderr);
      const lb = flowlbIn(net, ns, [`--ft_shm=${FTSHM}`]);
      try {
        await lb.waitLine(/^queue_length=/);
        const hold = new LineProcess(
          net,
          ns,
          [...NOBODY, ...CONTROL_CLIENTS, "hold", "500"],
          "hold",
        );
        const held = JSON.parse(await hold.waitLine(/"held"/));
        assert.equal(held.held, 500, "the hostile client connected 500 times");

        const list = await controlClient(net, ns, ["list"]);
        assert.equal(list.reply, "[]\n", "the empty flow list");
        const set = await controlClient(net, ns, ["set", "root1", shm]);
        assert.equal(set.reply, "OK");
        const sets = await controlClient(net, ns, ["sets", "150", shm]);
        assert.deepEqual([sets.ok, sets.other], [150, []]);

        // The half-sent request is closed at its deadline (2 s), not kept forever.
        const half = JSON.parse(await hold.waitLine(/half_closed_after_s/, 0, 15000));
        assert.ok(half.half_closed_after_s < 10, JSON.stringify(half));
        await hold.finish();

        // A changing uid 65534 is refused.
        const refused = await controlClient(net, ns, ["set", "evil", shm], NOBODY);
        assert.equal(refused.reply, "FAIL: permission denied");

        const flood = await controlClient(net, ns, ["flood", "20000"], NOBODY);
        assert.ok((flood.sent as number) > 0);
        const after = await controlClient(net, ns, ["list"]);
        assert.match(after.reply as string, /root1/, "alive and answering after the flood");
      } finally {
        Deno.kill(lb.pid, "SIGTERM");
        const end = await lb.finish();
        await nfqlbIn(net, ns, "delete", `--shm=${shm}`).catch(() => {});
        const lines = end.stderr.split("\n").filter((l) => l !== "");
        // 20k requests × 40 unknown keys and the refusals: rate-limited to a few dozen lines.
        assert.ok(
          lines.length < 200,
          `stderr has ${lines.length} lines:\n${lines.slice(0, 40).join("\n")}`,
        );
        assert.equal(end.code, 0, end.stderr.slice(-2000));
      }
    });
  },
});

Deno.test({
  name: "control server: accept failing with EMFILE backs off, keeps the daemon up, recovers",
  ignore: !ROOT,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await withTestNet(async (net) => {
      const ns = await net.addNs("ctlemf");
      // flowlb itself needs about 46 fds; 64 leave too few for 60 idle connections.
      const lb = flowlbIn(net, ns, [`--ft_shm=${FTSHM}`], ["prlimit", "--nofile=64:64"]);
      try {
        await lb.waitLine(/^queue_length=/);
        // Root's idle connections are never refused by the caps: they use up the fds.
        const hold = new LineProcess(net, ns, [...CONTROL_CLIENTS, "hold", "60"], "hold");
        await hold.waitLine(/"held"/);
        await hold.finish(); // closes them all
        await new Promise((r) => setTimeout(r, 500));
        const list = await controlClient(net, ns, ["list"]);
        assert.equal(list.reply, "[]\n", "answers again once fds are free");
      } finally {
        Deno.kill(lb.pid, "SIGTERM");
        const end = await lb.finish();
        assert.match(end.stderr, /control: accept: Too many open files/);
        assert.ok(end.stderr.split("\n").length < 100, "accept errors are rate-limited");
        assert.equal(end.code, 0, end.stderr.slice(-2000));
      }
    });
  },
});

Deno.test({
  name: "control server: uid 65534 reading long lists slowly does not stall root",
  ignore: !ROOT,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const shm = `ctlslow-${Deno.pid}`;
    const FLOWS = 1500;
    const SLOW = 30;
    const dir = Deno.makeTempDirSync({ prefix: "nfqlb-ctlslow-" });
    const state = `${dir}/flows.json`;
    await withTestNet(async (net) => {
      const ns = await net.addNs("ctlslow");
      const init = await nfqlbIn(net, ns, "init", `--shm=${shm}`, "--M=997", "--N=8");
      assert.equal(init.code, 0, init.stderr);
      Deno.writeTextFileSync(state, longFlowState(FLOWS, shm), { mode: 0o600 });
      const lb = flowlbIn(net, ns, [`--ft_shm=${FTSHM}`, `--flow-state=${state}`]);
      let slow: LineProcess | null = null;
      let end;
      try {
        await lb.waitLine(/^queue_length=/);
        const full = await controlClient(net, ns, ["list"]);
        const size = new TextEncoder().encode(full.reply as string).length;
        assert.equal(JSON.parse(full.reply as string).length, FLOWS);
        assert.ok(size > 300_000, `the list (${size} bytes) is more than a socket buffer holds`);

        // uid 65534: 31 connections that each ask for the list, the first alone, the others
        // while the server writes to the first; the first never reads, the others take 16 bytes
        // a second. The old server wrote one reply at a time (a second or more each), so root,
        // once they were accepted, waited for all of them (23 s for 30).
        slow = new LineProcess(
          net,
          ns,
          [...NOBODY, ...CONTROL_CLIENTS, "slowlist", String(SLOW + 1), "16", "1"],
          "slowlist",
        );
        await slow.waitLine(/"asked"/);
        await untilAccepted(net, ns, "@nfqlb");
        // Root is answered at once, whatever they do.
        const set = await controlClient(net, ns, ["set", "root1", shm]);
        assert.equal(set.reply, "OK");
        assert.ok((set.ms as number) < 2000, `root's flow-set took ${set.ms} ms`);
        const list = await controlClient(net, ns, ["list"]);
        assert.equal(JSON.parse(list.reply as string).length, FLOWS + 1, "a whole list for root");
        assert.ok((list.ms as number) < 2000, `root's flow-list took ${list.ms} ms`);

        // The slow readers are closed at their reply deadline (5 s), with little of the list.
        const closed = JSON.parse(await slow.waitLine(/all_closed_after_s/, 0, 60_000));
        for (const got of closed.got as number[]) assert.ok(got < size, `${got} of ${size}`);
      } finally {
        await slow?.finish();
        Deno.kill(lb.pid, "SIGTERM");
        end = await lb.finish();
        await nfqlbIn(net, ns, "delete", `--shm=${shm}`).catch(() => {});
        Deno.removeSync(dir, { recursive: true });
      }
      assert.equal(end.code, 0, end.stderr.slice(-2000));
      assert.match(end.stderr, /control: closed uid 65534 \(pid \d+\): reply not taken within/);
    });
  },
});
