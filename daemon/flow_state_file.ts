/**
 * The `--flow-state` file on disk (docs/COMPATIBILITY.md#flows): checked, read and written so
 * that another local user can neither plant flows nor make the daemon write somewhere else.
 *
 * - The place: the directory must belong to root or the daemon's uid, and must not be
 *   writable by group or others unless it is sticky (`/tmp`-like); the file, when present, must
 *   be a regular file (never a symbolic link, FIFO, ...) owned by root or the daemon's uid and
 *   not writable by group or others. A refusal is a {@link FlowStateError}: the daemon does not
 *   start.
 * - Reading: the file is opened only after `lstat` showed a regular file, and the opened file is
 *   checked again (same device and inode, same rules), so a swap in between is noticed.
 * - Writing: a new temporary file under an unpredictable name in the same directory, created
 *   with `O_CREAT|O_EXCL` (an existing name, a symlink or a FIFO included, is never opened),
 *   mode 0600, written, `fsync`ed, renamed over the file (rename replaces a symlink at the
 *   final path instead of following it), then the directory is `fsync`ed.
 * - A corrupt file is renamed aside to `<path>.corrupt-<timestamp>` and reported.
 * - Restoring: a flow whose table cannot be mapped yet (after a reboot `/dev/shm` is empty) is
 *   kept pending, and saved with the others (docs/COMPATIBILITY.md#differences D58).
 * - Saving after a change ({@link FlowStateSaver}): a failed save turns the change's `OK` into
 *   a `FAIL:` reply that says the change is in use but not saved.
 * @module
 */
import { decodeReply, textReply } from "../lib/flow/control_protocol.ts";
import { decodeFlowState, encodeFlowState } from "../lib/flow/state_file.ts";
import type { FlowStore } from "../lib/flow/store.ts";
import { flowTargetProblem } from "./open_table.ts";
import { userNameOf } from "./user_names.ts";

/** The state file or its directory is not safe to use. */
export class FlowStateError extends Error {
  /** The path concerned (file or directory). */
  readonly path: string;
  /** What is wrong, e.g. `directory is writable by other users and not sticky`. */
  readonly problem: string;
  constructor(path: string, problem: string) {
    super(`flow-state: ${path}: ${problem}`);
    this.name = "FlowStateError";
    this.path = path;
    this.problem = problem;
  }
}

/** Group- and other-write permission bits. */
const GROUP_OTHER_WRITE = 0o022;
/** The sticky bit of a directory. */
const STICKY = 0o1000;
/** Random bytes in a temporary name. */
const TMP_RANDOM_BYTES = 12;
/** Attempts at a fresh temporary name before giving up. */
const TMP_ATTEMPTS = 8;

/** Directory and base name of `path`. */
function split(path: string): { dir: string; base: string } {
  const i = path.lastIndexOf("/");
  if (i < 0) return { dir: ".", base: path };
  return { dir: i === 0 ? "/" : path.slice(0, i), base: path.slice(i + 1) };
}

const octal = (mode: number) => (mode & 0o7777).toString(8).padStart(4, "0");

/** Whether `uid` may own the daemon's files: root or the daemon itself. */
function trustedOwner(uid: number | null, own: number): boolean {
  return uid === 0 || uid === own;
}

/**
 * Check the directory of `path`; returns whether it is shared (sticky and writable by
 * others). Throws {@link FlowStateError}.
 */
function checkDirectory(dir: string, own: number): boolean {
  let st: Deno.FileInfo;
  try {
    st = Deno.statSync(dir);
  } catch (e) {
    throw new FlowStateError(dir, `cannot use the directory: ${(e as Error).message}`);
  }
  if (!st.isDirectory) throw new FlowStateError(dir, "not a directory");
  const mode = st.mode ?? 0;
  if (!trustedOwner(st.uid, own)) {
    throw new FlowStateError(dir, `directory is owned by uid ${st.uid}, expected root or ${own}`);
  }
  const shared = (mode & GROUP_OTHER_WRITE) !== 0;
  if (shared && (mode & STICKY) === 0) {
    throw new FlowStateError(
      dir,
      `directory is writable by other users and not sticky (mode ${octal(mode)})`,
    );
  }
  return shared;
}

