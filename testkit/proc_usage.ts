/**
 * What a running process costs, read from `/proc` (Linux): its memory and thread count
 * (`/proc/PID/status`, summed over the process and its descendants) and its CPU time
 * (`/proc/PID/stat`, utime + stime of all its threads). For benchmarks (`bench/footprint.ts`).
 *
 * @example
 * ```ts ignore
 * const m = memoryOf(pid); // { rssKb, hwmKb, anonKb, fileKb, threads, processes }
 * const cpu0 = cpuSecondsOf(pid);
 * ```
 * @module
 */

/** Memory and threads of a process tree, from `/proc/PID/status`. */
export interface MemoryUsage {
  /** VmRSS, kB: resident now. */
  rssKb: number;
  /** VmHWM, kB: the highest VmRSS so far. */
  hwmKb: number;
  /** RssAnon, kB: the resident anonymous part (heaps, stacks). */
  anonKb: number;
  /** RssFile, kB: the resident file-backed part (the executable, libraries). */
  fileKb: number;
  /** Threads. */
  threads: number;
  /** Processes summed: the process and its descendants. */
  processes: number;
}

/** The fields of `/proc/<pid>/status` in kB or counts; throws if the process is gone. */
function statusOf(pid: number): Map<string, number> {
  const fields = new Map<string, number>();
  for (const line of Deno.readTextFileSync(`/proc/${pid}/status`).split("\n")) {
    const m = /^(\w+):\s+(\d+)/.exec(line);
    if (m !== null) fields.set(m[1], Number(m[2]));
  }
  return fields;
}

/** Direct children of `pid` (from every thread's `/proc/PID/task/TID/children`). */
export function childrenOf(pid: number): number[] {
  const kids: number[] = [];
  try {
    for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
      try {
        const text = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/children`).trim();
        if (text !== "") kids.push(...text.split(/\s+/).map(Number));
      } catch {
        // the thread ended
      }
    }
  } catch {
    // the process ended
  }
  return kids;
}

/** `pid` and all its descendants that still run. */
export function processTree(pid: number): number[] {
  const all = [pid];
  for (let i = 0; i < all.length; i++) all.push(...childrenOf(all[i]));
  return all;
}

/** Memory and threads of `pid` and its descendants; throws if `pid` is gone. */
export function memoryOf(pid: number): MemoryUsage {
  const u = { rssKb: 0, hwmKb: 0, anonKb: 0, fileKb: 0, threads: 0, processes: 0 };
  for (const p of processTree(pid)) {
    let s: Map<string, number>;
    try {
      s = statusOf(p);
    } catch (e) {
      if (p === pid) throw e;
      continue; // a descendant that just ended
    }
    u.rssKb += s.get("VmRSS") ?? 0;
    u.hwmKb += s.get("VmHWM") ?? 0;
    u.anonKb += s.get("RssAnon") ?? 0;
    u.fileKb += s.get("RssFile") ?? 0;
    u.threads += s.get("Threads") ?? 0;
    u.processes++;
  }
  return u;
}

let clkTck: number | undefined;

/** Clock ticks per second of `/proc/PID/stat` (`getconf CLK_TCK`; 100 if that fails). */
export function clockTicks(): number {
  if (clkTck === undefined) {
    try {
      const out = new Deno.Command("getconf", { args: ["CLK_TCK"], stderr: "null" }).outputSync();
      clkTck = Number(new TextDecoder().decode(out.stdout).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/**
 * CPU time of `pid` (utime + stime of all its threads, fields 14 and 15 of proc_pid_stat(5)),
 * in seconds; resolution one clock tick ({@link clockTicks}). Throws if the process is gone.
 */
export function cpuSecondsOf(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // After "pid (comm) ", counted from the state field (field 3).
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / clockTicks();
}
