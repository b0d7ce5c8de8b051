/**
 * The listening sockets of `/proc/net/unix` (this network namespace's unix sockets): which
 * inode listens on an abstract name, so the process holding it can be found through
 * `/proc/<pid>/fd` (`socket:[<inode>]`). Pure: works on the file's text.
 *
 * @example
 * ```ts
 * import { listeningUnixInodes } from "./proc_net_unix.ts";
 * const text = "Num       RefCount Protocol Flags    Type St Inode Path\n" +
 *   "0000000000000000: 00000002 00000000 00010000 0001 01 4242 @nfqlb\n";
 * listeningUnixInodes(text, "nfqlb"); // [4242]
 * ```
 * @module
 */

/** `__SO_ACCEPTCON` in the Flags column: the socket listens. */
const SO_ACCEPTCON = 0x10000;

/** Inodes of the sockets that listen on the abstract unix name `name` (`@name` in the file). */
export function listeningUnixInodes(text: string, name: string): number[] {
  const out: number[] = [];
  for (const line of text.split("\n").slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 8) continue;
    const flags = parseInt(cols[3], 16);
    if ((flags & SO_ACCEPTCON) === 0) continue;
    if (cols.slice(7).join(" ") !== `@${name}`) continue;
    const inode = Number(cols[6]);
    if (Number.isSafeInteger(inode) && inode > 0) out.push(inode);
  }
  return out;
}
