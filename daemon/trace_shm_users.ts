/**
 * Which processes map the trace object (`/dev/shm/nfqlb-trace` or `NFQLB_TRACE_SHM`'s), and in
 * which network namespace, from `/proc/<pid>/maps` and `/proc/<pid>/ns/net`: what the host-wide
 * notes of `loglevel` and `trace` name (lib/trace/host_wide.ts). Processes whose `/proc` this
 * user may not read are left out; this process is left out.
 * @module
 */
import type { TraceShmUser } from "../lib/trace/host_wide.ts";

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

/** The processes other than this one that map `/dev/shm/<name>`, by pid. */
export function traceShmUsers(name: string): TraceShmUser[] {
  const path = `/dev/shm/${name}`;
  const mine = netns("self");
  const users: TraceShmUser[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync("/proc")];
  } catch {
    return users; // no /proc: nothing known
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e.name)) continue;
    const pid = Number(e.name);
    if (pid === Deno.pid) continue;
    let maps: string;
    try {
      maps = Deno.readTextFileSync(`/proc/${pid}/maps`);
    } catch {
      continue; // gone, or not ours to read
    }
    if (!mapsPath(maps, path)) continue;
    const ns = netns(pid);
    users.push({
      pid,
      sameNetns: ns === undefined || mine === undefined ? undefined : ns === mine,
    });
  }
  return users.sort((a, b) => a.pid - b.pid);
}
