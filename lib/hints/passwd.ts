/**
 * A user's name from the text of `/etc/passwd` (what `getpwuid` would find in the files
 * database), for hints that name a uid. Pure: the caller reads the file.
 *
 * @example
 * ```ts
 * import { userName } from "./passwd.ts";
 * userName("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n", 65534); // "nobody"
 * ```
 * @module
 */

/** The name of the first `/etc/passwd` entry with uid `uid`, or undefined. */
export function userName(passwd: string, uid: number): string | undefined {
  for (const line of passwd.split("\n")) {
    const f = line.split(":");
    if (f.length >= 3 && f[0] !== "" && /^\d+$/.test(f[2]) && Number(f[2]) === uid) return f[0];
  }
  return undefined;
}
