/** The offline packaging path: the bundled single file runs as the nfqlb CLI. */
import assert from "node:assert/strict";
import { WORKER_MODULES } from "../../daemon/worker_url.ts";

Deno.test("scripts/bundle.ts produces a runnable single-file nfqlb", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "nfqlb-bundle-" });
  try {
    const out = `${dir}/nfqlb`;
    const build = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        new URL("../../scripts/bundle.ts", import.meta.url).pathname,
        out,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(build.success, new TextDecoder().decode(build.stderr));
    const text = Deno.readTextFileSync(out);
    assert.ok(text.startsWith("#!/usr/bin/env -S deno run --allow-all\n"));
    assert.ok(!/^import /m.test(text), "no imports left: everything is inlined");
    assert.equal(Deno.statSync(out).mode! & 0o111, 0o111, "executable");
    // Run it through the shebang, with our deno first in PATH.
    const denoDir = Deno.execPath().replace(/\/[^/]+$/, "");
    const env = { PATH: `${denoDir}:${Deno.env.get("PATH")}` };
    const run = async (...args: string[]) => {
      const r = await new Deno.Command(out, { args, env, stdout: "piped" }).output();
      return [r.code, new TextDecoder().decode(r.stdout)];
    };
    assert.deepEqual(await run("version"), [0, "1.2.0\n"]);
    assert.deepEqual(await run("primebelow", "1000"), [0, "997\n"]);
    // The daemons' worker modules sit next to the CLI, self-contained, and load.
    for (const w of WORKER_MODULES) {
      const code = Deno.readTextFileSync(`${dir}/${w}`);
      assert.ok(!/^import /m.test(code), `${w}: everything is inlined`);
      const r = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", `${dir}/${w}`],
        stderr: "piped",
      }).output();
      assert.equal(r.code, 0, `${w}: ${new TextDecoder().decode(r.stderr)}`);
    }
    // Copied without its workers: a daemon says which file is missing and the fix, in one line,
    // before it starts anything (no root needed to get that far), instead of a stack trace.
    Deno.mkdirSync(`${dir}/alone`);
    Deno.copyFileSync(out, `${dir}/alone/nfqlb`);
    for (const daemon of ["flowlb", "lb"]) {
      const r = await new Deno.Command(`${dir}/alone/nfqlb`, {
        args: [daemon],
        env,
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(r.code, 1);
      assert.equal(new TextDecoder().decode(r.stdout), "", "nothing started");
      assert.equal(
        new TextDecoder().decode(r.stderr),
        `worker module ${dir}/alone/queue_worker.ts not found: nfqlb loads its worker modules ` +
          `from the directory of its real file (${dir}/alone); reinstall (./dev install) or ` +
          "keep nfqlb and its five *_worker.ts files together in one directory\n",
      );
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
