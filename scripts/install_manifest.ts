/**
 * The record `./dev install` keeps of what it put under a prefix (`PREFIX/lib/nfqlb/MANIFEST`),
 * so that `./dev uninstall` removes exactly that: one entry a line, `file PATH`, `link PATH` or
 * `dir PATH`, each path relative to the prefix (the tree can be copied elsewhere whole, e.g. into
 * a container image). Directories are those the install created, removed again only when empty.
 *
 * @example
 * ```ts
 * import { formatManifest, parseManifest } from "./install_manifest.ts";
 * const text = formatManifest([{ kind: "link", path: "bin/nfqlb" }]);
 * parseManifest(text); // [{ kind: "link", path: "bin/nfqlb" }]
 * ```
 * @module
 */

/** What an entry is: a regular file, a symbolic link, or a directory the install created. */
export type EntryKind = "file" | "link" | "dir";

/** One thing an install put under its prefix. */
export interface ManifestEntry {
  readonly kind: EntryKind;
  /** Relative to the prefix; `.` (only for `dir`) is the prefix itself. */
  readonly path: string;
}

/** The manifest's path relative to the prefix. */
export const MANIFEST_PATH = "lib/nfqlb/MANIFEST";

const HEADER = "# nfqlb install manifest: what ./dev install put here; ./dev uninstall removes it";

/** Where a file or link of an install may be: nfqlb's own directories and `bin/nfqlb`. */
const OWN_FILES = /^(bin\/nfqlb|lib\/nfqlb\/[^/]+|share\/doc\/nfqlb\/[^/]+)$/;

/**
 * Whether `path` is a plain relative path inside the prefix (no `..`, not absolute), and for a file
 * or a link one of nfqlb's own (`OWN_FILES`): a stale or edited manifest cannot make an uninstall
 * remove another program's file.
 */
function inside(kind: EntryKind, path: string): boolean {
  if (path === ".") return kind === "dir";
  const plain = path !== "" && !path.startsWith("/") &&
    path.split("/").every((s) => s !== "" && s !== "." && s !== "..");
  return plain && (kind === "dir" || OWN_FILES.test(path));
}

/** The manifest's text for `entries` (duplicates dropped, order kept). */
export function formatManifest(entries: readonly ManifestEntry[]): string {
  const seen = new Set<string>();
  const lines = [HEADER];
  for (const e of entries) {
    const line = `${e.kind} ${e.path}`;
    if (seen.has(line)) continue;
    seen.add(line);
    lines.push(line);
  }
  return lines.join("\n") + "\n";
}

/** The entries of a manifest's text; throws on a line that is not a valid entry. */
export function parseManifest(text: string): ManifestEntry[] {
  const entries: ManifestEntry[] = [];
  for (const [i, line] of text.split("\n").entries()) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^(file|link|dir) (.+)$/.exec(line);
    if (m === null || !inside(m[1] as EntryKind, m[2])) {
      throw new Error(`line ${i + 1} is not an entry: ${JSON.stringify(line)}`);
    }
    entries.push({ kind: m[1] as EntryKind, path: m[2] });
  }
  return entries;
}
