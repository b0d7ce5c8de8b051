/**
 * The command table and top-level dispatch of `nfqlb <command> [opt...]`
 * (docs/COMPATIBILITY.md#command-line).
 * @module
 */
import { type Command, helpText, type Io, runCommand } from "./command.ts";
import { nearestName } from "../lib/hints/nearest.ts";
import { primebelowCommand, versionCommand } from "./basic.ts";
import { traceCommand } from "./trace.ts";
import { flowCommands } from "./flow_commands.ts";
import { socketTransport } from "./flow_transport.ts";
import { flowlbCommand } from "./flowlb.ts";
import { fwmarkCommand } from "./fwmark.ts";
import { doctorCommand } from "./doctor.ts";
import { rulesetCommand } from "./ruleset.ts";
import { lbCommand } from "./lb.ts";
import { loglevelCommand, statsCommand } from "./stats_loglevel.ts";
import {
  activateCommand,
  deactivateCommand,
  deleteCommand,
  initCommand,
  showCommand,
} from "./table.ts";

const flowClient = new Map(flowCommands(socketTransport).map((c) => [c.name, c]));

/** A flow client command by name. */
function flow(name: string): Command {
  const c = flowClient.get(name);
  if (c === undefined) throw new Error(`no flow command ${name}`);
  return c;
}

/** All commands, in the order the usage text lists them. */
export const COMMANDS: readonly Command[] = [
  activateCommand,
  deactivateCommand,
  versionCommand,
  flow("flow-set"),
  flow("flow-delete"),
  flow("flow-list"),
  flow("flow-list-names"),
  flowlbCommand,
  fwmarkCommand,
  lbCommand,
  initCommand,
  deleteCommand,
  showCommand,
  statsCommand,
  primebelowCommand,
  traceCommand,
  loglevelCommand,
  flow("trace-flow-set"),
  flow("trace-flow-delete"),
  flow("trace-flow-list"),
  flow("trace-flow-list-names"),
  doctorCommand,
  rulesetCommand,
];

/** The top-level usage text. */
export function usage(prog: string): string {
  return `Usage: ${prog} <command> [opt...]\nCommands:\n` +
    COMMANDS.map((c) => `  ${c.name}\n`).join("");
}

/** The line after the usage list on stderr when `nfqlb` is run with no arguments. */
export const NO_ARGS_HINT =
  "nfqlb help <command> (or nfqlb <command> --help) describes a command\n";

/** Run `nfqlb` with `argv` (without the program name); returns the exit status. */
export function main(prog: string, argv: readonly string[], io: Io): Promise<number> {
  if (argv.length === 0 || argv[0] === "-h" || argv[0] === "--help") {
    io.out(usage(prog));
    // Bare `nfqlb`: where the commands' own help is (stderr: stdout stays 1.2.0's list).
    if (argv.length === 0) io.err(NO_ARGS_HINT);
    return Promise.resolve(0);
  }
  if (argv[0] === "help") return Promise.resolve(help(prog, argv[1], io));
  const cmd = COMMANDS.find((c) => c.name === argv[0]);
  if (cmd === undefined) {
    io.err(unknownCommand(argv[0]));
    return Promise.resolve(1);
  }
  return runCommand(cmd, argv.slice(1), io);
}

/**
 * 1.2.0's `Unknown command [<name>]`, then the nearest command (`flowset` → `flow-set`) or
 * where the commands are listed.
 */
export function unknownCommand(name: string): string {
  const near = nearestName(name, COMMANDS.map((c) => c.name));
  return `Unknown command [${name}]\n` +
    (near !== undefined
      ? `  did you mean ${near}? (nfqlb help lists the commands)\n`
      : "  nfqlb help lists the commands\n");
}

/** `nfqlb help`: the command list; `nfqlb help <command>`: that command's `--help` text. */
function help(prog: string, name: string | undefined, io: Io): number {
  if (name === undefined) {
    io.out(usage(prog));
    return 0;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (cmd === undefined) {
    io.err(unknownCommand(name));
    return 1;
  }
  io.out(helpText(cmd));
  return 0;
}
