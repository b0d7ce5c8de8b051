/**
 * The command table and top-level dispatch of `nfqlb <command> [opt...]`
 * (docs/COMPATIBILITY.md#command-line). The table holds each command's spec (`specs.ts`: what
 * the usage text, `--help` and the option parser need) and loads the module that does its work
 * only when it runs: a command costs the start-up of its own modules, not of all of them
 * (`bench/cli_startup.ts`).
 * @module
 */
import { type Command, helpText, type Io, runCommand } from "./command.ts";
import { nearestName } from "../lib/hints/nearest.ts";
import {
  ACTIVATE_SPEC,
  type CommandSpec,
  DEACTIVATE_SPEC,
  DELETE_SPEC,
  deleterSpec,
  DOCTOR_SPEC,
  FLOW_SET_SPEC,
  FLOWLB_SPEC,
  FWMARK_SPEC,
  INIT_SPEC,
  LB_SPEC,
  listerSpec,
  LOGLEVEL_SPEC,
  namesListerSpec,
  PRIMEBELOW_SPEC,
  RULESET_SPEC,
  SHOW_SPEC,
  STATS_SPEC,
  TRACE_FLOW_SET_SPEC,
  TRACE_SPEC,
  VERSION_SPEC,
} from "./specs.ts";

/**
 * A command whose work is loaded when it runs: `load` imports its module (only then: a command
 * loads what it needs, not every command's code) and gives the command built from `spec`.
 */
function lazy(spec: CommandSpec, load: () => Promise<Command>): Command {
  return { ...spec, run: async (inv) => (await load()).run(inv) };
}

/** A flow client command by name, sending through the socket transport. */
async function flow(name: string): Promise<Command> {
  const [{ flowCommands }, { socketTransport }] = await Promise.all([
    import("./flow_commands.ts"),
    import("./flow_transport.ts"),
  ]);
  const c = flowCommands(socketTransport).find((c) => c.name === name);
  if (c === undefined) throw new Error(`no flow command ${name}`);
  return c;
}

const table = () => import("./table.ts");
const basic = () => import("./basic.ts");
const statsLoglevel = () => import("./stats_loglevel.ts");

/** All commands, in the order the usage text lists them. */
export const COMMANDS: readonly Command[] = [
  lazy(ACTIVATE_SPEC, async () => (await table()).activateCommand),
  lazy(DEACTIVATE_SPEC, async () => (await table()).deactivateCommand),
  lazy(VERSION_SPEC, async () => (await basic()).versionCommand),
  lazy(FLOW_SET_SPEC, () => flow("flow-set")),
  lazy(deleterSpec("flow-delete", "flow"), () => flow("flow-delete")),
  lazy(listerSpec("flow-list", "flow"), () => flow("flow-list")),
  lazy(namesListerSpec("flow-list-names", "flow"), () => flow("flow-list-names")),
  lazy(FLOWLB_SPEC, async () => (await import("./flowlb.ts")).flowlbCommand),
  lazy(FWMARK_SPEC, async () => (await import("./fwmark.ts")).fwmarkCommand),
  lazy(LB_SPEC, async () => (await import("./lb.ts")).lbCommand),
  lazy(INIT_SPEC, async () => (await table()).initCommand),
  lazy(DELETE_SPEC, async () => (await table()).deleteCommand),
  lazy(SHOW_SPEC, async () => (await table()).showCommand),
  lazy(STATS_SPEC, async () => (await statsLoglevel()).statsCommand),
  lazy(PRIMEBELOW_SPEC, async () => (await basic()).primebelowCommand),
  lazy(TRACE_SPEC, async () => (await import("./trace.ts")).traceCommand),
  lazy(LOGLEVEL_SPEC, async () => (await statsLoglevel()).loglevelCommand),
  lazy(TRACE_FLOW_SET_SPEC, () => flow("trace-flow-set")),
  lazy(deleterSpec("trace-flow-delete", "trace flow"), () => flow("trace-flow-delete")),
  lazy(listerSpec("trace-flow-list", "trace flow"), () => flow("trace-flow-list")),
  lazy(namesListerSpec("trace-flow-list-names", "trace flow"), () => flow("trace-flow-list-names")),
  lazy(DOCTOR_SPEC, async () => (await import("./doctor.ts")).doctorCommand),
  lazy(RULESET_SPEC, async () => (await import("./ruleset.ts")).rulesetCommand),
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
