/**
 * What every command is before it runs: its name, its `--help` header and its options
 * (docs/COMPATIBILITY.md#command-line). The command table (`cli/main.ts`) needs only these to
 * list the commands, parse a command line and print `--help`; the code that does a command's
 * work is loaded when the command runs, so one command does not load all the others. Each
 * command module builds its {@link Command} from its spec here.
 * @module
 */
import type { Command, OptionDecl } from "./command.ts";
import { daemonOptions } from "../daemon/options.ts";
import { TRACE_SELECTION } from "../lib/trace/mask.ts";

/** A command without its work: name, `--help` header, options. */
export type CommandSpec = Omit<Command, "run">;

/** Environment variable naming the flow server address. */
export const FLOW_ADDRESS_ENV = "NFQLB_FLOW_ADDRESS";
/** Default flow server address. */
export const DEFAULT_FLOW_ADDRESS = "unix:nfqlb";
/** Default target-table name. */
export const DEFAULT_SHM = "nfqlb";

// ---- version, primebelow (cli/basic.ts)

/** `version [--verbose]`. */
export const VERSION_SPEC: CommandSpec = {
  name: "version",
  help: "version [--verbose]\n  Print the version (--verbose: also the implementation and Deno's).",
  options: [{
    name: "verbose",
    desc: "Also print the implementation and Deno versions",
    flag: true,
  }],
};

/** `primebelow <n>`. */
export const PRIMEBELOW_SPEC: CommandSpec = {
  name: "primebelow",
  help: "primebelow <n>\n  Print the largest prime <= n (at most 993997, the largest M).",
  options: [],
};

// ---- target tables (cli/table.ts)

const shmOption: OptionDecl = { name: "shm", desc: `Shared memory name (default ${DEFAULT_SHM})` };

/** `init`. */
export const INIT_SPEC: CommandSpec = {
  name: "init",
  help: "init [--shm=NAME] [--M=m] [--N=n] [--ownfw=f]\n" +
    "  Create or overwrite a Maglev target table in shared memory (all targets inactive).",
  // 1.2.0's declaration order, which its --help lists.
  options: [
    { name: "ownfw", desc: "Own fwmark, for an LB-tier table (default 0)" },
    shmOption,
    { name: "N", desc: "Number of target slots, <= M (default 32)" },
    { name: "M", desc: "Lookup table size, adjusted down to a prime (default 997)" },
  ],
};

/** `delete --shm=NAME`. */
export const DELETE_SPEC: CommandSpec = {
  name: "delete",
  help: "delete --shm=NAME\n  Remove a shared memory object.",
  options: [{ name: "shm", desc: "Shared memory name", required: true }],
};

/** `show [--shm=NAME]`. */
export const SHOW_SPEC: CommandSpec = {
  name: "show",
  help: "show [--shm=NAME]\n  Print a target table.",
  options: [shmOption],
};

/** `activate`. */
export const ACTIVATE_SPEC: CommandSpec = {
  name: "activate",
  help: "activate [--shm=NAME] [--index=i] <fwmark>...\n" +
    "  Activate targets. With --index, set slot i to the (first) fwmark. Warns (stderr) about a\n" +
    "  fwmark no `ip rule` of this namespace routes.",
  options: [shmOption, { name: "index", desc: "Slot index to set" }],
};

/** `deactivate`. */
export const DEACTIVATE_SPEC: CommandSpec = {
  name: "deactivate",
  help: "deactivate [--shm=NAME] [--index=i] <fwmark>...\n" +
    "  Deactivate targets by fwmark, or the slot given by --index.",
  options: [shmOption, { name: "index", desc: "Slot index to deactivate" }],
};

// ---- flow client (cli/flow_commands.ts)

const opt = (name: string, desc: string, required = false): OptionDecl => ({
  name,
  desc,
  required,
});
const NAME_REQUIRED = opt("name", "Flow name", true);
const SELECTOR_OPTIONS: readonly OptionDecl[] = [
  opt("protocols", "Protocols, tcp, udp, sctp (comma separated)"),
  opt("dsts", "Destination CIDRs (comma separated)"),
  opt("srcs", "Source CIDRs (comma separated)"),
  opt("dports", "Destination ports and ranges, e.g. 80,1000-2000"),
  opt("sports", "Source ports and ranges"),
  opt("match", "Byte-match statements, e.g. 'tcp[2:2]=5001'"),
];

