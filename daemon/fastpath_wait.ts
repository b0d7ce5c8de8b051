/**
 * What the table commands do after a write when fast paths run
 * (docs/FASTPATH.md): wait until every running fast-path writer on this
 * host has compared the tables since the write and flushed its maps if they
 * changed, so a packet sent after `activate`/`deactivate` returns is decided
 * with the new table whether it takes the queue or the kernel path. A writer
 * is found by its status object (`/dev/shm/nfqlb-fastpath.<table>`); one
 * whose process is gone is skipped. The wait is bounded: a writer that does
 * not answer in time is reported, not waited for.
 * @module
 */
import { openShm } from "../ffi/shm.ts";
import { sleepSync } from "../lib/maglev/maglev.ts";
import { F_SCANS, STATUS_PREFIX, statusPid, statusValues } from "../lib/fastpath/status.ts";

/** Longest wait for one writer, ms. */
export const FASTPATH_WAIT_MS = 1000;

/**
 * Wait for the running fast-path writers (see the module comment); returns
 * the nft table names of those that did not confirm within `timeoutMs`.
 */
export function waitForFastPaths(timeoutMs = FASTPATH_WAIT_MS): string[] {
  let names: string[];
  try {
    names = [...Deno.readDirSync("/dev/shm")]
      .map((e) => e.name)
      .filter((n) => n.startsWith(STATUS_PREFIX));
  } catch {
    return [];
  }
  const waiting: { table: string; scans: Float64Array; until: number; close(): void }[] = [];
  for (const n of names) {
    let m;
    try {
      m = openShm(n, false);
    } catch {
      continue;
    }
    const pid = statusPid(m.buffer);
    if (pid === undefined || !alive(pid)) {
      m.close();
      continue;
    }
    const v = statusValues(m.buffer);
    // Two more scans: the one under way may have compared before the write.
    waiting.push({
      table: n.slice(STATUS_PREFIX.length),
      scans: v,
      until: v[F_SCANS] + 2,
      close: () => m.close(),
    });
  }
  const deadline = performance.now() + timeoutMs;
  const late: string[] = [];
  for (const w of waiting) {
    while (w.scans[F_SCANS] < w.until && performance.now() < deadline) sleepSync(1);
    if (w.scans[F_SCANS] < w.until) late.push(w.table);
    w.close();
  }
  return late;
}

function alive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}
