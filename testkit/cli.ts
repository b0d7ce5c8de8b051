/**
 * Run the nfqlb CLI in-process and capture its output; unique shm names for tests.
 *
 * Importing it gives the test process (and the daemons and commands it starts, which inherit
 * its environment) a trace object of its own (`NFQLB_TRACE_SHM`, docs/COMPATIBILITY.md D59)
 * unless one is set already (`./dev test` sets one for the whole run): tests change the log
 * level and trace mask, and the host's `nfqlb-trace` belongs to any nfqlb running there.
 * @module
 */
import { main } from "../cli/main.ts";

// One name for every run outside `./dev test` (which sets and removes its own): deno test has no
// hook to remove a per-process object at the end, so this one 8-byte object is reused instead.
if ((Deno.env.get("NFQLB_TRACE_SHM") ?? "") === "") {
  Deno.env.set("NFQLB_TRACE_SHM", "nfqlb-trace.tests");
}

/** What a CLI run produced. */
export interface CliResult {
  code: number;
  out: string;
  err: string;
}

/** Run `nfqlb <args>` in this process. */
export async function runCli(...args: string[]): Promise<CliResult> {
  let out = "";
  let err = "";
  const code = await main("nfqlb", args, {
    out: (t) => out += t,
    err: (t) => err += t,
  });
  return { code, out, err };
}

let counter = 0;

/** A shm name unique to this process and call; remove it with {@link removeShm}. */
export function tempShmName(tag: string): string {
  return `nfqlbtest-${Deno.pid}-${tag}-${counter++}`;
}

/** Remove a test shm object if it exists. */
export function removeShm(name: string): void {
  try {
    Deno.removeSync(`/dev/shm/${name}`);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/** Read a shm object's bytes through the filesystem (independent of the FFI path). */
export function readShm(name: string): Uint8Array {
  return Deno.readFileSync(`/dev/shm/${name}`);
}
