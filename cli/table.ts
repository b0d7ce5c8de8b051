/**
 * Target-table commands: `init`, `delete`, `show`, `activate`, `deactivate`
 * (docs/COMPATIBILITY.md#command-line). Inputs are validated completely before the shared memory is
 * touched, so bad input never leaves a half-changed table.
 * @module
 */
import { parseStrictInt } from "../lib/ccompat/cnum.ts";
import {
  activate,
  activateIndex,
  deactivate,
  deactivateIndex,
  initTable,
  sleepSync,
} from "../lib/maglev/maglev.ts";
import { MaglevTable, MAX_M, MIN_M, tableSize } from "../lib/maglev/table.ts";
import { primeBelow } from "../lib/maglev/prime.ts";
import { createShm, openShm, unlinkShm } from "../ffi/shm.ts";
import { LibcError } from "../ffi/libc.ts";
import { type Command, die, type Invocation } from "./command.ts";
import {
  ACTIVATE_SPEC,
  DEACTIVATE_SPEC,
  DEFAULT_SHM,
  DELETE_SPEC,
  INIT_SPEC,
  SHOW_SPEC,
} from "./specs.ts";
import { adoptProblem, openTable } from "../daemon/open_table.ts";
import { waitForFastPaths } from "../daemon/fastpath_wait.ts";
import { LOG_WARNING, logLine } from "../lib/log/levels.ts";

/**
 * After a write to a table owned by `tableUid`: wait until the running fast paths flushed what
 * the write changed (docs/FASTPATH.md); say which ones did not confirm in time.
 */
function syncFastPaths(inv: Invocation, tableUid: number): void {
  for (const t of waitForFastPaths(undefined, tableUid)) {
    inv.io.err(
      logLine(LOG_WARNING, `fast path ${t} did not confirm the change within 1 s`) + "\n",
    );
  }
}

/** Default target-table name. */
export { DEFAULT_SHM };
const I32_MIN = -2147483648;
/**
 * How long a deactivation waits between publishing the new lookup table and
 * clearing the slot, so packet readers that loaded an old entry finish.
 */
const DEACTIVATE_GRACE_MS = 20;
const grace = () => sleepSync(DEACTIVATE_GRACE_MS);
const I32_MAX = 2147483647;

function shmName(inv: Invocation): string {
  return inv.opts.get("shm") ?? DEFAULT_SHM;
}

/**
 * Option `name` as an integer in min..max (`dflt` when absent); the message states `accepted`,
 * the range that is accepted in the end when a later check narrows it (M: 1.2.0's own
 * `M too large` line follows for values above 993997).
 */
function intOption(
  inv: Invocation,
  name: string,
  dflt: number,
  min: number,
  max: number,
  accepted = `${min}..${max}`,
) {
  const s = inv.opts.get(name);
  if (s === undefined) return dflt;
  const v = parseStrictInt(s, min, max);
  if (v === undefined) die(`Invalid --${name}=${s}; expected an integer in ${accepted}`);
  return v;
}

/** Parse fwmark arguments: integers that fit a table slot (i32), non-negative unless allowed. */
function fwmarkArgs(args: readonly string[], allowNegative: boolean): number[] {
  return args.map((a) => {
    const v = parseStrictInt(a, allowNegative ? I32_MIN : 0, I32_MAX);
    if (v === undefined) {
      die(
        `Invalid fwmark [${a}]; expected an integer in ${allowNegative ? I32_MIN : 0}..${I32_MAX}`,
      );
    }
    return v;
  });
}

function indexOption(inv: Invocation, n: number): number | undefined {
  const s = inv.opts.get("index");
  if (s === undefined) return undefined;
  const v = parseStrictInt(s, I32_MIN, 2 ** 32 - 1);
  if (v === undefined) die(`Invalid --index=${s}; expected an integer in 0..${n - 1}`);
  if (v < 0 || v >= n) die(`Lookup index too large; --index=${s}, N=${n}`);
  return v;
}

/** `init` found an existing object it must not use. */
class AdoptRefused extends Error {}

/** The active fwmarks of an existing valid table `name` (slot order); empty when none or no table. */
function activeBefore(name: string): number[] {
  let m;
  try {
    m = openShm(name, false);
  } catch {
    return [];
  }
  try {
    return [...MaglevTable.view(m.buffer).active].filter((fw) => fw >= 0);
  } catch {
    return []; // not a valid table: nothing was active
  } finally {
    m.close();
  }
}

/** Fwmarks named in the warning of `init` at most; more are `...`. */
const MAX_WARNED_FWMARKS = 32;

/**
 * The warning of `init` over a table that had active targets (1.2.0 overwrites it silently):
 * `init: /dev/shm/T had N active targets (fwmarks ...): all are inactive now; activate them
 * again (nfqlb activate --shm=T ...)`.
 */
