/**
 * The control thread's retry of pending flows (docs/COMPATIBILITY.md#differences D58): flows
 * restored from `--flow-state` whose table could not be mapped wait in the store, matching
 * nothing; the control loop calls {@link PendingFlowRetry.tick} each round, and at most once
 * per interval each pending flow's table is probed. Flows whose table maps now become normal
 * flows in one new snapshot, which reaches the queue threads like any flow change (they map
 * the table when they install it), and is saved. The packet path does nothing extra.
 * @module
 */
import type { ActivatedFlow, FlowStore } from "../lib/flow/store.ts";

/** How often pending flows' tables are probed (ms). */
export const PENDING_RETRY_MS = 500;

/** The log line of a pending flow that matches now. */
function activatedLine(f: ActivatedFlow): string {
  return `flow ${f.name}: table ${f.target} is mapped now; the flow is no longer pending`;
}

/** The log line of a pending flow's table that exists but is not trusted (it stays pending). */
export function untrustedPendingLine(table: string, problem: string): string {
  return `flowlb: table ${table} of a pending flow is not used: ${problem}; ` +
    `its flows stay pending (remove it and create it with nfqlb init)`;
}

/** Probes the tables of pending flows and activates the flows whose table maps. */
export class PendingFlowRetry {
  #next = 0;

  /**
   * `probe(target)`: whether the table maps and is valid now (untraced); `log` gets one
   * {@link activatedLine} per activated flow.
   */
  constructor(
    readonly store: FlowStore,
    readonly probe: (target: string) => boolean,
    readonly log: (text: string) => void,
    readonly intervalMs: number = PENDING_RETRY_MS,
  ) {}

  /** One round of the control loop at `now` (ms); returns the flows activated. */
  tick(now: number): ActivatedFlow[] {
    if (this.store.flows.snapshot.pendingCount === 0 || now < this.#next) return [];
    this.#next = now + this.intervalMs;
    const activated = this.store.activatePending(this.probe);
    for (const f of activated) this.log(activatedLine(f));
    return activated;
  }
}
