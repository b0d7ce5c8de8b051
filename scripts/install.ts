/**
 * `./dev install [--prefix=DIR] [--group=GROUP]` and `./dev uninstall [--prefix=DIR]` (DIR:
 * `/usr/local` unless given, an absolute path). Install builds the bundle (scripts/bundle.ts) and
 * puts under DIR:
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
 * Installing again replaces the files (each by a rename of a new file created under a random
 * name with O_EXCL: a running daemon keeps its copy) and removes the files of the earlier manifest
 * that the new install no longer has. It refuses a `bin/nfqlb` or `lib/nfqlb/` that an earlier
 * install did not make. Uninstall removes what the manifest lists and nfqlb's own directories
 * (`lib/nfqlb`, `share/doc/nfqlb`) once empty; never the prefix, `bin`, `lib`, `share` or
 * `share/doc`, which a relocated tree (the Containerfile copies one to `/usr/local/`) shares with
 * everything else.
 *
 * `--group=GROUP` installs `lib/nfqlb/deno` and the launcher as root:GROUP, mode 0750: only
 * root and GROUP's members may run them. That is the condition for a file capability on that Deno
 * (`setcap cap_net_admin+ep`): it is a general-purpose runtime, so whoever may run it gets
 * CAP_NET_ADMIN for any code.
 *
 * Usage: deno run --allow-all scripts/install.ts install|uninstall [--prefix=DIR] [--group=GROUP]
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
/** The directories an install makes when missing, parents first. */
const DIRS = [".", "bin", "lib", "lib/nfqlb", "share", "share/doc", "share/doc/nfqlb"];
/**
 * nfqlb's own directories, the only ones the manifest records and uninstall removes: the others
 * in {@link DIRS} are shared (a relocated tree's manifest would name `/usr/local/bin`).
 */
export const OWN_DIRS: readonly string[] = ["lib/nfqlb", "share/doc/nfqlb"];
/** The installed files `--group` restricts to root:GROUP 0750 (the Deno and its launcher). */
const GROUP_FILES = ["lib/nfqlb/deno", LAUNCHER];
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

