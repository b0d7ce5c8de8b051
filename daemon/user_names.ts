/**
 * The name of a uid for messages, from `/etc/passwd` (`lib/hints/passwd.ts`); undefined when the
 * file cannot be read or has no such uid (a container's uid often has none).
 * @module
 */
import { userName } from "../lib/hints/passwd.ts";

/** The user name of `uid`, or undefined. */
export function userNameOf(uid: number): string | undefined {
  try {
    return userName(Deno.readTextFileSync("/etc/passwd"), uid);
  } catch {
    return undefined;
  }
}
