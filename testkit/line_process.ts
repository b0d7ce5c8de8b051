/**
 * Test helper: a process started with {@link TestNet.spawn} whose stdout is
 * read line by line in the background, with waits for lines that match.
 *
 * @example Needs a TestNet and one of its namespaces (root)
 * ```ts ignore
 * const p = new LineProcess(net, ns, ["sh", "-c", "echo READY"], "demo");
 * await p.waitLine(/^READY$/);
 * await p.finish();
 * ```
 * @module
 */
import type { TestNet } from "./netns.ts";

/** A line test: a regular expression or a predicate. */
export type LineMatch = RegExp | ((line: string) => boolean);

const test = (m: LineMatch, l: string) => typeof m === "function" ? m(l) : m.test(l);

/** A spawned process with line-wise access to its stdout. */
export class LineProcess {
  /** Complete stdout lines so far. */
  readonly lines: string[] = [];
  readonly child: Deno.ChildProcess;
  /** All of stderr, once the process has closed it. */
  readonly stderr: Promise<string>;
  readonly #pump: Promise<void>;
  #eof = false;
  #wake: (() => void) | null = null;

  /** Start `cmd` in namespace `ns`; `label` names it in failure messages. */
  constructor(net: TestNet, ns: string, cmd: string[], readonly label: string) {
    this.child = net.spawn(ns, cmd);
    this.stderr = new Response(this.child.stderr).text();
    this.#pump = this.#read();
  }

  async #read(): Promise<void> {
    let partial = "";
    try {
      for await (const chunk of this.child.stdout.pipeThrough(new TextDecoderStream())) {
        const parts = (partial + chunk).split("\n");
        partial = parts.pop()!;
        this.lines.push(...parts);
        this.#wake?.();
      }
    } catch {
      // the stream was cancelled by the cleanup
    }
    if (partial !== "") this.lines.push(partial);
    this.#eof = true;
    this.#wake?.();
  }

  get pid(): number {
    return this.child.pid;
  }

  /**
   * Wait until `count` stdout lines from line `index` on match; returns them.
   * Throws (with stdout and, after the exit, stderr) on timeout or exit.
   */
  async waitLines(match: LineMatch, count = 1, ms = 30000, index = 0): Promise<string[]> {
    const deadline = Date.now() + ms;
    for (;;) {
      const hits = this.lines.slice(index).filter((l) => test(match, l));
      if (hits.length >= count) return hits;
      const left = deadline - Date.now();
      if (this.#eof || left <= 0) break;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        this.#wake = r;
        timer = setTimeout(r, left);
      });
      this.#wake = null;
      clearTimeout(timer);
    }
    const st = this.#eof ? await this.child.status : undefined;
    throw new Error(
      `${this.label}: no ${count} line(s) matching ${match} (exit ${st?.code ?? "-"}); stdout:\n` +
        `${this.lines.join("\n")}\nstderr:\n${st ? await this.stderr : "(running)"}`,
    );
  }

  /** Wait until stdout line `index` or a later one matches; returns the first that does. */
  async waitLine(match: LineMatch, index = 0, ms = 30000): Promise<string> {
    return (await this.waitLines(match, 1, ms, index))[0];
  }

  /** Write `text` to the process's stdin. */
  async write(text: string): Promise<void> {
    const w = this.child.stdin.getWriter();
    try {
      await w.write(new TextEncoder().encode(text));
    } finally {
      w.releaseLock();
    }
  }

  /** Close stdin and wait for the exit; returns the status, all stdout lines and stderr. */
  async finish(): Promise<
    { code: number; signal: string | null; lines: string[]; stderr: string }
  > {
    await this.child.stdin.close().catch(() => undefined);
    const st = await this.child.status;
    await this.#pump;
    return { code: st.code, signal: st.signal, lines: this.lines, stderr: await this.stderr };
  }
}
