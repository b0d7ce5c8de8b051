/**
 * Failures of the daemon layer (option validation, shared memory, servers,
 * threads). Each error carries the facts as fields; its `message` is built
 * from them once, here, as the one line nfqlb 1.2.0 prints for it, so the
 * same text reaches stderr whether the failure happens in the main thread or
 * in a worker (which can only pass text or plain data back). The command
 * layer decides how a failure ends a command (stderr, exit status 1); see
 * `docs/COMPATIBILITY.md#command-line`.
 * @module
 */
import { tableMapHint, type TableOption } from "../lib/hints/shm.ts";
import { queueInvalid } from "../lib/hints/accepted.ts";

/** Base class of every failure the daemon layer reports. */
export class DaemonError extends Error {
  /**
   * Lines printed after `message` (each starting with two spaces, no final newline): the cause
   * and the fix, after the line 1.2.0 prints and a script may parse; undefined when none.
   */
  hint: string | undefined;
  constructor(message: string, hint?: string) {
    super(message);
    this.name = "DaemonError";
    this.hint = hint;
  }
}

/** Why a target table could not be used. */
export type TableProblem =
  /** `shm_open`/`mmap` failed; `detail` is the `strerror` text. */
  | "map"
  /** The object exists but is not a valid table; `detail` says why. */
  | "format";

/**
 * A target table (`--tshm`, `--lbshm`, `--shm`, a flow's target) could not be mapped. The
 * message is 1.2.0's line; for a map failure the {@link DaemonError.hint} gives the errno text
 * and the fix ({@link tableMapHint}).
 */
export class TableOpenError extends DaemonError {
  /** The shm name as given. */
  readonly shm: string;
  readonly problem: TableProblem;
  /** `strerror` text (map) or what is wrong with the object (format). */
  readonly detail: string;
  /** errno of the failed call (map), 0 when not known. */
  readonly errno: number;
  constructor(shm: string, problem: TableProblem, detail: string, errno = 0) {
    super(
      problem === "map"
        ? `FAILED mapSharedData: ${shm}`
        : `FAILED mapSharedData: ${shm}; not a valid target table: ${detail}`,
    );
    this.name = "TableOpenError";
    this.shm = shm;
    this.problem = problem;
    this.detail = detail;
    this.errno = errno;
    this.forOption("shm");
  }

  /** Say the fix for a table named by `--<option>` (lb's `--tshm`, `--lbshm`); returns this. */
  forOption(option: TableOption): this {
    if (this.problem === "map") {
      this.hint = tableMapHint(this.shm, this.errno, this.detail, option);
    }
    return this;
  }
}

/** A shared-memory object could not be created or truncated (`createSharedData`). */
export class ShmCreateError extends DaemonError {
  readonly shm: string;
  /** `strerror` text, e.g. `Invalid argument`. */
  readonly strerror: string;
  /** `hint`: the cause and the fix, lines after 1.2.0's (see {@link DaemonError.hint}). */
  constructor(shm: string, strerror: string, hint?: string) {
    super(`createSharedData: ${strerror}`, hint);
    this.name = "ShmCreateError";
    this.shm = shm;
    this.strerror = strerror;
  }
}

/**
 * An existing shared-memory object nfqlb must not use: another user than root or this one owns
 * it, or group or others may write it (they could change it, or truncate it under the mapping).
 */
export class ShmUntrustedError extends DaemonError {
  readonly shm: string;
  /** What is wrong, e.g. `owned by uid 65534, expected root or uid 0`. */
  readonly problem: string;
  constructor(shm: string, problem: string) {
    super(
      `${shm}: refusing /dev/shm/${shm}: ${problem} (another user could change or truncate it); ` +
        `remove it (rm /dev/shm/${shm}) and try again`,
    );
    this.name = "ShmUntrustedError";
    this.shm = shm;
    this.problem = problem;
  }
}

/** An existing shared-memory object is smaller than its layout needs. */
export class ShmSizeError extends DaemonError {
  readonly shm: string;
  /** Size of the object in bytes. */
  readonly size: number;
  constructor(shm: string, size: number) {
    super(`${shm}: object too small (${size} bytes)`);
    this.name = "ShmSizeError";
    this.shm = shm;
    this.size = size;
  }
}

