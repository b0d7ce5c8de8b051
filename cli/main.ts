/**
 * The command table and top-level dispatch of `nfqlb <command> [opt...]`
 * (docs/COMPATIBILITY.md#command-line).
 * @module
 */
import { type Command, type Io, runCommand } from "./command.ts";
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

/** Run `nfqlb` with `argv` (without the program name); returns the exit status. */
export function main(prog: string, argv: readonly string[], io: Io): Promise<number> {
  if (argv.length === 0 || argv[0] === "-h" || argv[0] === "--help") {
    io.out(usage(prog));
    return Promise.resolve(0);
  }
  const cmd = COMMANDS.find((c) => c.name === argv[0]);
  if (cmd === undefined) {
    io.err(`Unknown command [${argv[0]}]\n`);
    return Promise.resolve(1);
  }
  return runCommand(cmd, argv.slice(1), io);
}
