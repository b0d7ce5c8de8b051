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

/**
 * The note on stderr after `stats` printed an object whose queues (`queues`, as text: `0:3`, with
 * `plural` when more than one) have no listener in this network namespace
 * (`lib/doctor/checks.ts` `foreignQueues`): its counters are not this namespace's daemon's.
 */
export function statsForeignNote(name: string, queues: string, plural: boolean): string {
  return `nfqlb: ${name} is not of a daemon in this network namespace (its ` +
    `${plural ? `queues ${queues} have` : `queue ${queues} has`} no listener here; /dev/shm is ` +
    "shared by the host's namespaces): these may be another namespace's or a stopped daemon's " +
    "counters";
}

/** Who owns an object and its permission bits, as `stat` found them. */
export interface ShmOwnerFacts {
  readonly uid: number;
  readonly mode: number;
}

/** `uid 0 (root), mode 0600`: an owner as the hints name it; `user` is the owner's name if known. */
export function ownerText(owner: ShmOwnerFacts, user?: string): string {
  const name = user === undefined ? "" : ` (${user})`;
  return `uid ${owner.uid}${name}, mode ${owner.mode.toString(8).padStart(4, "0")}`;
}

/** Whether `errno` is a permission error (EACCES, EPERM). */
export function isDenied(errno: number): boolean {
  return errno === EACCES || errno === EPERM;
}

/**
 * The line after `FAILED mapSharedData: <name>` when a daemon (`lb`, `flowlb`, or `flow-set`
 * through one) is denied table `name`: the table must belong to the daemon's uid. `owner` is
 * what `stat` found (undefined when it could not), `user` the owner's name if known.
 *
 * @example
 * ```ts
 * import { daemonDeniedHint } from "./shm.ts";
 * daemonDeniedHint("t", "Permission denied", 65534, { uid: 0, mode: 0o600 }, "root");
 * // "  /dev/shm/t: Permission denied; owned by uid 0 (root), mode 0600: the table must belong to
 * //  the daemon's uid 65534: create it with nfqlb init run as uid 65534 ..., or chown 65534 /dev/shm/t"
 * ```
 */
export function daemonDeniedHint(
  name: string,
  strerror: string,
  daemonUid: number,
  owner: ShmOwnerFacts | undefined,
  user?: string,
): string {
  const found = owner === undefined ? "" : `; owned by ${ownerText(owner, user)}`;
  return `  /dev/shm/${name}: ${strerror}${found}: the table must belong to the daemon's uid ` +
    `${daemonUid}: create it with nfqlb init run as uid ${daemonUid} ` +
    `(setpriv --reuid=${daemonUid} nfqlb init --shm=${name} ...), or chown ${daemonUid} ` +
    `/dev/shm/${name}`;
}

/**
 * The line after `createSharedData: Permission denied` when `nfqlb-trace` or the `ftshm` object
 * exists and this process may not open it (e.g. left by an earlier run as root): the object, its
 * owner and mode, and the two fixes: remove it, or give this daemon one of its own (`own`, e.g.
 * `NFQLB_TRACE_SHM=nfqlb-trace.<suffix>` or `--ft_shm=NAME`).
 *
 * @example
 * ```ts
 * import { createDeniedHint } from "./shm.ts";
 * createDeniedHint("ftshm", 65534, { uid: 0, mode: 0o600 }, "root", "--ft_shm=NAME");
 * // "  /dev/shm/ftshm: owned by uid 0 (root), mode 0600: uid 65534 may not open it; remove it as
 * //  root (rm /dev/shm/ftshm), or give this daemon its own with --ft_shm=NAME"
 * ```
 */
export function createDeniedHint(
  name: string,
  selfUid: number,
  owner: ShmOwnerFacts | undefined,
  user: string | undefined,
  own: string,
): string {
  const who = owner === undefined
    ? `/dev/shm/${name}: uid ${selfUid} may not open it`
    : `/dev/shm/${name}: owned by ${ownerText(owner, user)}: uid ${selfUid} may not open it`;
  const remover = owner === undefined || owner.uid === 0 ? "root" : `root or uid ${owner.uid}`;
  return `  ${who}; when no nfqlb uses it any more, remove it as ${remover} ` +
    `(rm /dev/shm/${name}), or give this daemon its own ` +
    `with ${own}`;
}
