/**
 * `./dev install [--prefix=DIR]` and `./dev uninstall [--prefix=DIR]` (DIR: `/usr/local` unless
 * given, an absolute path). Install builds the bundle (scripts/bundle.ts) and puts under DIR:
 *
 * - `lib/nfqlb/nfqlb` (the bundle) and its five `*_worker.ts` modules,
 * - `lib/nfqlb/deno`, a copy of the Deno that runs this script, so the command needs no `deno`
 *   in `PATH` (a systemd unit's `PATH` is systemd's own, a container's has no Deno),
 * - `lib/nfqlb/nfqlb.sh`, the launcher: it runs the bundle with that Deno, both found next to
 *   its own real path, so any symlink to it works and the tree can be copied elsewhere whole,
 * - `bin/nfqlb`, a relative symlink to the launcher,
 * - `share/doc/nfqlb/README.md`,
 * - `lib/nfqlb/MANIFEST` (scripts/install_manifest.ts): what was put there, for uninstall.
 *
 * Installing again replaces the files (each by a rename: a running daemon keeps its copy). It
 * refuses a `bin/nfqlb` or `lib/nfqlb/` that an earlier install did not make. Uninstall removes
 * what the manifest lists and the directories the install created, once empty.
 *
 * Usage: deno run --allow-all scripts/install.ts install|uninstall [--prefix=DIR]
 * @module
 */
import { bundleTo } from "./bundle.ts";
import { WORKER_MODULES } from "../daemon/worker_url.ts";
import {
  formatManifest,
  MANIFEST_PATH,
  type ManifestEntry,
  parseManifest,
} from "./install_manifest.ts";

/** Where `./dev install` installs unless `--prefix` says otherwise. */
export const DEFAULT_PREFIX = "/usr/local";
/** The command, relative to the prefix: a symlink to {@link LAUNCHER}. */
const COMMAND = "bin/nfqlb";
/** The launcher, relative to the prefix. */
const LAUNCHER = "lib/nfqlb/nfqlb.sh";
/** Where {@link COMMAND} points: relative, so the tree can move. */
const COMMAND_TARGET = "../lib/nfqlb/nfqlb.sh";
/** The directories an install may create, parents first. */
const DIRS = [".", "bin", "lib", "lib/nfqlb", "share", "share/doc", "share/doc/nfqlb"];
const root = new URL("../", import.meta.url).pathname;

/**
 * The launcher's text. `readlink -f` resolves every symlink on the way to it; `--no-config`
 * keeps a `deno.json` in the caller's directory out of it.
 */
const LAUNCHER_TEXT = `#!/bin/sh
# nfqlb, as ./dev install put it here: the bundle beside this file, run by the Deno beside it
# (no PATH lookup). Symlinks to this file work: both are found next to its real path.
here=$(dirname "$(readlink -f "$0")")
export DENO_NO_UPDATE_CHECK=1
exec "$here/deno" run --allow-all --no-config "$here/nfqlb" "$@"
`;

/** An install or uninstall that cannot go on; its message is the one line printed. */
export class InstallError extends Error {}

/** The path of `rel` (a manifest path; `.`: the prefix itself) under `prefix`. */
function under(prefix: string, rel: string): string {
  return rel === "." ? prefix : `${prefix}/${rel}`;
}

