/**
 * The flow client commands (docs/COMPATIBILITY.md#control-protocol): `flow-set`, `flow-delete`,
 * `flow-list`, `flow-list-names` and their `trace-flow-*` counterparts. They
 * build a request (docs/COMPATIBILITY.md#control-protocol), send it to `$NFQLB_FLOW_ADDRESS` (default
 * `unix:nfqlb`) through an injected {@link Transport}, and print the reply.
 *
 * Deviations from 1.2.0 (docs/COMPATIBILITY.md#differences): `flow-set` / `trace-flow-set` check the
 * name rule first (`Invalid name`, #4); the whole reply is read and printed
 * (#9); `trace-flow-set` gets `OK` and exits 0 (#5, server side); the address
 * error ends with a newline (#21). Additionally any option value containing
 * a newline is refused (`<option> contains a newline`) because it would
 * inject request lines, and a text (NUL-terminated) reply to a list command
 * is printed as a text reply with exit 255. A reply that is not received whole (the connection
 * fails while it is read, or a list's JSON is cut short) prints nothing but an error, exit 1
 * ({@link ReplyError}). Before a change (`flow-set`, `flow-delete`,
 * `trace-flow-set`, `trace-flow-delete`) on a unix address the server's credentials are
 * checked: root or the client's own uid, else `Refusing to talk to the control server: ...`,
 * exit 1, nothing sent ({@link UntrustedServerError}; `tcp:` addresses are not checked).
 *
 * @example
 * ```ts
 * import { flowCommands } from "./flow_commands.ts";
 * const commands = flowCommands(async (_addr, _req) => new TextEncoder().encode("OK\0"));
 * commands.map((c) => c.name); // ["flow-set", "flow-delete", ...]
 * ```
 * @module
 */
import { type Action, buildRequest, decodeReply } from "../lib/flow/control_protocol.ts";
import { byteLength, checkName, type FlowFields } from "../lib/flow/parse.ts";
import { cAtoi } from "../lib/ccompat/cnum.ts";
import { parseSocketAddress, type SocketAddress } from "../lib/ccompat/sockaddr.ts";
import { type Command, die, type Invocation } from "./command.ts";
import {
  DEFAULT_FLOW_ADDRESS,
  deleterSpec,
  FLOW_ADDRESS_ENV,
  FLOW_SET_SPEC,
  listerSpec,
  namesListerSpec,
  TRACE_FLOW_SET_SPEC,
} from "./specs.ts";
import type { Io } from "../daemon/io.ts";
import { connectFailedHint } from "./address_hints.ts";
import { untrustedServerHint } from "../lib/hints/sockets.ts";
import { userNameOf } from "../daemon/user_names.ts";

/**
 * Sends one request and returns the whole reply, read until EOF. Throws
 * {@link TransportError} when it cannot connect, and {@link ReplyError} when reading the reply
 * fails (e.g. the server reset the connection) before a whole text reply (up to its NUL) came.
 */
export type Transport = (
  address: SocketAddress,
  request: Uint8Array,
  /** The request changes the daemon's state: check the server first (unix addresses). */
  change?: boolean,
) => Promise<Uint8Array>;

/**
 * The server of a unix address is neither root nor the client's uid (an impostor on
 * `@nfqlb`): nothing was sent.
 */
export class UntrustedServerError extends Error {
  /** The server process's uid and pid (`SO_PEERCRED`; -1 when unknown). */
  readonly uid: number;
  readonly pid: number;
  constructor(uid: number, pid: number, expected: number) {
    super(
      `Refusing to talk to the control server: owned by uid ${uid} (pid ${pid}), ` +
        `expected root or uid ${expected}`,
    );
    this.name = "UntrustedServerError";
    this.uid = uid;
    this.pid = pid;
  }
}

/** Actions that change the daemon's state. */
const CHANGES: ReadonlySet<Action> = new Set<Action>([
  "set",
  "delete",
  "trace-set",
  "trace-delete",
]);

/** A connection failure; `message` is the `strerror` text, e.g. `Connection refused`. */
export class TransportError extends Error {
  constructor(strerror: string) {
    super(strerror);
    this.name = "TransportError";
  }
}

/**
 * The reply was not received whole: the connection failed while it was read, or a list reply
 * ended before its JSON did (the server gave up sending it). Nothing of it is printed.
 */
export class ReplyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ReplyError";
  }
}

/** Environment variable naming the flow server address; its default. */
export { DEFAULT_FLOW_ADDRESS, FLOW_ADDRESS_ENV };
/** Longest `--target` accepted by the client (bytes). */
export const MAX_TARGET_BYTES = 255;
/** Longest value of the list options accepted by the client (bytes). */
export const MAX_VALUE_BYTES = 1000;

/**
 * Runs after an `OK` to `flow-set`, with the flow's name, `--dsts` and the flowlb's address
 * (`$NFQLB_FLOW_ADDRESS` or the default): warnings on stderr.
 */