/** `flow-set`. */
export const FLOW_SET_SPEC: CommandSpec = {
  name: "flow-set",
  help: "flow-set --name=NAME --target=SHM [--prio=N] [selectors...] [--udpencap=PORT]\n" +
    "  Define or redefine a flow in a running flowlb. Warns (stderr) about --dsts that no\n" +
    "  NFQUEUE rule of this namespace queues.",
  options: [
    NAME_REQUIRED,
    opt("target", "Shared memory name of the target table", true),
    opt("prio", "Priority, higher is matched first (default 0)"),
    ...SELECTOR_OPTIONS,
    opt("udpencap", "UDP port carrying encapsulated SCTP"),
  ],
};

/** `trace-flow-set`. */
export const TRACE_FLOW_SET_SPEC: CommandSpec = {
  name: "trace-flow-set",
  help: "trace-flow-set --name=NAME [selectors...]\n" +
    "  Define or redefine a trace flow in a running flowlb.",
  options: [NAME_REQUIRED, ...SELECTOR_OPTIONS],
};

/** `flow-delete` / `trace-flow-delete`: delete one `what` by name. */
export function deleterSpec(name: string, what: string): CommandSpec {
  return {
    name,
    help: `${name} --name=NAME\n  Delete a ${what} from a running flowlb.`,
    options: [NAME_REQUIRED],
  };
}

/** `flow-list` / `trace-flow-list`: list the `what`s (or one). */
export function listerSpec(name: string, what: string): CommandSpec {
  return {
    name,
    help: `${name} [--name=NAME]\n  List the ${what}s of a running flowlb (JSON).`,
    options: [opt("name", `Only this ${what}`)],
  };
}

/** `flow-list-names` / `trace-flow-list-names`: list the names of the `what`s. */
export function namesListerSpec(name: string, what: string): CommandSpec {
  return {
    name,
    help: `${name}\n  List the ${what} names of a running flowlb (JSON).`,
    options: [],
  };
}

// ---- daemons (cli/lb.ts, cli/flowlb.ts)

/** `lb [options]`. */
export const LB_SPEC: CommandSpec = {
  name: "lb",
  help: "lb [options]\n" +
    "  Load-balance packets from NFQUEUE: ACCEPT with the fwmark of the target that the\n" +
    "  Maglev table in --tshm selects for the packet's 5-tuple hash. Stop with SIGTERM/SIGINT.",
  options: daemonOptions("lb"),
};

/** `flowlb [options]`. */
export const FLOWLB_SPEC: CommandSpec = {
  name: "flowlb",
  help: "flowlb [options]\n" +
    "  Classify packets from NFQUEUE by flow (see flow-set) and load-balance each with its\n" +
    `  flow's target table. Flow commands connect to ${FLOW_ADDRESS_ENV} (default\n` +
    `  ${DEFAULT_FLOW_ADDRESS}). Stop with SIGTERM/SIGINT.`,
  options: daemonOptions("flowlb"),
};

// ---- the rest

/** `fwmark` (cli/fwmark.ts). */
export const FWMARK_SPEC: CommandSpec = {
  name: "fwmark",
  help: "fwmark [--shm=NAME] [--proto=tcp|udp|sctp] --src=ADDR --dst=ADDR [--hash_mode=h]\n" +
    "  Compute the hash and fwmark for an address pair (a.b.c.d:port or [ipv6]:port).",
  options: [
    { name: "shm", desc: "Target table; when given, also look up the fwmark" },
    { name: "proto", desc: "tcp, udp or sctp; without it only the addresses are hashed" },
    { name: "src", desc: "Source address:port", required: true },
    { name: "dst", desc: "Destination address:port", required: true },
    { name: "hash_mode", desc: "1 (default): SCTP hashes only the ports" },
  ],
};

/** `stats [--ft_shm=NAME]` (cli/stats_loglevel.ts). */
export const STATS_SPEC: CommandSpec = {
  name: "stats",
  help: "stats [--ft_shm=NAME]\n  Print the fragment-table statistics of a running lb/flowlb,\n" +
    "  then the counters of its fast path (--fastpath), if it runs one.",
  options: [{ name: "ft_shm", desc: "Fragment statistics shm name (default ftshm)" }],
};

/** `loglevel [level]` (cli/stats_loglevel.ts). */
export const LOGLEVEL_SPEC: CommandSpec = {
  name: "loglevel",
  help: "loglevel [level]\n" +
    "  Show or set the log level of running daemons (4 warning, 5 notice, 6 info, 7 debug).\n" +
    "  The level is host-wide: every daemon that maps the same /dev/shm object takes it,\n" +
    "  in any network namespace (NFQLB_TRACE_SHM names another object).",
  options: [],
};

