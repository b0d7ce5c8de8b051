/**
 * What the tests and the benchmark of the flow control server under load share
 * (tests/e2e/control_server_test.ts, bench/control_bench.ts): flowlb and `nfqlb` commands in a
 * namespace, the control clients (`fixtures/control_clients.py`), a `--flow-state` file whose
 * `flow-list` is long, and a wait until a listening unix socket has accepted every pending
 * connection.
 * @module
 */
import assert from "node:assert/strict";
import { LineProcess } from "./line_process.ts";
import type { CommandResult, TestNet } from "./netns.ts";

const DENO = Deno.execPath();
const CLI = new URL("../cli.ts", import.meta.url).pathname;
/** flowlb's control address in these namespaces, and the commands'. */
const FLOW_ENV = ["env", "NFQLB_FLOW_ADDRESS=unix:nfqlb"];
/** The control clients: one mode per run (`list`, `set`, `sets`, `hold`, `flood`, `slowlist`). */
export const CONTROL_CLIENTS = [
  "/usr/bin/python3",
  new URL("./fixtures/control_clients.py", import.meta.url).pathname,
];
/** A prefix that runs a command as uid and gid 65534 without groups. */
export const NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];

/** Run `nfqlb <args>` as a process in `ns` (flowlb's control address is `@nfqlb`). */
export function nfqlbIn(net: TestNet, ns: string, ...args: string[]): Promise<CommandResult> {
  return net.exec(ns, [...FLOW_ENV, DENO, "run", "-A", CLI, ...args]);
}

/**
 * Start `nfqlb flowlb --queue=0 <args>` in `ns`, its control socket at `@nfqlb`, after `wrapper`
 * (e.g. `prlimit ...`); wait for its `queue_length=` line before using it.
 */
export function flowlbIn(
  net: TestNet,
  ns: string,
  args: readonly string[],
  wrapper: readonly string[] = [],
): LineProcess {
  return new LineProcess(
    net,
    ns,
    [...FLOW_ENV, ...wrapper, DENO, "run", "-A", CLI, "flowlb", "--queue=0", ...args],
    "flowlb",
  );
}

/** Run one mode of the control clients in `ns` (after `prefix`, e.g. {@link NOBODY}); its JSON line. */
export async function controlClient<T = Record<string, unknown>>(
  net: TestNet,
  ns: string,
  args: readonly string[],
  prefix: readonly string[] = [],
): Promise<T> {
  const r = await net.exec(ns, [...prefix, ...CONTROL_CLIENTS, ...args]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split("\n").at(-1)!);
}

/**
 * The text of a `--flow-state` file of `n` flows to `target`, whose `flow-list` takes about
 * 250 bytes a flow (1500 flows: about 380 kB, more than a socket buffer holds).
 */
export function longFlowState(n: number, target: string): string {
  const flows = Array.from({ length: n }, (_, i) => ({
    name: `f${i}`,
    target,
    priority: String(i % 7),
    protocols: "tcp,udp",
    dsts: `10.${(i >> 8) & 255}.${i & 255}.0/24,10.1.0.0/16,1000::/64`,
    dports: String(1000 + i),
  }));
  return JSON.stringify({ version: 1, flows, traces: [] });
}

/**
 * Wait until the listening unix socket `name` (`@NAME`) in `ns` has no connection waiting to be
 * accepted (`ss` shows that backlog as Recv-Q); throws after `ms`.
 */
export async function untilAccepted(
  net: TestNet,
  ns: string,
  name: string,
  ms = 30_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const out = await net.run(ns, ["ss", "-xlH"]);
    const row = out.split("\n").find((l) => l.split(/\s+/)[4] === name);
    if (row !== undefined && row.split(/\s+/)[2] === "0") return;
    if (Date.now() >= deadline) throw new Error(`connections to ${name} not accepted:\n${out}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
