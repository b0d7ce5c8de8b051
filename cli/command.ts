/**
 * The sub-command framework: option declarations, `--help` text, required
 * options, fatal errors ("die", and the daemon layer's `DaemonError`s) and
 * exit codes, all as nfqlb 1.2.0 prints them (docs/COMPATIBILITY.md#command-line). Commands write
 * through an {@link Io} so they can be run in-process by tests.
 * @module
 */
import { getopt } from "../lib/ccompat/getopt.ts";
import { nearestName } from "../lib/hints/nearest.ts";
import { DaemonError } from "../daemon/errors.ts";
import type { Io } from "../daemon/io.ts";

export type { Io };

/** One option of a command. */
export interface OptionDecl {
  /** Name without dashes. */
  readonly name: string;
  /** Text of the `--help` line. */
  readonly desc: string;
  /** Reported as `Missing option [--name]` when absent. */
  readonly required?: boolean;
  /** A flag: takes no value. */
  readonly flag?: boolean;
}

/** Parsed options (last occurrence wins) and positional arguments. */
export interface Invocation {
  readonly opts: ReadonlyMap<string, string>;
  readonly args: readonly string[];
  readonly io: Io;
}

/** A sub-command. */
export interface Command {
  /** The name typed after `nfqlb`. */
  readonly name: string;
  /** First lines of `--help`, before the option lines. */
  readonly help: string;
  /**
   * Options in declaration order. `--help` is accepted first (it is first in
   * 1.2.0's tables, which matters for ambiguous prefixes) but has no help line.
   */
  readonly options: readonly OptionDecl[];
  /** Do the work; returns the exit status. */
  run(inv: Invocation): number | Promise<number>;
}

/** A fatal error: its message goes to stderr and the command exits with `status`. */
export class Fatal extends Error {
  /** Exit status. */
  readonly status: number;
  constructor(message: string, status = 1) {
    super(message);
    this.name = "Fatal";
    this.status = status;
  }
}

/** Abort the command with `message` on stderr and exit status 1 ("die" in 1.2.0). */
export function die(message: string): never {
  throw new Fatal(message);
}

const HELP_OPTION: OptionDecl = { name: "help", desc: "Print this help", flag: true };

/**
 * The `--help` text of a command: the header, then one line per option
 * except `--help` itself, `  --<name>= <desc> <"(required)" or "">`
 * (`docs/COMPATIBILITY.md#command-line`).
 */
export function helpText(cmd: Command): string {
  const lines = [cmd.help.replace(/\n$/, "")];
  for (const o of cmd.options) {
    lines.push(`  --${o.name}= ${o.desc} ${o.required ? "(required)" : ""}`);
  }
  return lines.join("\n") + "\n";
}

/** Parse `args` for `cmd` and run it; returns the exit status. */
export async function runCommand(cmd: Command, args: readonly string[], io: Io): Promise<number> {
  const decls = [HELP_OPTION, ...cmd.options];
  const specs = decls.map((d) => ({ name: d.name, hasArg: !d.flag }));
  const scan = getopt(cmd.name, specs, args);
  if (scan.options.some(([name]) => name === "help")) {
    io.out(helpText(cmd));
    return 0;
  }
  if (scan.error !== undefined) {
    io.err(scan.error + "\n" + unknownOptionHint(cmd, scan.unknown));
    return 1;
  }
  const opts = new Map(scan.options);
  const missing = cmd.options.filter((o) => o.required && !opts.has(o.name));
  if (missing.length > 0) {
    io.err(missing.map((o) => `Missing option [--${o.name}]\n`).join(""));
    return 1;
  }
  try {
    return await cmd.run({ opts, args: scan.positionals, io });
  } catch (e) {
    if (e instanceof Fatal) {
      io.err(withNewline(e.message));
      return e.status;
    }
    // A start-up failure of the daemon layer: its one-line message, exit 1 as a die.
    if (e instanceof DaemonError) {
      io.err(withNewline(e.message) + (e.hint === undefined ? "" : withNewline(e.hint)));
      return 1;
    }
    throw e;
  }
}

/**
 * The line after getopt's `unrecognized option` error: the nearest option of `cmd`
 * (`-`/`_` confusion, a small typo) or where the options are listed.
 */
export function unknownOptionHint(cmd: Command, unknown: string | undefined): string {
  if (unknown === undefined) return "";
  const near = nearestName(unknown, cmd.options.map((o) => o.name));
  return near !== undefined
    ? `  did you mean --${near}? (nfqlb ${cmd.name} --help lists its options)\n`
    : `  nfqlb ${cmd.name} --help lists its options\n`;
}

function withNewline(message: string): string {
  return message.endsWith("\n") ? message : message + "\n";
}
