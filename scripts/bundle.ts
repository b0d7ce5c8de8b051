/**
 * Offline packaging: bundle the CLI into one executable JavaScript file with
 * a Deno shebang (`dist/nfqlb` unless an output path is given). Unlike
 * `deno compile`, this needs no download of the Deno runtime (denort): only
 * esbuild from the npm registry the first time.
 *
 * Usage: deno run --allow-all scripts/bundle.ts [OUTPUT]
 */
const SHEBANG = "#!/usr/bin/env -S deno run --allow-all\n";
const root = new URL("../", import.meta.url);
const output = Deno.args[0] ?? new URL("dist/nfqlb", root).pathname;
const tmp = `${output}.tmp.js`;

const result = await new Deno.Command(Deno.execPath(), {
  args: ["bundle", "--quiet", "--platform", "deno", "-o", tmp, "cli.ts"],
  cwd: root.pathname,
  stdout: "inherit",
  stderr: "inherit",
}).output();
if (!result.success) {
  console.error("bundle: deno bundle failed");
  Deno.exit(1);
}
let code = Deno.readTextFileSync(tmp);
Deno.removeSync(tmp);
if (code.startsWith("#!")) code = code.slice(code.indexOf("\n") + 1);
Deno.writeTextFileSync(output, SHEBANG + code, { mode: 0o755 });
Deno.chmodSync(output, 0o755);
console.error(`bundle: wrote ${output} (${(code.length / 1024).toFixed(1)} KiB)`);
