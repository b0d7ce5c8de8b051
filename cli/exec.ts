/**
 * Run an external program to completion: its exit status, stdout and stderr, with `stdin` fed to
 * it. The commands that drive other tools (`ruleset`, `doctor`) run them through it; the tests'
 * namespace helpers (`testkit/netns.ts`) too.
 * @module
 */

/** What a finished command gave. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Run `argv` to completion and capture its output (never throws on exit status; throws
 * `Deno.errors.NotFound` when the program is not installed).
 */
export async function exec(argv: readonly string[], stdin?: string): Promise<CommandResult> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const r = await child.output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}