function lstat(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.lstatSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** The entries of the manifest under `prefix`, or `undefined` when there is none. */
function readManifest(prefix: string): ManifestEntry[] | undefined {
  const path = `${prefix}/${MANIFEST_PATH}`;
  let text;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  try {
    return parseManifest(text);
  } catch (e) {
    throw new InstallError(`${path}: ${(e as Error).message}; nothing changed`);
  }
}

/** Refuse a `bin/nfqlb` or a non-empty `lib/nfqlb/` that no earlier install recorded. */
function checkForeign(prefix: string, previous: ManifestEntry[] | undefined): void {
  const command = lstat(`${prefix}/${COMMAND}`);
  if (command !== undefined && !previous?.some((e) => e.path === COMMAND)) {
    throw new InstallError(
      `${prefix}/${COMMAND} exists and no earlier ./dev install made it (not in ` +
        `${prefix}/${MANIFEST_PATH}); remove it or choose another --prefix; nothing changed`,
    );
  }
  const lib = `${prefix}/lib/nfqlb`;
  if (previous === undefined && lstat(lib) !== undefined && [...Deno.readDirSync(lib)].length) {
    throw new InstallError(
      `${lib} exists, is not empty and has no MANIFEST (not made by ./dev install); remove it ` +
        "or choose another --prefix; nothing changed",
    );
  }
}

/** Copy `from` to `to` by way of a temporary file and a rename. */
function place(from: string, to: string, mode: number): void {
  const tmp = `${to}.new-${Deno.pid}`;
  try {
    Deno.copyFileSync(from, tmp);
    Deno.chmodSync(tmp, mode);
    Deno.renameSync(tmp, to);
  } catch (e) {
    try {
      Deno.removeSync(tmp);
    } catch {
      // not created
    }
    throw e;
  }
}

/** Install under `prefix` (absolute); `say` gets one line per thing installed. */
export async function install(prefix: string, say: (line: string) => void): Promise<void> {
  const previous = readManifest(prefix);
  checkForeign(prefix, previous);
  const created = DIRS.filter((d) => lstat(under(prefix, d)) === undefined);
  const build = Deno.makeTempDirSync({ prefix: "nfqlb-install-" });
  try {
    await bundleTo(`${build}/nfqlb`);
    Deno.writeTextFileSync(`${build}/nfqlb.sh`, LAUNCHER_TEXT);
    const files: [string, string, number][] = [
      [`${build}/nfqlb`, "lib/nfqlb/nfqlb", 0o755],
      ...WORKER_MODULES.map((w): [string, string, number] => [
        `${build}/${w}`,
        `lib/nfqlb/${w}`,
        0o644,
      ]),
      [Deno.realPathSync(Deno.execPath()), "lib/nfqlb/deno", 0o755],
      [`${build}/nfqlb.sh`, LAUNCHER, 0o755],
      [`${root}README.md`, "share/doc/nfqlb/README.md", 0o644],
    ];
    for (const d of DIRS) Deno.mkdirSync(under(prefix, d), { recursive: true });
    // The manifest first: an install that fails half-way can still be uninstalled.
    const entries: ManifestEntry[] = [
      ...(previous ?? []).filter((e) => e.kind === "dir"),
      ...created.map((path): ManifestEntry => ({ kind: "dir", path })),
      ...files.map(([, path]): ManifestEntry => ({ kind: "file", path })),
      { kind: "link", path: COMMAND },
      { kind: "file", path: MANIFEST_PATH },
    ];
    Deno.writeTextFileSync(`${prefix}/${MANIFEST_PATH}`, formatManifest(entries));
    for (const [from, path, mode] of files) {
      place(from, `${prefix}/${path}`, mode);
      say(`installed ${prefix}/${path}`);
    }
    const link = `${prefix}/${COMMAND}`;
    const tmp = `${link}.new-${Deno.pid}`;
    Deno.symlinkSync(COMMAND_TARGET, tmp);
    Deno.renameSync(tmp, link);
    say(`installed ${link} -> ${COMMAND_TARGET}`);
    say(`installed ${prefix}/${MANIFEST_PATH} (what ./dev uninstall removes)`);
  } finally {
    Deno.removeSync(build, { recursive: true });
  }
  await checkRuns(prefix, say);
}

/** Run the installed command with no `deno` in `PATH`: it must print the version. */
async function checkRuns(prefix: string, say: (line: string) => void): Promise<void> {
  const command = `${prefix}/${COMMAND}`;
  const r = await new Deno.Command(command, {
    args: ["version"],
    clearEnv: true,
    env: { PATH: "/usr/bin:/bin", HOME: Deno.env.get("HOME") ?? "/" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(r.stdout).trim();
  if (!r.success) {
    const err = new TextDecoder().decode(r.stderr).trim().split("\n")[0];
    throw new InstallError(`installed, but ${command} version fails (exit ${r.code}): ${err}`);
  }
  say(`${command} runs (nfqlb version: ${out})`);
}

/** Remove what the manifest under `prefix` lists; `say` gets one line per thing removed. */
export function uninstall(prefix: string, say: (line: string) => void): void {
  const entries = readManifest(prefix);
  if (entries === undefined) {
    if (lstat(`${prefix}/${COMMAND}`) !== undefined || lstat(`${prefix}/lib/nfqlb`) !== undefined) {
      throw new InstallError(
        `no ${prefix}/${MANIFEST_PATH}: what is there was not installed by ./dev install; ` +
          "nothing removed",
      );
    }
    say(`nothing of nfqlb in ${prefix}: nothing removed`);
    return;
  }
  // Files and the link, the manifest last; then the directories, deepest first.
  const things = entries.filter((e) => e.kind !== "dir" && e.path !== MANIFEST_PATH);
  for (const e of [...things, { kind: "file", path: MANIFEST_PATH }]) {
    const path = `${prefix}/${e.path}`;
    const info = lstat(path);
    if (info === undefined) continue;
    if ((e.kind === "link") !== info.isSymlink || info.isDirectory) {
      say(`kept ${path}: not the ${e.kind} the install made`);
      continue;
    }
    Deno.removeSync(path);
    say(`removed ${path}`);
  }
  const dirs = entries.filter((e) => e.kind === "dir").map((e) => e.path);
  const depth = (d: string) => d === "." ? 0 : d.split("/").length;
  dirs.sort((a, b) => depth(b) - depth(a));
  for (const d of dirs) {
    const path = under(prefix, d);
    if (lstat(path) === undefined) continue;
    if ([...Deno.readDirSync(path)].length > 0) {
      say(`kept ${path}: not empty`);
      continue;
    }
    Deno.removeSync(path);
    say(`removed ${path}`);
  }
}

/** The `--prefix` of `args` (absolute, without a trailing slash), or the default. */
function parsePrefix(args: string[]): string {
  let prefix = DEFAULT_PREFIX;
  for (const a of args) {
    const m = /^--prefix=(.*)$/.exec(a);
    if (m === null) throw new InstallError(`unknown argument [${a}]; usage: [--prefix=DIR]`);
    prefix = m[1];
  }
  if (!prefix.startsWith("/")) {
    throw new InstallError(`--prefix must be an absolute path, not [${prefix}]`);
  }
  return prefix.replace(/\/+$/, "") || "/";
}

if (import.meta.main) {
  const [action, ...rest] = Deno.args;
  const say = (line: string) => console.log(`${action}: ${line}`);
  try {
    if (action !== "install" && action !== "uninstall") {
      throw new InstallError("usage: install|uninstall [--prefix=DIR]");
    }
    const prefix = parsePrefix(rest);
    if (action === "install") await install(prefix, say);
    else uninstall(prefix, say);
  } catch (e) {
    const text = e instanceof InstallError
      ? e.message
      : e instanceof Deno.errors.PermissionDenied
      ? `${(e as Error).message}: run as root, or choose a --prefix you can write`
      : e instanceof Error
      ? e.message
      : String(e);
    console.error(`${action ?? "install"}: ${text}`);
    Deno.exit(1);
  }
}
