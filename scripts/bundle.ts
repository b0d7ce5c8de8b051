/**
 * Offline packaging: bundle the CLI into one executable JavaScript file with
 * a Deno shebang (`dist/nfqlb` unless an output path is given), plus the
 * worker modules the daemons start (`WORKER_MODULES` of daemon/worker_url.ts:
 * `queue_worker.ts`, `control_worker.ts`, `trace_worker.ts`, `metrics_worker.ts`,
 * `fastpath_worker.ts`), bundled next to it: the CLI finds them next to its real
 * path (symlinks resolved). Unlike `deno compile`, this needs no download of the
 * Deno runtime (denort): only esbuild from the npm registry the first time.
 * `scripts/install.ts` installs the result.
 *
 * Usage: deno run --allow-all scripts/bundle.ts [OUTPUT]
 * @module
 */
import { WORKER_MODULES } from "../daemon/worker_url.ts";

/** The first line of the bundle: it runs with the `deno` found in `PATH`. */
export const SHEBANG = "#!/usr/bin/env -S deno run --allow-all\n";
const root = new URL("../", import.meta.url);

async function bundle(entry: string, out: string): Promise<string> {
  const tmp = `${out}.tmp.js`;
  const result = await new Deno.Command(Deno.execPath(), {
    args: ["bundle", "--quiet", "--platform", "deno", "-o", tmp, entry],
    cwd: root.pathname,
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!result.success) throw new Error(`bundle: deno bundle ${entry} failed`);
  const code = Deno.readTextFileSync(tmp);
  Deno.removeSync(tmp);
  return code.startsWith("#!") ? code.slice(code.indexOf("\n") + 1) : code;
}

/**
 * Write the bundle to `output` (mode 0755) and the worker modules beside it. Returns the paths
 * written, the bundle first; throws when `deno bundle` fails.
 */
export async function bundleTo(output: string): Promise<string[]> {
  const dir = output.replace(/\/[^/]*$/, "") || ".";
  Deno.mkdirSync(dir, { recursive: true });
  const main = await bundle("cli.ts", output);
  Deno.writeTextFileSync(output, SHEBANG + main, { mode: 0o755 });
  Deno.chmodSync(output, 0o755);
  const written = [output];
  for (const name of WORKER_MODULES) {
    const path = `${dir}/${name}`;
    Deno.writeTextFileSync(path, await bundle(`daemon/${name}`, path));
    written.push(path);
  }
  return written;
}

if (import.meta.main) {
  const output = Deno.args[0] ?? new URL("dist/nfqlb", root).pathname;
  try {
    const written = await bundleTo(output);
    const kib = (Deno.statSync(output).size / 1024).toFixed(1);
    console.error(`bundle: wrote ${output} (${kib} KiB) and its ${written.length - 1} workers`);
  } catch (e) {
    console.error(e instanceof Error ? e.message : String(e));
    Deno.exit(1);
  }
}
