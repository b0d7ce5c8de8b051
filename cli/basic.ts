/**
 * Commands that need no shared memory: `version`, `primebelow`.
 * @module
 */
import { cAtoi, toU32 } from "../lib/ccompat/cnum.ts";
import { primeBelow } from "../lib/maglev/prime.ts";
import { type Command, die } from "./command.ts";

import { VERSION } from "../lib/version.ts";

/** `version`: print `1.2.0`. */
export const versionCommand: Command = {
  name: "version",
  help: "version\n  Print the version.",
  options: [],
  run(inv) {
    inv.io.out(VERSION + "\n");
    return 0;
  },
};

/** `primebelow <n>`: print the largest prime ≤ n (capped at 993997). */
export const primebelowCommand: Command = {
  name: "primebelow",
  help: "primebelow <n>\n  Print the largest prime <= n (at most 993997, the largest M).",
  options: [],
  run(inv) {
    if (inv.args.length === 0) return 0;
    const n = toU32(cAtoi(inv.args[0]));
    const p = primeBelow(n);
    if (p === undefined) die(`There is no prime below ${n}`);
    inv.io.out(`${p}\n`);
    return 0;
  },
};
