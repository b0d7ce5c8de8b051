/**
 * GNU `getopt_long_only` option scanning, as every nfqlb sub-command uses it
 * (docs/COMPATIBILITY.md#command-line): `--name=value`, `--name value`, `-name=value`, `-name value`,
 * unambiguous prefixes, argument permutation, `--` to end options, and
 * glibc's exact error messages (prefixed by the sub-command name).
 *
 * @example
 * ```ts
 * import { getopt } from "./getopt.ts";
 * const r = getopt("init", [{ name: "shm", hasArg: true }], ["--sh=x", "7"]);
 * r.options; // [["shm", "x"]]
 * r.positionals; // ["7"]
 * ```
 * @module
 */

/** One long option. */
export interface OptionSpec {
  /** Name without dashes, case-sensitive. */
  readonly name: string;
  /** Whether the option takes a value (flags such as `help` do not). */
  readonly hasArg: boolean;
}

/** What scanning found, in command-line order. */
export interface GetoptResult {
  /** Options found before any error, as `[name, value]` (`""` for flags). */
  readonly options: [string, string][];
  /** Non-option arguments. */
  readonly positionals: string[];
  /** glibc's message for the first error (scanning stops there). */
  readonly error?: string;
  /** The name (without dashes or value) of an unrecognized option, when that is the error. */
  readonly unknown?: string;
}

/** Scan `args` against `specs`; `prog` prefixes error messages. */
export function getopt(
  prog: string,
  specs: readonly OptionSpec[],
  args: readonly string[],
): GetoptResult {
  const options: [string, string][] = [];
  const positionals: string[] = [];
  let i = 0;
  while (i < args.length) {
    const a = args[i];
    if (a === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (a.length < 2 || a[0] !== "-") {
      positionals.push(a);
      i++;
      continue;
    }
    const prefix = a[1] === "-" ? "--" : "-";
    const body = a.slice(prefix.length);
    const eq = body.indexOf("=");
    const name = eq >= 0 ? body.slice(0, eq) : body;
    let found = specs.find((s) => s.name === name);
    if (found === undefined) {
      const candidates = specs.filter((s) => s.name.startsWith(name));
      if (candidates.length > 1) {
        const list = candidates.map((s) => ` '${prefix}${s.name}'`).join("");
        const error = `${prog}: option '${prefix}${body}' is ambiguous; possibilities:${list}`;
        return { options, positionals, error };
      }
      if (candidates.length === 0) {
        const error = `${prog}: unrecognized option '${prefix}${body}'`;
        return { options, positionals, error, unknown: name };
      }
      found = candidates[0];
    }
    i++;
    if (eq >= 0) {
      if (!found.hasArg) {
        const error = `${prog}: option '${prefix}${found.name}' doesn't allow an argument`;
        return { options, positionals, error };
      }
      options.push([found.name, body.slice(eq + 1)]);
    } else if (found.hasArg) {
      if (i >= args.length) {
        const error = `${prog}: option '${prefix}${found.name}' requires an argument`;
        return { options, positionals, error };
      }
      options.push([found.name, args[i++]]);
    } else {
      options.push([found.name, ""]);
    }
  }
  return { options, positionals };
}
