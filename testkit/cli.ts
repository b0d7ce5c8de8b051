/**
 * Run the nfqlb CLI in-process and capture its output; unique shm names for tests. Importing it
 * gives the process a trace object of its own (`trace_shm.ts`).
 * @module
 */
import "./trace_shm.ts";
import { main } from "../cli/main.ts";

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
