/**
 * The fast paths running on this host (`nfqlb stats` shows them), and what the
 * table commands do after a write when there are any (docs/FASTPATH.md): wait
 * until every running fast-path writer has compared the tables since the write
 * and switched to empty maps if they changed, so a packet sent after `activate`/`deactivate` returns is decided
 * with the new table whether it takes the queue or the kernel path. A writer
 * is found by its status object (`/dev/shm/nfqlb-fastpath.<netns>.<table>`); one
 * whose process is gone is skipped. The wait is bounded: a writer that does
 * not answer in time is reported, not waited for.
 * @module
 */
import { openShm, type ShmMapping } from "../ffi/shm.ts";
import { sleepSync } from "../lib/maglev/maglev.ts";
import {
  F_SCANS,
  STATUS_PREFIX,
  statusPid,
  statusTable,
  statusValues,
} from "../lib/fastpath/status.ts";

/** Longest wait for one writer, ms. */
export const FASTPATH_WAIT_MS = 1000;

/** The status object of this process's fast path with nft table `table` (its netns, its table). */
export function fastPathStatusName(table: string): string {
  let ns = "0";
  try {
    ns = /\[(\d+)\]/.exec(Deno.readLinkSync("/proc/self/ns/net"))?.[1] ?? "0";
  } catch {
    // no /proc: one namespace
  }
  return `${STATUS_PREFIX}${ns}.${table}`;
}

/** A running fast path's status object, mapped read-only: close it when done. */
export interface LiveFastPath {
  /** Its nftables table. */
  readonly table: string;
  readonly mapping: ShmMapping;
}

/** The status objects of the fast paths running on this host, by table name; stale ones skipped. */
export function liveFastPaths(): LiveFastPath[] {
  let names: string[];
  try {
    names = [...Deno.readDirSync("/dev/shm")]
      .map((e) => e.name)
      .filter((n) => n.startsWith(STATUS_PREFIX))
      .sort();
  } catch {
    return [];
  }
  const out: LiveFastPath[] = [];
  for (const n of names) {
    let m;
    try {
      m = openShm(n, false);
    } catch {
      continue; // gone meanwhile
    }
    const pid = statusPid(m.buffer);
    if (pid === undefined || !alive(pid)) {
      m.close();
      continue;
    }
    out.push({ table: statusTable(n) ?? n.slice(STATUS_PREFIX.length), mapping: m });
  }
  return out;
}

/**
 * Wait for the running fast-path writers (see the module comment); returns
 * the nft table names of those that did not confirm within `timeoutMs`.
 */
export function waitForFastPaths(timeoutMs = FASTPATH_WAIT_MS): string[] {
  // Two more scans each: the one under way may have compared before the write.
  const waiting = liveFastPaths().map((f) => {
    const scans = statusValues(f.mapping.buffer);
    return { ...f, scans, until: scans[F_SCANS] + 2 };
  });
  const deadline = performance.now() + timeoutMs;
  const late: string[] = [];
  for (const w of waiting) {
    while (w.scans[F_SCANS] < w.until && performance.now() < deadline) sleepSync(1);
    if (w.scans[F_SCANS] < w.until) late.push(w.table);
    w.mapping.close();
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
