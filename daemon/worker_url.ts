/**
 * Where the daemons' worker modules are: next to the module that starts them, once symlinks are
 * resolved. In the source tree that is `daemon/`; in the bundle (`scripts/bundle.ts`) every module
 * is the one file `nfqlb`, and the workers are written beside it. A symlink to that file
 * (`/usr/local/bin/nfqlb -> .../dist/nfqlb`) makes `import.meta.url` the link's path, so the
 * workers are looked for next to the real file, and a missing one is a one-line error that says
 * the fix instead of a Deno stack trace from inside a worker.
 * @module
 */
import { WorkerMissingError } from "./errors.ts";

/** The worker modules the daemons start, by file name: the bundle writes each beside `nfqlb`. */
export const WORKER_MODULES = [
  "queue_worker.ts",
  "control_worker.ts",
  "trace_worker.ts",
  "metrics_worker.ts",
  "fastpath_worker.ts",
] as const;

/** The file name of one of {@link WORKER_MODULES}. */
export type WorkerModule = typeof WORKER_MODULES[number];

/** The real path of the file at `base` (a `file:` URL), or `undefined` when it has none. */
function realFile(base: URL): string | undefined {
  if (base.protocol !== "file:") return undefined;
  try {
    return Deno.realPathSync(base);
  } catch {
    return undefined; // e.g. a virtual file of `deno compile`: taken as it is
  }
}

/**
 * The URL of worker module `name`, a sibling of the module at `base` (its `import.meta.url`)
 * after symlinks are resolved.
 *
 * @example
 * ```ts
 * import { workerUrl } from "./worker_url.ts";
 * workerUrl("queue_worker.ts", import.meta.url).pathname.endsWith("/queue_worker.ts"); // true
 * ```
 */
export function workerUrl(name: WorkerModule, base: string): URL {
  const url = new URL(base);
  const real = realFile(url);
  if (real === undefined) return new URL(name, url);
  const file = new URL("file:///");
  file.pathname = real; // percent-encodes what a path may hold and a URL may not (`#`, `?`)
  return new URL(name, file);
}

/**
 * Check that every worker module is where {@link workerUrl} finds it, before a daemon starts
 * anything: throws a {@link WorkerMissingError} naming the first one missing and the command's
 * real path.
 */
export function checkWorkers(base: string): void {
  for (const name of WORKER_MODULES) {
    const url = workerUrl(name, base);
    if (url.protocol !== "file:") continue;
    try {
      Deno.statSync(url);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      const dir = new URL(".", url);
      throw new WorkerMissingError(
        decodeURIComponent(url.pathname),
        decodeURIComponent(dir.pathname).replace(/\/$/, ""),
      );
    }
  }
}
