/**
 * The errors of a shared-memory object this process was denied, with the owner and mode `stat`
 * finds and the owner's name (docs/COMPATIBILITY.md#differences D63): `createSharedData` of
 * `nfqlb-trace` or the `ftshm` object, and a daemon's target table.
 * @module
 */
import type { LibcError } from "../ffi/libc.ts";
import { statShm } from "../ffi/shm.ts";
import { createDeniedHint, daemonDeniedHint, isDenied } from "../lib/hints/shm.ts";
import { ShmCreateError, type TableOpenError } from "./errors.ts";
import { userNameOf } from "./user_names.ts";

/** Owner and mode of `/dev/shm/<name>`, undefined when it cannot be found. */
function ownerOf(name: string) {
  try {
    return statShm(name);
  } catch {
    return undefined;
  }
}

/**
 * `createSharedData: <strerror>` for object `name`; when the error is a permission error, with
 * the hint naming the owner and the fixes (`own`: how this daemon gets an object of its own).
 */
export function shmCreateError(name: string, e: LibcError, own: string): ShmCreateError {
  if (!isDenied(e.errno)) return new ShmCreateError(name, e.message);
  const owner = ownerOf(name);
  const user = owner === undefined ? undefined : userNameOf(owner.uid);
  const hint = createDeniedHint(name, Deno.uid() ?? 0, owner, user, own);
  return new ShmCreateError(name, e.message, hint);
}

/**
 * For a daemon (`lb`, `flowlb`, `flow-set` through one): when `e` is a permission error, its hint
 * says the table must belong to the daemon's uid, with the owner found; returns `e`.
 */
export function forDaemon(e: TableOpenError): TableOpenError {
  if (e.problem !== "map" || !isDenied(e.errno)) return e;
  const owner = ownerOf(e.shm);
  const user = owner === undefined ? undefined : userNameOf(owner.uid);
  e.hint = daemonDeniedHint(e.shm, e.detail, Deno.uid() ?? 0, owner, user);
  return e;
}
