/**
 * `stats` (fragment-table statistics, docs/COMPATIBILITY.md#command-line) and `loglevel` (the daemons'
 * log level in `nfqlb-trace`, docs/COMPATIBILITY.md#trace-and-log).
 * @module
 */
import { formatFastPathStats, statusFtShm } from "../lib/fastpath/status.ts";
import { liveFastPaths } from "../daemon/fastpath_wait.ts";
import { LibcError } from "../ffi/libc.ts";
import { openShm } from "../ffi/shm.ts";
import { parseStrictInt } from "../lib/ccompat/cnum.ts";
import { formatStats, FTSHM_SIZE } from "../lib/frag/stats.ts";
import { formatQueueCounters, readQueueCounters } from "../lib/counters/queue_counters.ts";
import { type Command, die } from "./command.ts";
import { LOGLEVEL_SPEC, STATS_SPEC } from "./specs.ts";
import { LOGLEVEL_WORD, openTraceShm, traceShmName } from "../daemon/open_trace_shm.ts";
import { traceShmUsers } from "../daemon/trace_shm_users.ts";
import { loglevelNote } from "../lib/trace/host_wide.ts";
import { statsForeignNote, statsMapHint } from "../lib/hints/shm.ts";
import { foreignQueues } from "../lib/doctor/checks.ts";
import { parseNfqueueProc } from "../lib/nfqueue/proc.ts";

/**
 * The `Fastpath` lines of the running fast paths of the daemon whose statistics object is
 * `ftShm` (docs/FASTPATH.md); status objects of `trustedUid` (the owner of the statistics
 * object) count as well as root's and ours. Another daemon's fast path on this host is its own
 * `stats --ft_shm=...`'s business.
 */
function fastPathStats(ftShm: string, trustedUid: number): string[] {
  const lines: string[] = [];
  for (const f of liveFastPaths(trustedUid)) {
    try {
      if (statusFtShm(f.mapping.buffer) === ftShm) {
        lines.push(formatFastPathStats(f.table, f.mapping.buffer));
      }
    } finally {
      f.mapping.close();
    }
  }
  return lines;
}

/**
 * The note when the object's queues have no listener in this namespace (doctor's judgement,
 * `foreignQueues`); undefined when they have, or `/proc/net/netfilter/nfnetlink_queue` cannot be
 * read (nothing is claimed).
 */
function foreignNote(name: string, queues: readonly number[]): string | undefined {
  let bound: Set<number>;
  try {
    bound = new Set(
      parseNfqueueProc(Deno.readTextFileSync("/proc/net/netfilter/nfnetlink_queue")).keys(),
    );
  } catch {
    return undefined;
  }
  const foreign = foreignQueues(queues, bound);
  if (foreign === undefined) return undefined;
  return statsForeignNote(name, foreign, queues.filter((q) => !bound.has(q)).length > 1);
}

/**
 * `stats`: print the fragment statistics a running daemon keeps in `--ft_shm`, then the
 * counters of that daemon's fast path; on stderr, a note when the object's queues have no
 * listener in this namespace (stdout and the exit status stay 1.2.0's).
 */
export const statsCommand: Command = {
  ...STATS_SPEC,
  run(inv) {
    const name = inv.opts.get("ft_shm") ?? "ftshm";
    let m;
    try {
      m = openShm(name, false);
    } catch (e) {
      if (e instanceof LibcError) {
        die(`FAILED mapSharedData: ${name}\n${statsMapHint(name, e.errno, e.message)}`);
      }
      throw e;
    }
    try {
      if (m.size < FTSHM_SIZE) {
        die(`FAILED mapSharedData: ${name}; not fragment statistics: ${m.size} bytes, need 72`);
      }
      let text = formatStats(m.buffer);
      const counters = readQueueCounters(m.buffer);
      // Our per-queue counters follow the fragment counters (1.2.0's lines stay as they are).
      if (counters !== undefined) {
        text = `${text.slice(0, -3)},\n${formatQueueCounters(counters)}\n}\n`;
      }
      inv.io.out(text);
      for (const fp of fastPathStats(name, m.owner.uid)) inv.io.out(fp + "\n");
      const note = foreignNote(name, counters?.queues.map((q) => q.queue) ?? []);
      if (note !== undefined) inv.io.err(note + "\n");
    } finally {
      m.close();
    }
    return 0;
  },
};

/**
 * `loglevel [level]`: show or set the daemons' log level (4 warning .. 7 debug). stdout is
 * 1.2.0's `loglevel=<n>`; stderr gets a note on the object's reach (lib/trace/host_wide.ts):
 * always when a level is set, when reading only if no process maps the object.
 */
export const loglevelCommand: Command = {
  ...LOGLEVEL_SPEC,
  run(inv) {
    let level: number | undefined;
    if (inv.args.length > 0) {
      level = parseStrictInt(inv.args[0], -(2 ** 31), 2 ** 31 - 1);
      if (level === undefined) die(`Invalid log level [${inv.args[0]}]; expected an integer`);
    }
    const m = openTraceShm();
    try {
      if (level !== undefined) m.words[LOGLEVEL_WORD] = level;
      inv.io.out(`loglevel=${m.words[LOGLEVEL_WORD]}\n`);
    } finally {
      m.close();
    }
    const name = traceShmName();
    const scan = traceShmUsers(name);
    const note = loglevelNote(name, level !== undefined, scan.users, scan.uninspected);
    if (note !== undefined) inv.io.err(note + "\n");
    return 0;
  },
};