/** Check one existing file's facts (from lstat or fstat). */
function checkFile(path: string, st: Deno.FileInfo, own: number, shared: boolean): void {
  if (st.isSymlink) throw new FlowStateError(path, "is a symbolic link");
  if (!st.isFile) throw new FlowStateError(path, "not a regular file");
  const mode = st.mode ?? 0;
  if (shared ? st.uid !== own : !trustedOwner(st.uid, own)) {
    throw new FlowStateError(
      path,
      `owned by uid ${st.uid}, expected ${shared ? "" : "root or "}uid ${own}`,
    );
  }
  if ((mode & GROUP_OTHER_WRITE) !== 0) {
    throw new FlowStateError(path, `writable by other users (mode ${octal(mode)})`);
  }
}

/**
 * Check the place of the state file and read it: its text, or `undefined` when there is no
 * file yet. Throws {@link FlowStateError} when the file or its directory is not safe.
 */
export function readFlowStateFile(path: string, own: number = Deno.uid() ?? 0): string | undefined {
  const shared = checkDirectory(split(path).dir, own);
  let before: Deno.FileInfo;
  try {
    before = Deno.lstatSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new FlowStateError(path, (e as Error).message);
  }
  checkFile(path, before, own, shared);
  // A regular file does not block on open; the fstat below catches a swap since the lstat.
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.PermissionDenied)) throw e;
    // E.g. root's file from a run as root, then the daemon started as its own user.
    const owner = before.uid ?? 0;
    const name = userNameOf(owner);
    const mode = ((before.mode ?? 0) & 0o777).toString(8).padStart(4, "0");
    throw new FlowStateError(
      path,
      `Permission denied: owned by uid ${owner}${name === undefined ? "" : ` (${name})`}, mode ` +
        `${mode}, and this daemon runs as uid ${own}: chown ${own} ${path} (or remove it, and ` +
        "the flows it holds)",
    );
  }
  try {
    const st = file.statSync();
    if (st.dev !== before.dev || st.ino !== before.ino) {
      throw new FlowStateError(path, "replaced while being opened");
    }
    checkFile(path, st, own, shared);
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(65536);
    let total = 0;
    for (;;) {
      const n = file.readSync(buf);
      if (n === null || n === 0) break;
      chunks.push(buf.slice(0, n));
      total += n;
    }
    const all = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) {
      all.set(c, at);
      at += c.length;
    }
    return new TextDecoder().decode(all);
  } finally {
    file.close();
  }
}

