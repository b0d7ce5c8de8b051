/**
 * The demo's own trace object. Imported first by `scripts/demo.ts`, before anything that starts or
 * configures nfqlb: the log level and trace mask live in a `/dev/shm` object that every nfqlb
 * sharing it reads, in every network namespace (docs/COMPATIBILITY.md D59). The demo's daemon
 * must neither change nor take the host's (or a test run's, `NFQLB_TRACE_SHM` inherited), so the
 * demo always names one of its own, `nfqlb-trace.demo-<pid>`, and removes it at the end
 * ({@link removeDemoTraceShm}).
 *
 * @example
 * ```ts
 * import { DEMO_TRACE_SHM } from "./demo_trace_shm.ts";
 * Deno.env.get("NFQLB_TRACE_SHM") === DEMO_TRACE_SHM; // true
 * ```
 * @module
 */

/** The trace object of this demo process (`NFQLB_TRACE_SHM` for it and everything it starts). */
export const DEMO_TRACE_SHM = `nfqlb-trace.demo-${Deno.pid}`;
Deno.env.set("NFQLB_TRACE_SHM", DEMO_TRACE_SHM);

/** Remove the demo's trace object, if its daemon made one. */
export function removeDemoTraceShm(): void {
  try {
    Deno.removeSync(`/dev/shm/${DEMO_TRACE_SHM}`);
  } catch {
    // not made
  }
}