export type AfterSet = (
  io: Io,
  flow: string,
  dsts: string | undefined,
  address: string,
) => Promise<void>;

/**
 * The default {@link AfterSet}: `warnUnqueuedDsts` of `cli/namespace_rules.ts`, loaded only for
 * a flow with `--dsts` (without, there is nothing it could warn about).
 */
const warnUnqueuedDsts: AfterSet = async (io, flow, dsts, address) => {
  if (dsts === undefined) return;
  await (await import("./namespace_rules.ts")).warnUnqueuedDsts(io, flow, dsts, address);
};

/** Reads an environment variable (`undefined` when unset or not permitted). */
export type EnvLookup = (name: string) => string | undefined;

function defaultEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/** The list-valued options that `flow-set` / `trace-flow-set` bound to 1000 bytes. */
const LIST_OPTIONS = ["protocols", "dsts", "srcs", "dports", "sports", "match"] as const;

/** The shared client steps: address, transport, and the failure messages of docs/COMPATIBILITY.md#control-protocol. */
async function send(
  transport: Transport,
  env: EnvLookup,
  action: Action,
  fields: FlowFields,
): Promise<Uint8Array> {
  for (const [key, value] of Object.entries(fields)) {
    if (typeof value === "string" && value.includes("\n")) die(`${key} contains a newline`);
  }
  const fromEnv = env(FLOW_ADDRESS_ENV);
  const text = fromEnv ?? DEFAULT_FLOW_ADDRESS;
  const address = parseSocketAddress(text);
  if (address === undefined) die(`Failed to parse address [${text}]\n`);
  try {
    return await transport(address, buildRequest(action, fields), CHANGES.has(action));
  } catch (e) {
    if (e instanceof TransportError) {
      die(
        `Connect failed. ${e.message}\n${
          connectFailedHint(text, fromEnv !== undefined, e.message)
        }`,
      );
    }
    if (e instanceof UntrustedServerError) {
      die(e.uid < 0 ? e.message : `${e.message}\n${untrustedServerHint(e.uid, userNameOf(e.uid))}`);
    }
    if (e instanceof ReplyError) die(e.message);
    throw e;
  }
}

/**
 * Print a text reply (up to its NUL) + newline; exit 0 if it starts with
 * `OK`, else 255. No reply at all prints nothing (exit 255), as in 1.2.0,
 * which prints only when its read returned bytes (a lone NUL prints "\n"). The reply's note
 * (D65: the cause and the fix of a failure, or why an `OK` did nothing) goes to stderr as
 * `<command>: <note>`, so stdout stays 1.2.0's.
 */
function printTextReply(inv: Invocation, reply: Uint8Array, command: string): number {
  if (reply.length === 0) return 255;
  const { text, note } = decodeReply(reply);
  inv.io.out(text + "\n");
  if (note !== undefined && note !== "") inv.io.err(`${command}: ${note}\n`);
  return text.startsWith("OK") ? 0 : 255;
}

/**
 * Whether a list reply is whole: valid JSON, or (a 1.2.0 daemon prints names unescaped, D4, so its
 * JSON may not parse) a text that ends with the bracket closing its first one — a reply cut short
 * ends inside the list.
 */
function looksWhole(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    const t = text.trim();
    return (t.startsWith("[") && t.endsWith("]")) || (t.startsWith("{") && t.endsWith("}"));
  }
}

/**
 * Print a JSON reply verbatim (exit 0); a NUL-terminated text reply is an error (255); no reply
 * prints nothing (exit 0, as 1.2.0: a list of an unknown name). A reply that is not whole
 * ({@link looksWhole}) was cut short (the server gave up sending it, e.g. at its reply deadline,
 * and a unix socket cannot say so): nothing is printed, exit 1.
 */
function printListReply(inv: Invocation, reply: Uint8Array): number {
  const { text, terminated } = decodeReply(reply);
  if (terminated) {
    inv.io.out(text + "\n");
    return 255;
  }
  if (text !== "" && !looksWhole(text)) {
    die(
      `Reply incomplete: the server closed the connection after ${reply.length} bytes, ` +
        "before the end of the list (nothing printed)",
    );
  }
  inv.io.out(text);
  return 0;
}

/** A name as a message shows it: quoted, its first 64 characters (a too long one is 1 KiB+). */
function shownName(name: string): string {
  return name.length > 64 ? `${JSON.stringify(name.slice(0, 64))}...` : JSON.stringify(name);
}