/** `path` + `.new-` + 16 random hex digits: a temporary name nobody can predict. */
function tempName(path: string): string {
  const r = crypto.getRandomValues(new Uint8Array(8));
  return `${path}.new-${Array.from(r, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** Remove `path` if it is there. */
function removeIfThere(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/**
 * Copy `from` to `to` by way of a new file (random name, O_EXCL: never a file or link someone
 * planted) and a rename; with `gid`, owned by root:gid.
 */
async function place(from: string, to: string, mode: number, gid?: number): Promise<void> {
  const tmp = tempName(to);
  const out = await Deno.open(tmp, { write: true, createNew: true, mode: 0o600 });
  try {
    const src = await Deno.open(from, { read: true });
    await src.readable.pipeTo(out.writable); // closes both
    if (gid !== undefined) Deno.chownSync(tmp, 0, gid);
    Deno.chmodSync(tmp, mode); // after chown, which may clear mode bits
    Deno.renameSync(tmp, to);
  } catch (e) {
    try {
      out.close();
    } catch {
      // closed by pipeTo
    }
    removeIfThere(tmp);
    throw e;
  }
}

/** The numeric id of group `name` (a name or a number), by `getent group`. */
export async function groupId(name: string): Promise<number> {
  const r = await new Deno.Command("getent", { args: ["group", name], stdout: "piped" }).output();
  const gid = Number(new TextDecoder().decode(r.stdout).split(":")[2]);
  if (!r.success || !Number.isInteger(gid)) {
    throw new InstallError(
      `--group=${name}: no such group (getent group ${name}); nothing changed`,
    );
  }
  return gid;
}

/** Options of {@link install}. */
export interface InstallOptions {
  /** Install the Deno and the launcher as root:group, mode 0750. */
  readonly group?: string;
}

/** Install under `prefix` (absolute); `say` gets one line per thing installed. */
export async function install(
  prefix: string,
  say: (line: string) => void,
  opts: InstallOptions = {},
): Promise<void> {
  const previous = readManifest(prefix);
  checkForeign(prefix, previous);
  const gid = opts.group === undefined ? undefined : await groupId(opts.group);
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
    const entries: ManifestEntry[] = [
      ...OWN_DIRS.map((path): ManifestEntry => ({ kind: "dir", path })),
      ...files.map(([, path]): ManifestEntry => ({ kind: "file", path })),
      { kind: "link", path: COMMAND },
      { kind: "file", path: MANIFEST_PATH },
    ];
    const orphans = (previous ?? []).filter((e) =>
      e.kind !== "dir" && !entries.some((n) => n.kind === e.kind && n.path === e.path)
    );
    // The manifest first, with the earlier install's files: an install that fails half-way can
    // still be uninstalled, whole.
    Deno.writeTextFileSync(
      `${prefix}/${MANIFEST_PATH}`,
      formatManifest([...entries.slice(0, -1), ...orphans, entries.at(-1)!]),
    );
    for (const [from, path, mode] of files) {
      const restricted = gid !== undefined && GROUP_FILES.includes(path);
      await place(
        from,
        `${prefix}/${path}`,
        restricted ? 0o750 : mode,
        restricted ? gid : undefined,
      );
      say(
        `installed ${prefix}/${path}` +
          (restricted ? ` (root:${opts.group} 0750: only root and ${opts.group} may run it)` : ""),
      );
    }
    const link = `${prefix}/${COMMAND}`;
    const tmp = tempName(link);
    Deno.symlinkSync(COMMAND_TARGET, tmp); // fails if the name exists
    Deno.renameSync(tmp, link);
    say(`installed ${link} -> ${COMMAND_TARGET}`);
    for (const e of orphans) removeEntry(prefix, e, say, "no longer installed");
    Deno.writeTextFileSync(`${prefix}/${MANIFEST_PATH}`, formatManifest(entries));
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

/** Remove the file or link of entry `e` under `prefix` if it is still one; `why` is said. */
function removeEntry(
  prefix: string,
  e: ManifestEntry,
  say: (line: string) => void,
  why?: string,
): void {
  const path = `${prefix}/${e.path}`;
  const info = lstat(path);
  if (info === undefined) return;
  if ((e.kind === "link") !== info.isSymlink || info.isDirectory) {
    say(`kept ${path}: not the ${e.kind} the install made`);
    return;
  }
  Deno.removeSync(path);
  say(`removed ${path}${why === undefined ? "" : ` (${why})`}`);
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
  // Files and the link, the manifest last; then nfqlb's own directories, deepest first (an
  // earlier install's manifest may name shared ones, such as the prefix or bin: never those).
  const things = entries.filter((e) => e.kind !== "dir" && e.path !== MANIFEST_PATH);
  for (const e of [...things, { kind: "file", path: MANIFEST_PATH } as const]) {
    removeEntry(prefix, e, say);
  }
  const listed = entries.filter((e) => e.kind === "dir").map((e) => e.path);
  for (const d of listed.filter((d) => !OWN_DIRS.includes(d))) {
    if (lstat(under(prefix, d)) !== undefined) {
      say(`kept ${under(prefix, d)}: not nfqlb's own directory`);
    }
  }
  const depth = (d: string) => d.split("/").length;
  const own = listed.filter((d) => OWN_DIRS.includes(d)).sort((a, b) => depth(b) - depth(a));
  for (const d of own) {
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

/** The `--prefix` (absolute, without a trailing slash; else the default) and `--group` of `args`. */
function parseArgs(action: string, args: string[]): { prefix: string; group?: string } {
  let prefix = DEFAULT_PREFIX;
  let group: string | undefined;
  const usage = action === "install" ? "[--prefix=DIR] [--group=GROUP]" : "[--prefix=DIR]";
  for (const a of args) {
    const m = /^--(prefix|group)=(.*)$/.exec(a);
    if (m === null || (m[1] === "group" && action !== "install")) {
      throw new InstallError(`unknown argument [${a}]; usage: ${usage}`);
    }
    if (m[1] === "prefix") prefix = m[2];
    else group = m[2];
  }
  if (!prefix.startsWith("/")) {
    throw new InstallError(`--prefix must be an absolute path, not [${prefix}]`);
  }
  return { prefix: prefix.replace(/\/+$/, "") || "/", group };
}

if (import.meta.main) {
  const [action, ...rest] = Deno.args;
  const say = (line: string) => console.log(`${action}: ${line}`);
  try {
    if (action !== "install" && action !== "uninstall") {
      throw new InstallError(
        "usage: install [--prefix=DIR] [--group=GROUP] | uninstall [--prefix=DIR]",
      );
    }
    const { prefix, group } = parseArgs(action, rest);
    if (action === "install") await install(prefix, say, { group });
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
