/**
 * A failing syscall layer for tests: {@link failCalls} replaces one symbol of `getLibc()` (the
 * object every FFI module calls through) so that its next calls fail with the given errnos, one
 * per call, before it behaves normally again. Only the calling thread is affected (each worker
 * opens its own libc).
 *
 * @example
 * ```ts ignore
 * const restore = failCalls("recvmmsg", [EINTR, ENOMEM]);
 * try {
 *   // ... the next two recvmmsg calls return -1 with errno EINTR, then ENOMEM
 * } finally {
 *   restore();
 * }
 * ```
 * @module
 */
import { getLibc, setErrno } from "../ffi/libc.ts";

/** What a failing call may be told about itself: its 0-based number among the calls made. */
export type FailHook = (call: number) => void;

/**
 * Make calls of `name` fail (return −1 with that errno): call c fails with `errnos[c]` (or
 * `errnos(c)`), 0 = the real call. `onCall`, if given, hears of every call first. Returns the
 * function that puts the real one back.
 */
export function failCalls(
  name: "recvmmsg" | "sendmsg",
  errnos: readonly number[] | ((call: number) => number),
  onCall?: FailHook,
): () => void {
  const libc = getLibc() as Record<string, unknown>;
  const real = libc[name] as (...args: unknown[]) => number;
  let calls = 0;
  const errnoOf = typeof errnos === "function" ? errnos : (c: number) => errnos[c] ?? 0;
  libc[name] = (...args: unknown[]) => {
    const c = calls++;
    onCall?.(c);
    const e = errnoOf(c);
    if (e === 0) return real(...args);
    setErrno(e);
    return -1;
  };
  return () => {
    libc[name] = real;
  };
}
