/**
 * The shell blocks of a Markdown document that a test runs as written: a fenced code block right
 * after an HTML comment `<!-- KIND: NAME -->` (blank lines between them allowed). README.md marks
 * its worked configuration so (`<!-- worked-config: lb -->`), and tests/e2e/readme_config_test.ts
 * runs those blocks instead of a copy of them.
 *
 * @example
 * ```ts
 * import { markedBlock } from "./readme_blocks.ts";
 * const fence = "`".repeat(3);
 * const md = `<!-- worked-config: lb -->\n\n${fence}sh\necho hi\n${fence}\n`;
 * markedBlock(md, "worked-config", "lb"); // "echo hi\n"
 * ```
 * @module
 */

/**
 * The text of the one fenced block marked `<!-- KIND: NAME -->` in `markdown` (without its fence
 * lines, ending in a newline). Throws when there is none, or more than one.
 */
export function markedBlock(markdown: string, kind: string, name: string): string {
  const re = new RegExp(
    `^<!-- ${escape(kind)}: ${
      escape(name)
    } -->\\n(?:[ \\t]*\\n)*(\`{3,})[^\\n]*\\n([\\s\\S]*?)^\\1[ \\t]*$`,
    "gm",
  );
  const hits = [...markdown.matchAll(re)];
  if (hits.length !== 1) {
    throw new Error(
      `${hits.length} fenced blocks marked <!-- ${kind}: ${name} --> (want exactly one)`,
    );
  }
  return hits[0][2];
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