/** A temporary name in `dir` for `base` that nobody can predict. */
function tmpName(dir: string, base: string): string {
  const r = crypto.getRandomValues(new Uint8Array(TMP_RANDOM_BYTES));
  const hex = Array.from(r, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${dir}/.${base}.${hex}.tmp`;
}

/** Whether `name` is one of our temporary names for `base`. */
function isTmpName(name: string, base: string): boolean {
  return name.startsWith(`.${base}.`) && name.endsWith(".tmp") &&
    name.length === base.length + 2 + TMP_RANDOM_BYTES * 2 + 4;
}

/** `fsync` a directory (makes a rename in it durable). */
function syncDirectory(dir: string): void {
  const d = Deno.openSync(dir, { read: true });
  try {
    d.syncSync();
  } finally {
    d.close();
  }
}

/**
 * Replace the state file with `text` atomically and durably (see the module comment). Throws
 * on failure; the old file is then unchanged.
 */
export function writeFlowStateFile(path: string, text: string): void {
  const { dir, base } = split(path);
  const data = new TextEncoder().encode(text);
  let tmp = "";
  let file: Deno.FsFile | undefined;
  for (let i = 0; file === undefined; i++) {
    tmp = tmpName(dir, base);
    try {
      file = Deno.openSync(tmp, { write: true, createNew: true, mode: 0o600 });
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists) || i + 1 >= TMP_ATTEMPTS) throw e;
    }
  }
  try {
    for (let at = 0; at < data.length;) at += file.writeSync(data.subarray(at));
    file.syncSync();
    file.close();
    file = undefined;
    Deno.renameSync(tmp, path);
  } catch (e) {
    file?.close();
    try {
      Deno.removeSync(tmp);
    } catch { /* already gone */ }
    throw e;
  }
  syncDirectory(dir);
}

/**
 * Remove temporary files of ours left by a killed daemon (our names, regular files owned by
 * the daemon's uid). Returns how many were removed. Called once the daemon has started (every
 * queue bound), not by {@link restoreFlowState}: a second daemon that cannot start must not
 * remove the file the running one is writing.
 */
export function removeStaleTmpFiles(path: string, own: number = Deno.uid() ?? 0): number {
  const { dir, base } = split(path);
  let n = 0;
  for (const e of Deno.readDirSync(dir)) {
    if (!isTmpName(e.name, base)) continue;
    const p = `${dir}/${e.name}`;
    try {
      const st = Deno.lstatSync(p);
      if (st.isFile && st.uid === own) {
        Deno.removeSync(p);
        n++;
      }
    } catch { /* gone meanwhile */ }
  }
  return n;
}

/** Rename a corrupt state file aside; returns the new name. */
export function setAside(path: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  const aside = `${path}.corrupt-${stamp}`;
  Deno.renameSync(path, aside);
  return aside;
}

/**
 * Restore `--flow-state` into `store` at start (one bulk load, linear in the number of flows).
 * Returns how many flows were restored, pending ones included; entries that are refused, flows
 * kept pending because their table cannot be mapped yet, and a corrupt file (renamed aside)
 * are reported through `log`. Throws {@link FlowStateError} when the file or its directory is
 * not safe to use.
 */
export function restoreFlowState(
  store: FlowStore,
  path: string,
  log: (text: string) => void,
): number {
  const text = readFlowStateFile(path);
  if (text === undefined) return 0;
  let state;
  try {
    state = decodeFlowState(text);
  } catch (e) {
    let where: string;
    try {
      where = `kept as ${setAside(path)}`;
    } catch (r) {
      throw new FlowStateError(
        path,
        `corrupt (${(e as Error).message}), cannot set it aside: ${r}`,
      );
    }
    log(`flow-state: ${path}: corrupt (${(e as Error).message}); ${where}, starting with no flows`);
    return 0;
  }
  let n = 0;
  const replies = store.setMany(state.flows, true);
  replies.forEach((reply, i) => {
    const { name, target } = state.flows[i];
    if (reply !== "OK") log(`flow-state: flow ${name}: ${reply}`);
    else {
      n++;
      if (store.flows.isPending(name!)) log(pendingLine(name!, target!));
    }
  });
  store.traceSetMany(state.traces).forEach((reply, i) => {
    if (reply !== "OK") log(`flow-state: trace flow ${state.traces[i].name}: ${reply}`);
  });
  return n;
}

/**
 * The log line of a restored flow kept pending (docs/COMPATIBILITY.md#differences D58), with why
 * its table cannot be used and the fix (not created yet after a reboot: `nfqlb init`; a table
 * of another user: who must own it).
 */
function pendingLine(name: string, target: string): string {
  const why = flowTargetProblem(target) ?? `table [${target}]: cannot be mapped`;
  return `flow-state: flow ${name}: ${why}; the flow is kept, pending: it matches once the ` +
    "table can be used";
}

/**
 * The reply to a change that is in use but could not be saved: the client exits non-zero
 * (docs/COMPATIBILITY.md#differences D29).
 */
function unsavedReply(path: string, error: string): string {
  return `FAIL: the change is in use but not saved: flow-state: ${path}: ${error}; ` +
    "it is lost when flowlb restarts, unless a later change is saved";
}

/**
 * Saves the flows and trace flows to the `--flow-state` file after every change (hook
 * {@link FlowStateSaver.save} to the store's listeners) and tells the client of a change when
 * its save failed ({@link FlowStateSaver.reply}). With the path "" it does nothing.
 */
export class FlowStateSaver {
  /** The error of a save since the current request began, if one failed. */
  #failure: string | undefined;

  /** A saver of `store` to `path`; failures are also logged through `log`. */
  constructor(
    readonly path: string,
    readonly store: FlowStore,
    readonly log: (text: string) => void,
  ) {}

  /** Write the file now; a failure is logged and remembered for {@link FlowStateSaver.reply}. */
  save(): void {
    if (this.path === "") return;
    try {
      writeFlowStateFile(
        this.path,
        encodeFlowState(this.store.flows.snapshot.flows, this.store.traces.snapshot.flows),
      );
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      this.#failure = why;
      this.log(`flow-state: save to ${this.path} failed: ${why}`);
    }
  }

  /**
   * Run `request` (whose changes save through the listeners) and return its reply; an `OK`
   * becomes {@link unsavedReply} when a save failed meanwhile (the change stays in use).
   */
  reply(request: () => Uint8Array): Uint8Array {
    this.#failure = undefined;
    const reply = request();
    const failure = this.#failure;
    this.#failure = undefined;
    if (failure === undefined) return reply;
    const r = decodeReply(reply);
    return r.terminated && r.text.startsWith("OK")
      ? textReply(unsavedReply(this.path, failure))
      : reply;
  }
}
