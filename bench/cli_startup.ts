/**
 * How long one CLI command takes, from exec to exit: `show`, `flow-list` and `flow-set` run as
 * `deno run --allow-all cli.ts …` and as the bundle (`dist/nfqlb`, `./dev deno task bundle`),
 * against the floor, `deno run` of an empty file. The flow commands talk to a stand-in control
 * server of this process (`NFQLB_FLOW_ADDRESS`), which answers at once: what is measured is the
 * client. Each round runs every case once, in turn, so the noise of other processes falls on
 * all of them alike; medians and quartiles are printed.
 *
 * With `--base=DIR` (another checkout whose bundle is built, e.g. `git archive` of the previous
 * commit) every case runs there too, in the same rounds: an A/B of the same run.
 *
 * Usage: deno run --allow-all bench/cli_startup.ts [--runs=N] [--base=DIR]
 * @module
 */

/** One measured program run. */
interface Case {
  readonly label: string;
  readonly args: readonly string[];
  readonly times: number[];
}

const root = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const runs = Number(flag("runs") ?? "30");
const base = flag("base");

function flag(name: string): string | undefined {
  const a = Deno.args.find((x) => x.startsWith(`--${name}=`));
  return a?.slice(name.length + 3);
}

/** The `p` quantile (0..1) of `xs`. */
function quantile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const i = (s.length - 1) * p;
  const lo = Math.floor(i);
  return s[lo] + (s[Math.ceil(i)] - s[lo]) * (i - lo);
}

/** A stand-in flow server on `@name`: `OK` to a change, an empty JSON list to a list. */
function serveFlows(name: string): Deno.Listener {
  const listener = Deno.listen({ transport: "unix", path: `\0${name}` });
  (async () => {
    for await (const conn of listener) {
      (async () => {
        let text = "";
        const buf = new Uint8Array(4096);
        while (!text.includes("eoc:\n")) {
          const n = await conn.read(buf);
          if (n === null) break;
          text += new TextDecoder().decode(buf.subarray(0, n));
        }
        const reply = text.startsWith("action:list") ? "[]" : "OK\0";
        await conn.write(new TextEncoder().encode(reply));
        conn.close();
      })().catch(() => {});
    }
  })().catch(() => {});
  return listener;
}

async function timeRun(args: readonly string[], env: Record<string, string>): Promise<number> {
  const t = performance.now();
  const r = await new Deno.Command(args[0], {
    args: args.slice(1),
    env,
    stdout: "null",
    stderr: "piped",
  }).output();
  const ms = performance.now() - t;
  if (!r.success) {
    throw new Error(`${args.join(" ")}: exit ${r.code}\n${new TextDecoder().decode(r.stderr)}`);
  }
  return ms;
}

const deno = Deno.execPath();
const tag = `nfqlb-clibench-${Deno.pid}`;
const shm = `${tag}-table`;
const empty = await Deno.makeTempFile({ suffix: ".js" });
const listener = serveFlows(tag);
const env = { NFQLB_FLOW_ADDRESS: `unix:${tag}`, NFQLB_NO_CONFIG_WARNINGS: "1" };
const commands: Record<string, string[]> = {
  show: ["show", `--shm=${shm}`],
  "flow-list": ["flow-list"],
  "flow-set": ["flow-set", "--name=bench", `--target=${shm}`],
};
const cases: Case[] = [{ label: "floor (empty file)", args: [deno, "run", empty], times: [] }];
for (const [which, dir] of base === undefined ? [["", root]] : [["base ", base], ["", root]]) {
  for (const [name, argv] of Object.entries(commands)) {
    for (const [how, entry] of [["cli.ts", `${dir}/cli.ts`], ["bundle", `${dir}/dist/nfqlb`]]) {
      cases.push({
        label: `${which}${how} ${name}`,
        args: [deno, "run", "--allow-all", entry, ...argv],
        times: [],
      });
    }
  }
}
try {
  await timeRun([deno, "run", "--allow-all", `${root}/cli.ts`, "init", `--shm=${shm}`], env);
  for (let i = 0; i < runs + 1; i++) {
    for (const c of cases) {
      const ms = await timeRun(c.args, env);
      if (i > 0) c.times.push(ms); // the first round warms the caches
    }
  }
} finally {
  listener.close();
  Deno.removeSync(empty);
  try {
    Deno.removeSync(`/dev/shm/${shm}`);
  } catch {
    // not created
  }
}
console.log(`${runs} runs each, interleaved; ms from spawn to exit (deno ${Deno.version.deno})`);
console.log("case".padEnd(28) + "median".padStart(8) + "q1".padStart(8) + "q3".padStart(8));
for (const c of cases) {
  const f = (p: number) => quantile(c.times, p).toFixed(1).padStart(8);
  console.log(c.label.padEnd(28) + f(0.5) + f(0.25) + f(0.75));
}
