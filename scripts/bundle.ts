/**
 * Offline packaging: bundle the CLI into one executable JavaScript file with
 * a Deno shebang (`dist/nfqlb` unless an output path is given), plus the
 * worker modules the daemons start (`queue_worker.ts`, `control_worker.ts`, `trace_worker.ts`,
 * `metrics_worker.ts`, `fastpath_worker.ts`,
 * bundled next to it: the CLI finds them relative to itself). Unlike
 * `deno compile`, this needs no download of the Deno runtime (denort): only
 * esbuild from the npm registry the first time.
 *
 * Usage: deno run --allow-all scripts/bundle.ts [OUTPUT]
 */
const SHEBANG = "#!/usr/bin/env -S deno run --allow-all\n";
/** Worker entry points, bundled under their own names next to the CLI. */
const WORKERS = [
  "daemon/queue_worker.ts",
  "daemon/control_worker.ts",
  "daemon/trace_worker.ts",
  "daemon/metrics_worker.ts",
  "daemon/fastpath_worker.ts",
];
const root = new URL("../", import.meta.url);
const output = Deno.args[0] ?? new URL("dist/nfqlb", root).pathname;
const dir = output.replace(/\/[^/]*$/, "") || ".";

async function bundle(entry: string, out: string): Promise<string> {
  const tmp = `${out}.tmp.js`;
  const result = await new Deno.Command(Deno.execPath(), {
    args: ["bundle", "--quiet", "--platform", "deno", "-o", tmp, entry],
    cwd: root.pathname,
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!result.success) {
    console.error(`bundle: deno bundle ${entry} failed`);
    Deno.exit(1);
  }
  const code = Deno.readTextFileSync(tmp);
  Deno.removeSync(tmp);
  return code.startsWith("#!") ? code.slice(code.indexOf("\n") + 1) : code;
}

Deno.mkdirSync(dir, { recursive: true });
const main = await bundle("cli.ts", output);
Deno.writeTextFileSync(output, SHEBANG + main, { mode: 0o755 });
Deno.chmodSync(output, 0o755);
for (const w of WORKERS) {
  const name = w.slice(w.lastIndexOf("/") + 1);
  Deno.writeTextFileSync(`${dir}/${name}`, await bundle(w, `${dir}/${name}`));
}
console.error(`bundle: wrote ${output} (${(main.length / 1024).toFixed(1)} KiB) and its workers`);
