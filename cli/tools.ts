/**
 * The system tools the checks read the namespace with (`ip`, `iptables-save`, `ip6tables-save`,
 * `nft`), run bounded: found by absolute path in the system directories (not through `PATH`:
 * privileged commands run them), killed after a timeout or a shared deadline, their output
 * capped. `doctor`, `activate` and `flow-set` use them (`cli/namespace_rules.ts`).
 * @module
 */
import { type BoundedResult, execBounded } from "./exec.ts";

/** Where the tools are looked for, in order. */
export const TOOL_DIRS: readonly string[] = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/** How the tools are found and bounded. */
export interface ToolLimits {
  /** Directories searched for a tool (default {@link TOOL_DIRS}). */
  readonly dirs?: readonly string[];
  /** Per-run timeout (ms). */
  readonly timeoutMs?: number;
  /** A deadline shared by several runs: each is killed when it fires. */
  readonly signal?: AbortSignal;
  /** Longest stdout read (bytes); beyond it the run fails. */
  readonly maxBytes?: number;
}

/** How one tool's run went: its output, or why there is none. */
export type ToolOutput = { ok: true; text: string } | { ok: false; why: string };

/** The absolute path of `name` in `dirs` (an executable regular file), undefined when none. */
export function resolveTool(name: string, dirs: readonly string[] = TOOL_DIRS): string | undefined {
  for (const dir of dirs) {
    const path = `${dir}/${name}`;
    try {
      const st = Deno.statSync(path);
      if (st.isFile && ((st.mode ?? 0o111) & 0o111) !== 0) return path;
    } catch {
      // not there
    }
  }
  return undefined;
}

/** How one bounded run of a tool ended: finished, stopped at a limit, or not installed. */
export type ToolRun = BoundedResult | { stopped: "missing" };

/**
 * Run tool `argv[0]`, found in `limits.dirs` (not through `PATH`), with `stdin` fed to it,
 * bounded by `limits`. Throws what spawning throws, but for a missing tool.
 */
export async function runTool(
  argv: readonly string[],
  limits: ToolLimits = {},
  stdin?: string,
): Promise<ToolRun> {
  const path = resolveTool(argv[0], limits.dirs);
  if (path === undefined) return { stopped: "missing" };
  return await execBounded([path, ...argv.slice(1)], limits, stdin);
}

/**
 * Why a run of `argv` was stopped, one phrase naming the command and the limit
 * (`` `iptables-save` did not finish in 200 ms ``).
 */
export function stoppedWhy(
  argv: readonly string[],
  stopped: ToolRun["stopped"] & string,
  limits: ToolLimits,
): string {
  const shown = argv.join(" ");
  switch (stopped) {
    case "missing":
      return `${argv[0]} is not installed (not in ${(limits.dirs ?? TOOL_DIRS).join(", ")})`;
    case "timeout":
      return `\`${shown}\` did not finish in ${limits.timeoutMs} ms`;
    case "aborted":
      return `\`${shown}\` was stopped (deadline)`;
    case "too-large":
      return `\`${shown}\` printed more than ${limits.maxBytes} bytes`;
  }
}

/** Run a tool bounded by `limits`; its stdout when it exits 0, else what went wrong. */
export async function tool(argv: readonly string[], limits: ToolLimits = {}): Promise<ToolOutput> {
  const shown = argv.join(" ");
  try {
    const r = await runTool(argv, limits);
    if (r.stopped !== undefined) return { ok: false, why: stoppedWhy(argv, r.stopped, limits) };
    if (r.code === 0) return { ok: true, text: r.stdout };
    const err = r.stderr.trim().split("\n")[0] ?? "";
    return { ok: false, why: `\`${shown}\` failed (${r.code})${err ? `: ${err}` : ""}` };
  } catch (e) {
    return { ok: false, why: `${argv[0]}: ${e instanceof Error ? e.message : e}` };
  }
}
