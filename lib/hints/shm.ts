/**
 * The cause and the fix after 1.2.0's `FAILED mapSharedData: <name>` (and the `FAIL: Couldn't
 * create load-balancer` of a flow's target): what the errno of `shm_open`/`mmap` means for an
 * object in `/dev/shm`, and the command that makes it usable. Pure text; the caller has the
 * errno (docs/COMPATIBILITY.md#command-line).
 *
 * @example
 * ```ts
 * import { shmMapCause, tableFix } from "./shm.ts";
 * shmMapCause("ux-nope", 2, "No such file or directory");
 * // "/dev/shm/ux-nope: No such file or directory"
 * tableFix("ux-nope", 2, "shm"); // "create it with: nfqlb init --shm=ux-nope [--M=997 --N=32]"
 * ```
 * @module
 */

/** errno values (Linux, x86-64) the hints tell apart. */
const EPERM = 1;
const ENOENT = 2;
const EACCES = 13;
const EINVAL = 22;
const ENAMETOOLONG = 36;

/** Which option named a table: `--shm` (table commands, flow targets), lb's `--tshm`, `--lbshm`. */
export type TableOption = "shm" | "tshm" | "lbshm";

/** Whether `errno` says the object does not exist. */
export function isMissing(errno: number): boolean {
  return errno === ENOENT;
}

/** `/dev/shm/<name>: <strerror>`, or why the name itself is not usable. */
export function shmMapCause(name: string, errno: number, strerror: string): string {
  if (errno === EINVAL && name.includes("/")) {
    return `[${name}]: ${strerror}: a shm name is one file name in /dev/shm, without '/'`;
  }
  if (errno === ENAMETOOLONG) return `[${name}]: ${strerror}: at most 255 bytes`;
  if (errno === EINVAL) {
    return `/dev/shm/${name}: ${strerror}: the object is empty (0 bytes), not initialised`;
  }
  return `/dev/shm/${name}: ${strerror}`;
}

/** Who may open an object, for permission errors. */
function permissionFix(name: string): string {
  return `check its owner and mode (ls -l /dev/shm/${name}): run as root or as its owner`;
}

/**
 * What makes target table `name` usable after a failure with `errno`: the `nfqlb init` that
 * creates (or initialises) it, or what to check; `option` says which option named it.
 */
export function tableFix(name: string, errno: number, option: TableOption): string {
  if (errno === EACCES || errno === EPERM) return permissionFix(name);
  if (errno === ENAMETOOLONG || (errno === EINVAL && name.includes("/"))) {
    return `give another name with --${option}=NAME`;
  }
  const init = option === "lbshm"
    ? `nfqlb init --shm=${name} --ownfw=FWMARK [--M=997 --N=32]`
    : `nfqlb init --shm=${name} [--M=997 --N=32]`;
  const verb = errno === EINVAL ? "initialise it" : "create it";
  const other = option === "tshm" ? `, or name the table lb should use with --tshm=NAME` : "";
  return `${verb} with: ${init}${other}`;
}

/** The line after `FAILED mapSharedData: <name>` for a target table (two spaces first). */
export function tableMapHint(
  name: string,
  errno: number,
  strerror: string,
  option: TableOption,
): string {
  return `  ${shmMapCause(name, errno, strerror)}; ${tableFix(name, errno, option)}`;
}

/**
 * The line after `FAILED mapSharedData: <name>` for `stats`: the object is created by a running
 * `lb`/`flowlb` (`--ft_shm`, default `ftshm`), so a missing one means no daemon made it.
 */
export function statsMapHint(name: string, errno: number, strerror: string): string {
  const cause = shmMapCause(name, errno, strerror);
  if (errno === EACCES || errno === EPERM) return `  ${cause}; ${permissionFix(name)}`;
  if (errno !== ENOENT) return `  ${cause}`;
  return `  ${cause}; no lb or flowlb on this host has created its statistics object ` +
    `${name}: is one running? (one started with --ft_shm=NAME: nfqlb stats --ft_shm=NAME)`;
}
