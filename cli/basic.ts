/**
 * Commands that need no shared memory: `version`, `primebelow`.
 * @module
 */
import { cAtoi, toU32 } from "../lib/ccompat/cnum.ts";
import { primeBelow } from "../lib/maglev/prime.ts";
import { type Command, die } from "./command.ts";
import { PRIMEBELOW_SPEC, VERSION_SPEC } from "./specs.ts";

import { VERSION } from "../lib/version.ts";

/**
 * `version`: print `1.2.0` (the version this implementation is compatible with; scripts compare
 * it). `--verbose` adds a line with the implementation and the Deno runtime.
 */
export const versionCommand: Command = {
  ...VERSION_SPEC,
  run(inv) {
    inv.io.out(VERSION + "\n");
    if (inv.opts.has("verbose")) {
      const v = Deno.version;
      inv.io.out(
        `nfqlb in TypeScript ${VERSION}; deno ${v.deno}, v8 ${v.v8}, typescript ${v.typescript}\n`,
      );
    }
    return 0;
  },
};

/** `primebelow <n>`: print the largest prime ≤ n (capped at 993997). */
export const primebelowCommand: Command = {
  ...PRIMEBELOW_SPEC,
  run(inv) {
    if (inv.args.length === 0) return 0;
    const n = toU32(cAtoi(inv.args[0]));
    const p = primeBelow(n);
    if (p === undefined) die(`There is no prime below ${n}`);
    inv.io.out(`${p}\n`);
    return 0;
  },
};