export function initClearedWarning(name: string, fwmarks: readonly number[]): string {
  const shown = fwmarks.slice(0, MAX_WARNED_FWMARKS).join(" ") +
    (fwmarks.length > MAX_WARNED_FWMARKS ? " ..." : "");
  const n = fwmarks.length;
  return `init: /dev/shm/${name} had ${n} active target${n === 1 ? "" : "s"} ` +
    `(fwmark${n === 1 ? "" : "s"} ${shown}): all are inactive now; activate them again ` +
    `(nfqlb activate --shm=${name} ${shown})`;
}

/** `init`: create or overwrite a target table. */
export const initCommand: Command = {
  ...INIT_SPEC,
  run(inv) {
    const name = shmName(inv);
    const requested = intOption(inv, "M", 997, MIN_M, 2 ** 32 - 1, `${MIN_M}..${MAX_M}`);
    // N = 0 (1.2.0 accepts it) makes a table no target can ever be activated in.
    const n = intOption(inv, "N", 32, 1, 2 ** 32 - 1);
    const ownfw = intOption(inv, "ownfw", 0, I32_MIN, I32_MAX);
    if (requested > MAX_M) die(`M too large; ${requested} > ${MAX_M}`);
    const m = primeBelow(requested)!;
    if (m !== requested) inv.io.out(`M adjusted; ${requested} -> ${m}\n`);
    if (n > m) die("N can't be larger than M");
    let mapping;
    let before: number[] = [];
    try {
      mapping = createShm(name, tableSize(m, n), (owner) => {
        // Never adopt an object another user planted or can write (nothing is changed).
        const problem = adoptProblem(owner, Deno.uid() ?? 0);
        if (problem !== undefined) throw new AdoptRefused(problem);
        // An object init may use: say afterwards which targets this clears.
        before = activeBefore(name);
      });
    } catch (e) {
      if (e instanceof AdoptRefused) die(`createSharedData: ${name}: ${e.message}; not changed`);
      if (e instanceof LibcError) die(`createSharedData: ${e.message}`);
      throw e;
    }
    try {
      initTable(mapping.buffer, m, n, ownfw);
    } finally {
      mapping.close();
    }
    if (before.length > 0) inv.io.err(`${initClearedWarning(name, before)}\n`);
    // A table a daemon uses, initialised again, is a change too.
    syncFastPaths(inv, mapping.owner.uid);
    return 0;
  },
};

/** `delete`: unlink a shared-memory object (missing is not an error). */
export const deleteCommand: Command = {
  ...DELETE_SPEC,
  run(inv) {
    try {
      unlinkShm(shmName(inv));
    } catch (e) {
      if (e instanceof LibcError) die(e.message);
      throw e;
    }
    return 0;
  },
};

/** `show`: print a target table. */
export const showCommand: Command = {
  ...SHOW_SPEC,
  run(inv) {
    const name = shmName(inv);
    const { table, close } = openTable(name, false);
    try {
      const lookup = Array.from(table.lookup.subarray(0, Math.min(25, table.m)));
      const active: string[] = [];
      table.active.forEach((fw, i) => {
        if (fw >= 0) active.push(` ${fw}(${i})`);
      });
      inv.io.out(
        `Shm: ${name}\n` +
          `  Fw: own=${table.ownFwmark}\n` +
          `  Maglev: M=${table.m}, N=${table.n}\n` +
          `   Lookup:${lookup.map((v) => " " + v).join("")}...\n` +
          `   Active:${active.join("")}\n`,
      );
    } finally {
      close();
    }
    return 0;
  },
};

/** `activate`: add targets (fwmarks), or set one slot with `--index`. */
export const activateCommand: Command = {
  ...ACTIVATE_SPEC,
  async run(inv) {
    if (inv.opts.has("index") && inv.args.length === 0) return 0;
    // A negative value (inactive) only for one slot (--index); targets are 0..2^31-1.
    const withIndex = inv.opts.has("index");
    const fwmarks = fwmarkArgs(withIndex ? inv.args.slice(0, 1) : inv.args, withIndex);
    const { table, owner, close } = openTable(shmName(inv), true);
    try {
      const index = indexOption(inv, table.n);
      if (index !== undefined) {
        activateIndex(table, index, fwmarks[0], grace);
      } else {
        activate(table, fwmarks, grace);
      }
    } finally {
      close();
    }
    syncFastPaths(inv, owner.uid);
    // Loaded here: reading the namespace's rules is activate's alone among these commands.
    await (await import("./namespace_rules.ts")).warnFwmarkRules(inv.io, fwmarks);
    return 0;
  },
};

/** `deactivate`: remove targets by fwmark, or one slot with `--index`. */
export const deactivateCommand: Command = {
  ...DEACTIVATE_SPEC,
  run(inv) {
    const fwmarks = inv.opts.has("index") ? [] : fwmarkArgs(inv.args, false);
    const { table, owner, close } = openTable(shmName(inv), true);
    try {
      const index = indexOption(inv, table.n);
      if (index !== undefined) deactivateIndex(table, index, grace);
      else deactivate(table, fwmarks, grace);
    } finally {
      close();
    }
    syncFastPaths(inv, owner.uid);
    return 0;
  },
};
