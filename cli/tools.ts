/**
 * The system tools the checks read the namespace with (`ip`, `iptables-save`, `ip6tables-save`,
 * `nft`), run bounded: found by absolute path in the system directories (not through `PATH`:
 * privileged commands run them), killed after a timeout or a shared deadline, their output
 * capped. `doctor`, `activate` and `flow-set` use them (`cli/namespace_rules.ts`).
 * @module
 */
import { execBounded } from "./exec.ts";

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

/** Run a tool bounded by `limits`; its stdout when it exits 0, else what went wrong. */
export async function tool(argv: readonly string[], limits: ToolLimits = {}): Promise<ToolOutput> {
  const shown = argv.join(" ");
  const path = resolveTool(argv[0], limits.dirs);
  if (path === undefined) {
    return {
      ok: false,
      why: `${argv[0]} is not installed (not in ${(limits.dirs ?? TOOL_DIRS).join(", ")})`,
    };
  }
  try {
    const r = await execBounded([path, ...argv.slice(1)], limits);
    if (r.stopped === "timeout") {
      return { ok: false, why: `\`${shown}\` did not finish in ${limits.timeoutMs} ms` };
    }
    if (r.stopped === "aborted") return { ok: false, why: `\`${shown}\` was stopped (deadline)` };
    if (r.stopped !== undefined) {
      return { ok: false, why: `\`${shown}\` printed more than ${limits.maxBytes} bytes` };
    }
    if (r.code === 0) return { ok: true, text: r.stdout };
    const err = r.stderr.trim().split("\n")[0] ?? "";
    return { ok: false, why: `\`${shown}\` failed (${r.code})${err ? `: ${err}` : ""}` };
  } catch (e) {
    return { ok: false, why: `${argv[0]}: ${e instanceof Error ? e.message : e}` };
  }
}
