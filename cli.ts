#!/usr/bin/env -S deno run --allow-all
/**
 * The `nfqlb` command-line entry point.
 * @module
 */
import { main } from "./cli/main.ts";
import type { Io } from "./cli/command.ts";

const encoder = new TextEncoder();

function writeAll(file: { writeSync(p: Uint8Array): number }, text: string): void {
  const bytes = encoder.encode(text);
  let off = 0;
  while (off < bytes.length) off += file.writeSync(bytes.subarray(off));
}

/** stdout/stderr of the process. */
const processIo: Io = {
  out: (t) => writeAll(Deno.stdout, t),
  err: (t) => writeAll(Deno.stderr, t),
};

if (import.meta.main) {
  Deno.exit(await main("nfqlb", Deno.args, processIo));
}