/** The client checks of `flow-set` / `trace-flow-set` (docs/COMPATIBILITY.md#control-protocol, in order), with the name rule first. */
function checkSetOptions(opts: ReadonlyMap<string, string>, withTarget: boolean): string[] {
  const warnings: string[] = [];
  const nameError = checkName(opts.get("name"));
  if (nameError !== undefined) {
    die(
      `${nameError}\n  --name=${shownName(opts.get("name") ?? "")}: a flow name is 1 to 1023 ` +
        "bytes of letters, digits, '-', '+' and '_'",
    );
  }
  if (withTarget && byteLength(opts.get("target") ?? "") > MAX_TARGET_BYTES) {
    die("target too long");
  }
  for (const key of LIST_OPTIONS) {
    const v = opts.get(key);
    if (v !== undefined && byteLength(v) > MAX_VALUE_BYTES) die(`${key} too long`);
  }
  const protocols = opts.get("protocols");
  if (withTarget && opts.has("udpencap")) {
    if (protocols === undefined) die("udpencap specified without protocols");
    if (!protocols.toLowerCase().includes("sctp")) die("udpencap specified without sctp");
  }
  if ((opts.has("dports") || opts.has("sports")) && protocols === undefined) {
    die(
      "ports specified without protocols\n" +
        "  ports select tcp, udp or sctp packets: give --protocols too (e.g. --protocols=tcp)",
    );
  }
  const prio = opts.get("prio");
  // C's isspace, not JS's \s; and a number atoi would wrap (it reads 32 bits).
  const number = prio !== undefined && /^[ \t\n\v\f\r]*[+-]?\d+$/.test(prio) &&
    Number(prio.trim()) === cAtoi(prio);
  if (prio !== undefined && !number) {
    // 1.2.0 reads it with atoi (abc is 0, 1O is 1): still sent as given, but said.
    warnings.push(
      `warning: --prio=${prio} is not a number in -2147483648..2147483647: read as ${
        cAtoi(prio)
      } (as 1.2.0's atoi does)`,
    );
  }
  return warnings;
}

/** The selector fields given on the command line. */
function selectorFields(opts: ReadonlyMap<string, string>): FlowFields {
  return {
    protocols: opts.get("protocols"),
    dsts: opts.get("dsts"),
    srcs: opts.get("srcs"),
    dports: opts.get("dports"),
    sports: opts.get("sports"),
    match: opts.get("match"),
  };
}

/**
 * The eight flow client commands, in the order `flow-set`, `flow-delete`,
 * `flow-list`, `flow-list-names`, `trace-flow-set`, `trace-flow-delete`,
 * `trace-flow-list`, `trace-flow-list-names`, sending through `transport`.
 * `env` reads `NFQLB_FLOW_ADDRESS` (default: the process environment); `afterSet` runs after an
 * `OK` to `flow-set` (default: warn about dsts no NFQUEUE rule queues).
 */
export function flowCommands(
  transport: Transport,
  env: EnvLookup = defaultEnv,
  afterSet: AfterSet = warnUnqueuedDsts,
): Command[] {
  const request = (action: Action, fields: FlowFields) => send(transport, env, action, fields);

  const flowSet: Command = {
    ...FLOW_SET_SPEC,
    async run(inv) {
      const warnings = checkSetOptions(inv.opts, true);
      const o = inv.opts;
      const fields: FlowFields = {
        name: o.get("name"),
        target: o.get("target"),
        priority: o.get("prio"),
        ...selectorFields(o),
        udpencap: o.get("udpencap"),
      };
      const code = printTextReply(inv, await request("set", fields), "flow-set");
      // Said once the request went (a request that cannot be sent says only why).
      for (const w of warnings) inv.io.err(`${w}\n`);
      if (code === 0) {
        const address = env(FLOW_ADDRESS_ENV) ?? DEFAULT_FLOW_ADDRESS;
        await afterSet(inv.io, o.get("name")!, o.get("dsts"), address);
      }
      return code;
    },
  };

  const traceSet: Command = {
    ...TRACE_FLOW_SET_SPEC,
    async run(inv) {
      checkSetOptions(inv.opts, false);
      const fields: FlowFields = { name: inv.opts.get("name"), ...selectorFields(inv.opts) };
      return printTextReply(inv, await request("trace-set", fields), "trace-flow-set");
    },
  };

  const deleter = (name: string, action: Action, what: string): Command => ({
    ...deleterSpec(name, what),
    async run(inv) {
      return printTextReply(inv, await request(action, { name: inv.opts.get("name") }), name);
    },
  });

  const lister = (name: string, action: Action, what: string): Command => ({
    ...listerSpec(name, what),
    async run(inv) {
      return printListReply(inv, await request(action, { name: inv.opts.get("name") }));
    },
  });

  const namesLister = (name: string, action: Action, what: string): Command => ({
    ...namesListerSpec(name, what),
    async run(inv) {
      return printListReply(inv, await request(action, {}));
    },
  });

  return [
    flowSet,
    deleter("flow-delete", "delete", "flow"),
    lister("flow-list", "list", "flow"),
    namesLister("flow-list-names", "list-names", "flow"),
    traceSet,
    deleter("trace-flow-delete", "trace-delete", "trace flow"),
    lister("trace-flow-list", "trace-list", "trace flow"),
    namesLister("trace-flow-list-names", "trace-list-names", "trace flow"),
  ];
}