/** `trace` (cli/trace.ts). */
export const TRACE_SPEC: CommandSpec = {
  name: "trace",
  help: "trace (--mask=M | --selection=LIST) [--trace_address=ADDR]\n" +
    "  Set the trace mask of running daemons and print their trace output until they\n" +
    `  close the stream. Selection names: ${Object.keys(TRACE_SELECTION).join(",")}.\n` +
    "  The mask is host-wide: every daemon that maps the same /dev/shm object traces with it,\n" +
    "  in any network namespace (NFQLB_TRACE_SHM names another object).",
  options: [
    { name: "mask", desc: "Trace mask (C strtol: decimal, 0x hex, 0 octal)" },
    { name: "selection", desc: "Comma-separated trace names" },
    { name: "trace_address", desc: "Trace server address (default unix:nfqlb-trace)" },
  ],
};

/** `doctor` (cli/doctor.ts). */
export const DOCTOR_SPEC: CommandSpec = {
  name: "doctor",
  help:
    "doctor [--netns=NAME] [--vip=VIP,...] [--queue=N|first:last] [--tun=NAME] [--tshm=NAME]\n" +
    "  Check this network namespace (or NAME) for what breaks a stateless load balancer:\n" +
    "  conntrack reassembly, bridge netfilter, rp_filter, fwmark_reflect, queues without a\n" +
    "  listener, VIPs and flowlb flows without a queue rule, the tun device, fwmarks without\n" +
    "  an ip rule and route per family, GRO/LRO, /dev/shm space. One PASS/FAIL/SKIP line per\n" +
    "  check with the fix; SKIP: the check could not run (why); exit 1 if any fails.",
  options: [
    { name: "netns", desc: "Run the checks in network namespace NAME (ip netns)" },
    { name: "vip", desc: "VIPs that must be sent to NFQUEUE, comma-separated" },
    {
      name: "queue",
      desc:
        "The daemon's queues (default: those bound in this namespace; lb/flowlb default to 2, " +
        "`ruleset` to 0:3: give them all the same --queue)",
    },
    { name: "tun", desc: "tun device the daemon re-injects fragments through" },
    { name: "tshm", desc: "Target table whose active fwmarks need an ip rule and a route" },
    { name: "ft_shm", desc: "Fragment statistics of the daemon (default ftshm)" },
    { name: "json", desc: "Print the results as JSON", flag: true },
  ],
};

/** `ruleset` (cli/ruleset.ts). */
export const RULESET_SPEC: CommandSpec = {
  name: "ruleset",
  help: "ruleset --vip=VIP[,VIP...] [--queue=N|first:last] [--style=iptables|nft] [--fastpath]\n" +
    "        [--apply [--replace]|--delete]\n" +
    "  [--tshm=NAME]\n" +
    "  Print (or apply, or remove) the rules that send the VIPs' traffic to the queues:\n" +
    "  prerouting to NFQUEUE, locally generated ICMP to the VIPs too, and the VIPs exempted\n" +
    "  from conntrack (notrack). --apply adds the VIPs that are missing and keeps the others;\n" +
    "  it refuses queues other than those of the rules in place (--replace: the rules become\n" +
    "  exactly this request). --delete removes the VIPs given. Both print a line per VIP.\n" +
    "  A queue range is chosen by a hash of the packet's addresses, not its ports: all of one\n" +
    "  client's packets to a VIP go to one queue. To spread them by the receiving CPU instead,\n" +
    "  add --queue-cpu-fanout to the printed iptables rules (nft: `queue num 0-3 fanout`).",
  options: [
    { name: "vip", desc: "VIPs (or prefixes), comma-separated", required: true },
    {
      name: "queue",
      desc: "NFQUEUE number N or range first:last (default 0:3; lb, flowlb and doctor default " +
        "to 2: give them the same --queue)",
    },
    {
      name: "style",
      desc: "iptables (default) or nft (needs a kernel with the nft queue expression)",
    },
    { name: "tun", desc: "tun device of lb/flowlb --tun (its rp_filter must not be strict)" },
    { name: "tshm", desc: "Also print the policy routing for this table's active fwmarks" },
    {
      name: "fastpath",
      desc: "For lb/flowlb --fastpath: queue only packets not yet marked",
      flag: true,
    },
    { name: "apply", desc: "Apply the rules in this network namespace", flag: true },
    {
      name: "replace",
      desc: "With --apply: remove VIPs not given, change the queues of those given",
      flag: true,
    },
    { name: "delete", desc: "Remove the rules of the VIPs given", flag: true },
  ],
};
