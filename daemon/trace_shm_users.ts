/**
 * Which processes map the trace object (`/dev/shm/nfqlb-trace` or `NFQLB_TRACE_SHM`'s), and in
 * which network namespace, from `/proc/<pid>/maps` and `/proc/<pid>/ns/net`: what the host-wide
 * notes of `loglevel` and `trace` name (lib/trace/host_wide.ts). Processes whose `/proc` this
 * user may not read are counted, so the notes do not claim that nobody maps it; this process is
 * left out.
 * @module
 */
import type { TraceShmUser } from "../lib/trace/host_wide.ts";
import { procPids } from "./proc_pids.ts";

/** The network namespace link of process `pid` (`self` for this one), or undefined. */
function netns(pid: number | "self"): string | undefined {
  try {
    return Deno.readLinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return undefined;
  }
}

/** Whether the `maps` text of a process has a mapping of exactly `path` (not a deleted one). */
export function mapsPath(maps: string, path: string): boolean {
  const suffix = ` ${path}`;
  let from = 0;
  for (;;) {
    const i = maps.indexOf(suffix, from);
    if (i < 0) return false;
    const end = i + suffix.length;
    if (end === maps.length || maps[end] === "\n") return true;
    from = end;
  }
}

export { MAX_PIDS } from "./proc_pids.ts";

/** What a scan of `/proc` found: the processes that map the object, and how many it could not read. */
export interface TraceShmScan {
  readonly users: TraceShmUser[];
  /**
   * Processes whose `/proc/<pid>/maps` could not be read (another user's, or not dumpable: a
   * daemon with file capabilities) or that were beyond {@link MAX_PIDS}: they may map it too.
   */
  readonly uninspected: number;
}

/** The processes other than this one that map `/dev/shm/<name>`, by pid, and those not inspected. */
export function traceShmUsers(name: string): TraceShmScan {
  const path = `/dev/shm/${name}`;
  const mine = netns("self");
  const users: TraceShmUser[] = [];
  const scan = procPids();
  let uninspected = scan.beyond;
  for (const pid of scan.pids) {
    if (pid === Deno.pid) continue;
    let maps: string;
    try {
      maps = Deno.readTextFileSync(`/proc/${pid}/maps`);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) uninspected++; // not ours to read
      continue; // or gone
    }
    if (!mapsPath(maps, path)) continue;
    const ns = netns(pid);
    users.push({
      pid,
      sameNetns: ns === undefined || mine === undefined ? undefined : ns === mine,
    });
  }
  return { users: users.sort((a, b) => a.pid - b.pid), uninspected };
}
