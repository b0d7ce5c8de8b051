/**
 * The notes `loglevel` and `trace` print on stderr about where the log level and the trace mask
 * live (docs/COMPATIBILITY.md D61): in one `/dev/shm` object that every nfqlb sharing that
 * `/dev/shm` reads, whatever its network namespace, so a `loglevel 7` typed in a namespace without
 * a daemon changes the daemon next door. Pure: the processes that map the object come in as data.
 *
 * @example
 * ```ts
 * import { loglevelNote } from "./host_wide.ts";
 * loglevelNote("nfqlb-trace", true, [{ pid: 42, sameNetns: false }]);
 * // "nfqlb: the log level is host-wide: /dev/shm/nfqlb-trace is read by every nfqlb on this host
 * //  that maps it, in any network namespace; mapped now by pid 42 (another network namespace); ..."
 * ```
 * @module
 */

/** A process that maps the trace object. */
export interface TraceShmUser {
  /** Its process id. */
  readonly pid: number;
  /** Whether it is in this command's network namespace (undefined: not known). */
  readonly sameNetns: boolean | undefined;
}

/** How to give an instance its own object, the end of every note. */
function separate(): string {
  return "NFQLB_TRACE_SHM=nfqlb-trace.<suffix>, set for a daemon and its commands alike, " +
    "gives them one of their own";
}

/** `pid 1 (this network namespace), pid 2 (another network namespace)`. */
export function describeUsers(users: readonly TraceShmUser[]): string {
  return users.map((u) =>
    `pid ${u.pid} (${
      u.sameNetns === undefined
        ? "network namespace unknown"
        : u.sameNetns
        ? "this network namespace"
        : "another network namespace"
    })`
  ).join(", ");
}

/** `N processes` / `1 process`. */
function processes(n: number): string {
  return `${n} process${n === 1 ? "" : "es"}`;
}

/** `; N more processes could not be inspected (...)`, or "" when all were. */
function notInspected(n: number): string {
  return n === 0 ? "" : `; ${processes(n)} could not be inspected (${UNINSPECTED_WHY})`;
}

/** Why a process's `/proc/<pid>/maps` may be unreadable. */
const UNINSPECTED_WHY = "another user's, or not dumpable, e.g. a daemon with file capabilities";

/**
 * The note of `loglevel` on the object `name`: `set` when a level was given. Setting always gets
 * one (who now logs at that level, or that nobody does yet); reading gets one only when no
 * process found maps the object, i.e. no running daemon logs at the level shown. `uninspected`:
 * processes whose maps could not be read; when none found maps it, the note says they might,
 * instead of claiming that none does. Undefined: no note.
 */
export function loglevelNote(
  name: string,
  set: boolean,
  users: readonly TraceShmUser[],
  uninspected = 0,
): string | undefined {
  const where = `/dev/shm/${name}`;
  const own = "a daemon started with NFQLB_TRACE_SHM set uses that object: set the same for " +
    "this command";
  if (users.length === 0 && uninspected > 0) {
    return `nfqlb: no process this command could inspect maps ${where}, but ` +
      `${processes(uninspected)} could not be inspected (${UNINSPECTED_WHY}): a daemon among ` +
      `them may ${set ? "take this level now" : "log at this level"}; ${own}`;
  }
  if (users.length === 0) {
    return `nfqlb: no running process maps ${where}, so no daemon ${
      set ? "takes this level now (daemons started later will)" : "logs at this level"
    }; ${own}`;
  }
  if (!set) return undefined;
  return `nfqlb: the log level is host-wide: ${where} is read by every nfqlb on this host that ` +
    `maps it, in any network namespace; mapped now by ${describeUsers(users)}` +
    `${notInspected(uninspected)}; ${separate()}`;
}

/**
 * The note of `trace` once a daemon accepted it, when processes in other network namespaces (or
 * in unknown ones) map the object `name` too: they trace with this mask as well, to their own
 * client or, if none ever attached, to their stderr; `uninspected` processes (maps unreadable)
 * are counted in it. Undefined: no note.
 */
export function traceNote(
  name: string,
  users: readonly TraceShmUser[],
  uninspected = 0,
): string | undefined {
  const others = users.filter((u) => u.sameNetns !== true);
  if (others.length === 0) return undefined;
  return `nfqlb: the trace mask is host-wide: /dev/shm/${name} is read by every nfqlb on this ` +
    `host that maps it, in any network namespace; ${describeUsers(others)} trace with this ` +
    `mask too (to their own trace client, or to their stderr if none ever attached) until ` +
    `this trace ends${notInspected(uninspected)}; ${separate()}`;
}
