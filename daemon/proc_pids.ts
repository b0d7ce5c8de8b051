/**
 * The processes of this pid namespace, for the notes that name who holds or maps something: the
 * numeric entries of `/proc`, at most {@link MAX_PIDS} of them (a bound on a note's cost), and
 * how many were left beyond that.
 * @module
 */

/** Most `/proc/<pid>` directories a scan looks at. */
export const MAX_PIDS = 32768;

/** A scan's pids (in `/proc`'s order) and the number beyond {@link MAX_PIDS}. */
export interface ProcPids {
  readonly pids: number[];
  readonly beyond: number;
}

/** The pids in `/proc` (none when it cannot be read), at most {@link MAX_PIDS}. */
export function procPids(): ProcPids {
  const pids: number[] = [];
  let beyond = 0;
  try {
    for (const e of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(e.name)) continue;
      if (pids.length < MAX_PIDS) pids.push(Number(e.name));
      else beyond++;
    }
  } catch {
    // no /proc: nothing known
  }
  return { pids, beyond };
}
