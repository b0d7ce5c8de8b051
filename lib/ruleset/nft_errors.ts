/**
 * What `nft -f` errors mean for `nfqlb ruleset --style=nft`: a kernel without the nf_tables
 * queue expression (`nft_queue`) refuses every `queue` statement with "Could not process rule:
 * No such file or directory", which says nothing of the cause; this turns that into one line
 * with the fix and a short excerpt of nft's own words.
 *
 * @example
 * ```ts
 * import { explainNftError } from "./nft_errors.ts";
 * explainNftError(
 *   "/dev/stdin:13:31-42: Error: Could not process rule: No such file or directory\n" +
 *     "\t\tip daddr @ipv4-vips counter queue to 0-3\n\t\t^^^^\n",
 * ).split("\n")[0];
 * // "this kernel has no nft queue expression; use --style=iptables"
 * ```
 * @module
 */

const REFUSED = /Could not process rule: No such file or directory/;

/** Whether nft's error output is a refused `queue` statement (no `nft_queue` in the kernel). */
export function noNftQueue(stderr: string): boolean {
  const lines = stderr.split("\n");
  return lines.some((l, i) => REFUSED.test(l) && /\bqueue\b/.test(lines[i + 1] ?? ""));
}

/**
 * nft's error output as `ruleset` reports it: for a kernel without the queue expression, that
 * cause and the fix, then nft's first error (the error line and the rule) indented, and how many
 * more there were; any other error as nft printed it.
 */
export function explainNftError(stderr: string): string {
  const text = stderr.trim();
  if (!noNftQueue(text)) return text;
  const lines = text.split("\n");
  const errors = lines.filter((l) => / Error: /.test(l)).length;
  const first = lines.findIndex((l) => REFUSED.test(l));
  const excerpt = lines.slice(first, first + 2).map((l) => `  nft: ${l.trim()}`).join("\n");
  return "this kernel has no nft queue expression; use --style=iptables\n" + excerpt +
    (errors > 1 ? `\n  (and ${errors - 1} more error(s) like it)` : "");
}