/** What is wrong with an option value. */
export type OptionProblem =
  /** Not an integer in `min..max`. */
  | { kind: "integer"; min: number; max: number }
  /** `--mtu` below the minimum 1.2.0 accepts. */
  | { kind: "mtu-low" }
  /** `--mtu` above what NFQUEUE can copy. */
  | { kind: "mtu-high"; max: number }
  /** `--queue` is neither `N` nor `first:last`. */
  | { kind: "queue" }
  /** Not a socket address (`unix:NAME`, `tcp:HOST:PORT`). */
  | { kind: "address" }
  /** `--metrics` is not `ADDR:PORT` (`127.0.0.1:9100`, `[::1]:9100`, `localhost:9100`). */
  | { kind: "listen" }
  /** Not an nftables name the fast path accepts (letters, digits, `_`, `-`; at most 64). */
  | { kind: "nft-name" };

function optionMessage(option: string, value: string, p: OptionProblem): string {
  switch (p.kind) {
    case "integer":
      return `Invalid --${option}=${value}; expected an integer in ${p.min}..${p.max}`;
    case "mtu-low":
      return `Invalid MTU; ${value}`;
    case "mtu-high":
      return `Invalid MTU; ${value} (at most ${p.max})`;
    case "queue":
      return queueInvalid(value);
    case "address":
      return `Failed to parse address [${value}]`;
    case "listen":
      return `Invalid --${option}=${value}; expected ADDR:PORT, e.g. 127.0.0.1:9100 or [::1]:9100`;
    case "nft-name":
      return `Invalid --${option}=${value}; expected 1 to 64 letters, digits, '_' or '-', a letter first`;
  }
}

/** An option value (or the flow address from the environment) that is not valid. */
export class OptionError extends DaemonError {
  /** Option name without dashes (`NFQLB_FLOW_ADDRESS` for the environment variable). */
  readonly option: string;
  /** The value as given. */
  readonly value: string;
  readonly problem: OptionProblem;
  constructor(option: string, value: string, problem: OptionProblem) {
    super(optionMessage(option, value, problem));
    this.name = "OptionError";
    this.option = option;
    this.value = value;
    this.problem = problem;
  }
}

/** Which server socket failed. */
export type ServerKind = "Flow" | "Trace";

/** A server socket could not be set up; plain data, so a worker can post it. */
export interface ListenFailure {
  readonly server: ServerKind;
  /** The failing call: `socket`, `bind` or `listen`. */
  readonly call: string;
  /** `strerror` text, e.g. `Address already in use`. */
  readonly strerror: string;
}

/** A server socket could not be set up (`Flow server bind: Address already in use`). */
export class ListenError extends DaemonError {
  readonly server: ServerKind;
  readonly call: string;
  readonly strerror: string;
  constructor(f: ListenFailure) {
    super(`${f.server} server ${f.call}: ${f.strerror}`);
    this.name = "ListenError";
    this.server = f.server;
    this.call = f.call;
    this.strerror = f.strerror;
  }
}

/**
 * The `--tun` device could not be used: 1.2.0's `Failed to open tun device
 * [<name>]` with the reason and what to do, or `Tun mtu too small; <a> < <b>`.
 */
export class TunOpenError extends DaemonError {
  /** The device name as given. */
  readonly device: string;
  constructor(device: string, message: string) {
    super(message);
    this.name = "TunOpenError";
    this.device = device;
  }
}

/** A worker thread failed unexpectedly during start-up; `message` is its own text. */
export class ThreadError extends DaemonError {
  /** The thread's name, e.g. `control`. */
  readonly thread: string;
  constructor(thread: string, message: string) {
    super(message);
    this.name = "ThreadError";
    this.thread = thread;
  }
}

/**
 * A worker module the daemons start is not next to the real `nfqlb` file (a bundle copied
 * without its `*_worker.ts` files, or an install that lost one).
 */
export class WorkerMissingError extends DaemonError {
  /** The path where the worker module was looked for. */
  readonly path: string;
  /** The directory of the real `nfqlb` file (symlinks resolved). */
  readonly dir: string;
  constructor(path: string, dir: string) {
    super(
      `worker module ${path} not found: nfqlb loads its worker modules from the directory of ` +
        `its real file (${dir}); reinstall (./dev install) or keep nfqlb and its five ` +
        "*_worker.ts files together in one directory",
    );
    this.name = "WorkerMissingError";
    this.path = path;
    this.dir = dir;
  }
}
