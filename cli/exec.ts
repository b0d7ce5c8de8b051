/**
 * Run an external program to completion: its exit status, stdout and stderr, with `stdin` fed to
 * it; the tests' namespace helpers (`testkit/netns.ts`) run with it. {@link execBounded} runs a
 * program that must not hold its caller: killed on a timeout, an abort, or too much output; the
 * commands run every tool with it (`cli/tools.ts`).
 * @module
 */

/** What a finished command gave. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Start `argv` with stdout and stderr piped, and stdin piped when `input` (else /dev/null). */
function spawnPiped(argv: readonly string[], input: boolean): Deno.ChildProcess {
  return new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: input ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/**
 * Run `argv` to completion and capture its output (never throws on exit status; throws
 * `Deno.errors.NotFound` when the program is not installed).
 */
export async function exec(argv: readonly string[], stdin?: string): Promise<CommandResult> {
  const child = spawnPiped(argv, stdin !== undefined);
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const r = await child.output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

/** Bounds of {@link execBounded}. */
export interface ExecLimits {
  /** Kill the program (SIGKILL) after this many milliseconds. */
  readonly timeoutMs?: number;
  /** Kill the program when this is aborted (a budget shared by several programs). */
  readonly signal?: AbortSignal;
  /** Kill the program when its stdout grows beyond this many bytes. */
  readonly maxBytes?: number;
}

/** How a bounded run ended: finished, or stopped (killed) for one of the limits. */
export type BoundedResult =
  | ({ stopped?: undefined } & CommandResult)
  | { stopped: "timeout" | "aborted" | "too-large" };

/** Read a stream to its end, or until it holds more than `max` bytes (then undefined). */
async function readCapped(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  max: number,
): Promise<string | undefined> {
  const chunks: Uint8Array[] = [];
  let n = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      n += value.length;
      if (n > max) return undefined;
      chunks.push(value);
    }
  } catch {
    // cancelled (the program was stopped): what was read is not used
  } finally {
    reader.cancel().catch(() => {});
  }
  const all = new Uint8Array(n);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.length;
  }
  return new TextDecoder().decode(all);
}

/**
 * Run `argv` (with `stdin` fed to it, else none) like {@link exec}, but never longer than
 * `limits` allow: on a timeout, an
 * abort or too much output the program is killed (SIGKILL), its pipes closed and no longer waited
 * for (a grandchild that keeps them open does not hold the caller, but is not killed either: only
 * the program itself is; `ip`, `iptables-save` and `nft` do not fork), and the result says why.
 * Throws `Deno.errors.NotFound` when the program is not installed.
 */
export async function execBounded(
  argv: readonly string[],
  limits: ExecLimits,
  stdin?: string,
): Promise<BoundedResult> {
  if (limits.signal?.aborted) return { stopped: "aborted" };
  const child = spawnPiped(argv, stdin !== undefined);
  if (stdin !== undefined) {
    // Not awaited: a program that does not read its input must not hold the caller either.
    const w = child.stdin.getWriter();
    w.write(new TextEncoder().encode(stdin)).then(() => w.close()).catch(() => {});
  }
  let why: "timeout" | "aborted" | "too-large" | undefined;
  let wake: () => void = () => {};
  const stopped = new Promise<void>((r) => (wake = r));
  const stop = (w: "timeout" | "aborted" | "too-large") => {
    why ??= w;
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
    out.cancel().catch(() => {});
    err.cancel().catch(() => {});
    wake();
  };
  const out = child.stdout.getReader();
  const err = child.stderr.getReader();
  const onAbort = () => stop("aborted");
  limits.signal?.addEventListener("abort", onAbort);
  const timer = limits.timeoutMs === undefined
    ? undefined
    : setTimeout(() => stop("timeout"), limits.timeoutMs);
  const max = limits.maxBytes ?? Infinity;
  const done = Promise.all([
    readCapped(out, max).then((t) => {
      if (t === undefined) stop("too-large");
      return t;
    }),
    readCapped(err, 1 << 16),
    child.status,
  ]);
  try {
    const r = await Promise.race([done, stopped.then(() => undefined)]);
    if (why !== undefined || r === undefined) {
      child.unref(); // its status is not waited for
      done.catch(() => {});
      return { stopped: why ?? "aborted" };
    }
    return { code: r[2].code, stdout: r[0] ?? "", stderr: r[1] ?? "" };
  } finally {
    clearTimeout(timer);
    limits.signal?.removeEventListener("abort", onAbort);
  }
}
