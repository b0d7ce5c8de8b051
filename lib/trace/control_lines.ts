/**
 * Trace lines of the control thread (docs/COMPATIBILITY.md#trace-and-log):
 * bit `flow-conf` shows each request line (`FlowCmd [<line>]`, `eoc:`
 * included) and each reply (`writeReply [<text>]`); bit `target` shows the
 * target tables flows take and give back (`Creating LB; NAME` for the first
 * flow on a table, `Found LB; NAME (<flows>)` for another one, `Map shm
 * failed; NAME`, `Delete load-balancer; NAME` when the last one goes).
 *
 * @example
 * ```ts
 * import { tracedTargets } from "./control_lines.ts";
 * const lines: string[] = [];
 * const sink = { mask: 0x20, line: (l: string) => lines.push(l) };
 * const t = tracedTargets({ acquire: () => true, release: () => {} }, sink);
 * t.acquire("tshm-a");
 * t.release("tshm-a");
 * lines; // ["Creating LB; tshm-a", "Delete load-balancer; tshm-a"]
 * ```
 * @module
 */
import type { TargetRegistry } from "../flow/store.ts";
import { decodeReply } from "../flow/control_protocol.ts";
import { TRACE_FLOW_CONF, TRACE_TARGET, type TraceSink } from "./mask.ts";

/** `registry` with bit `target` lines; it counts the flows on each table to tell create from find. */
export function tracedTargets(registry: TargetRegistry, sink: TraceSink): TargetRegistry {
  const users = new Map<string, number>();
  return {
    acquire(name) {
      const ok = registry.acquire(name);
      const n = users.get(name) ?? 0;
      if (ok) users.set(name, n + 1);
      if ((sink.mask & TRACE_TARGET) !== 0) {
        sink.line(
          !ok
            ? `Map shm failed; ${name}`
            : n === 0
            ? `Creating LB; ${name}`
            : `Found LB; ${name} (${n + 1})`,
        );
      }
      return ok;
    },
    problem: registry.problem === undefined ? undefined : (name) => registry.problem!(name),
    release(name) {
      registry.release(name);
      const n = (users.get(name) ?? 1) - 1;
      if (n > 0) {
        users.set(name, n);
        return;
      }
      users.delete(name);
      if ((sink.mask & TRACE_TARGET) !== 0) sink.line(`Delete load-balancer; ${name}`);
    },
  };
}

/**
 * Bit `flow-conf`: one `FlowCmd [<line>]` per request line, then the reader's warnings
 * (`readCmd; Unrecognized command [...]`).
 */
export function traceRequest(
  sink: TraceSink,
  lines: readonly string[],
  warnings: readonly string[] = [],
): void {
  if ((sink.mask & TRACE_FLOW_CONF) === 0) return;
  for (const l of lines) sink.line(`FlowCmd [${l}]`);
  for (const w of warnings) sink.line(w);
}

/** Bit `flow-conf`: `writeReply [<text>]` for the reply sent (decoded only when traced). */
export function traceReply(sink: TraceSink, reply: Uint8Array): void {
  if ((sink.mask & TRACE_FLOW_CONF) !== 0) sink.line(`writeReply [${decodeReply(reply).text}]`);
}
