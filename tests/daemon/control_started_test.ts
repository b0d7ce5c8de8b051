/**
 * The control thread of flowlb (daemon/control_worker.ts) does nothing that lasts before the
 * daemon has started (every queue bound): it listens and reports `ready`, but while its
 * `started` word is 0 it activates no pending flow (whose table appeared), answers no request
 * (a change waits in the backlog) and so writes no `--flow-state`; a second flowlb whose queue
 * is taken would otherwise rewrite the running one's file before it exits. Once `started` is
 * set, the waiting change is answered, the pending flow activated, and both are saved.
 */
import assert from "node:assert/strict";
import { ControlThread } from "../../daemon/control_thread.ts";
import { writeFlowStateFile } from "../../daemon/flow_state_file.ts";
import { PENDING_RETRY_MS } from "../../daemon/pending_flows.ts";
import { socketTransport } from "../../cli/flow_transport.ts";
import { buildRequest } from "../../lib/flow/control_protocol.ts";
import { decodeFlowState, encodeFlowState } from "../../lib/flow/state_file.ts";
import { type FlowSnapshot, FlowStore } from "../../lib/flow/store.ts";
import type { SocketAddress } from "../../lib/ccompat/sockaddr.ts";
import { removeShm, runCli, tempShmName } from "../../testkit/cli.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `nfqlb <args>` in-process; it must succeed. */
async function cli(...args: string[]): Promise<void> {
  const r = await runCli(...args);
  assert.equal(r.code, 0, `nfqlb ${args.join(" ")}: ${r.err}`);
}

Deno.test("control thread: no activation, no reply, no save before the daemon has started", async () => {
  const table = tempShmName("started-t");
  const other = tempShmName("started-o");
  const dir = await Deno.makeTempDir({ prefix: "nfqlb-started-" });
  const file = `${dir}/flows.json`;
  const address: SocketAddress = { kind: "unix", name: `nfqlbtest-${Deno.pid}-started` };
  const stop = new SharedArrayBuffer(4);
  const started = new Int32Array(new SharedArrayBuffer(4));
  // One queue lane that has installed every version (a change's reply need not wait for it).
  const applied = new Int32Array(new SharedArrayBuffer(8)).fill(0x3fffffff);
  let control: ControlThread | undefined;
  try {
    // The state file: flow `later` on `table`, which does not exist yet (pending, D58).
    const before = new FlowStore({ acquire: () => true, release: () => {} });
    assert.equal(before.set({ name: "later", target: table, protocols: "udp" }), "OK");
    writeFlowStateFile(file, encodeFlowState(before.flows.snapshot.flows, []));
    const bytes = await Deno.readFile(file);
    await cli("init", `--shm=${other}`, "--M=997", "--N=4");

    let err = "";
    control = new ControlThread({ out: () => {}, err: (t) => err += t }, {
      address,
      flowState: file,
      lanes: 1,
      stop,
      started: started.buffer as SharedArrayBuffer,
      applied: applied.buffer as SharedArrayBuffer,
    });
    const flows: FlowSnapshot[] = [];
    let changed = () => {};
    control.onFlows = (s) => {
      flows.push(s);
      changed();
    };
    const ready = await control.ready;
    assert.equal(ready.snapshot.pendingCount, 1);

    // The pending flow's table appears, and a client asks for a change.
    await cli("init", `--shm=${table}`, "--M=997", "--N=4");
    let answered = false;
    const reply = socketTransport(address, buildRequest("set", { name: "b", target: other }), true)
      .finally(() => answered = true);
    // Three rounds of the pending-flow retry: not started, so none of them runs.
    await sleep(3 * PENDING_RETRY_MS);
    assert.deepEqual(await Deno.readFile(file), bytes, "the file is as it was");
    assert.equal(flows.length, 0, "no new flows");
    assert.equal(answered, false, "the change waits");
    assert.doesNotMatch(err, /is mapped now/);

    // Started: the change is answered, the flow activated, both saved.
    Atomics.store(started, 0, 1);
    Atomics.notify(started, 0);
    assert.equal(new TextDecoder().decode(await reply), "OK\0");
    const done = () => {
      const s = flows.at(-1);
      return s !== undefined && s.pendingCount === 0 && s.flows.length === 2;
    };
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("the flow was not activated")), 30_000);
      changed = () => {
        if (!done()) return;
        clearTimeout(t);
        resolve();
      };
      changed();
    });
    const saved = decodeFlowState(await Deno.readTextFile(file)).flows.map((f) => f.name);
    assert.deepEqual(saved.sort(), ["b", "later"]);
    assert.match(err, /flow later: table .* is mapped now/);
  } finally {
    Atomics.store(new Int32Array(stop), 0, 1);
    Atomics.notify(started, 0);
    if (control !== undefined) {
      await control.stopped;
      control.terminate();
    }
    for (const n of [table, other]) removeShm(n);
    await Deno.remove(dir, { recursive: true });
  }
});
