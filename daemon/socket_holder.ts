/**
 * Where a control address lives, for the hints of a failed connect or bind: this process's
 * network namespace (its `ip netns` names and id) and the processes holding a listening
 * abstract unix socket (`/proc/net/unix` inode → `/proc/<pid>/fd`). Failure paths only.
 * @module
 */
import { listeningUnixInodes } from "../lib/ccompat/proc_net_unix.ts";
import { procPids } from "./proc_pids.ts";
import type { SocketHolder } from "../lib/hints/sockets.ts";

/** Most `/proc/<pid>` directories looked at for a holder (a bound on the failure path's cost). */

/** This network namespace: `NAME (net:[ino])` when `ip netns` names it, else `net:[ino]`. */
export function currentNetns(): string {
  let id: string;
  let ino: number | null;
  try {
    id = Deno.readLinkSync("/proc/self/ns/net");
    ino = Deno.statSync("/proc/self/ns/net").ino;
  } catch {
    return "(unknown)";
  }
  const names: string[] = [];
  try {
    for (const e of Deno.readDirSync("/run/netns")) {
      try {
        if (Deno.statSync(`/run/netns/${e.name}`).ino === ino) names.push(e.name);
      } catch {
        // a name being removed
      }
    }
  } catch {
    // no named namespaces
  }
  return names.length > 0 ? `${names.join(", ")} (${id})` : id;
}

/** The processes that hold a socket listening on abstract unix name `name` in this namespace. */
export function unixListenerHolders(name: string): SocketHolder[] {
  let inodes: number[];
  try {
    inodes = listeningUnixInodes(Deno.readTextFileSync("/proc/net/unix"), name);
  } catch {
    return [];
  }
  if (inodes.length === 0) return [];
  const wanted = new Set(inodes.map((i) => `socket:[${i}]`));
  return procPids().pids.filter((pid) => holds(String(pid), wanted)).map((pid) => ({
    pid,
    comm: comm(String(pid)),
  }));
}

/** Whether process `pid` has an fd on one of `wanted`. */
function holds(pid: string, wanted: ReadonlySet<string>): boolean {
  try {
    for (const fd of Deno.readDirSync(`/proc/${pid}/fd`)) {
      try {
        if (wanted.has(Deno.readLinkSync(`/proc/${pid}/fd/${fd.name}`))) return true;
      } catch {
        // fd closed meanwhile
      }
    }
  } catch {
    // another user's process, or gone
  }
  return false;
}

/** `/proc/<pid>/comm`, or `?`. */
function comm(pid: string): string {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/comm`).trim();
  } catch {
    return "?";
  }
}
