/**
 * What the tests and the benchmark of the flow control server under load share
 * (tests/e2e/control_server_test.ts, bench/control_bench.ts): a `--flow-state` file whose
 * `flow-list` is long, and a wait until a listening unix socket has accepted every pending
 * connection.
 * @module
 */
import type { TestNet } from "./netns.ts";

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
