/**
 * Importing this module gives the process — a test or a benchmark — and the daemons and commands
 * it starts (they inherit its environment) a trace object of their own (`NFQLB_TRACE_SHM`,
 * docs/COMPATIBILITY.md D59), unless one is set already (`./dev test` sets and removes one per
 * run). Tests and benchmarks change the log level and trace mask, and the host's `nfqlb-trace`
 * belongs to any nfqlb running there; a mask left set there would also fill a benchmark's stderr
 * with trace lines. Outside `./dev test` the name is always `nfqlb-trace.tests`: deno has no hook
 * to remove a per-process object at the end, so this one 8-byte object is reused instead.
 *
 * @example
 * ```ts
 * import "./trace_shm.ts";
 * Deno.env.get("NFQLB_TRACE_SHM")?.startsWith("nfqlb-trace."); // true
 * ```
 * @module
 */
if ((Deno.env.get("NFQLB_TRACE_SHM") ?? "") === "") {
  Deno.env.set("NFQLB_TRACE_SHM", "nfqlb-trace.tests");
}
