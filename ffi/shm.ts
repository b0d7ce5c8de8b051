/**
 * POSIX shared-memory objects (`/dev/shm/<name>`) mapped into the process.
 *
 * A {@link ShmMapping} exposes the mapping as an `ArrayBuffer` that aliases
 * the shared pages directly (no copies): typed-array views over it read and
 * write the object other processes see.
 *
 * @example
 * ```ts
 * import { createShm, openShm, unlinkShm } from "./shm.ts";
 * const m = createShm("demo", 8);
 * new Int32Array(m.buffer)[0] = 5;
 * m.close();
 * const r = openShm("demo", false);
 * new Int32Array(r.buffer)[0]; // 5
 * r.close();
 * unlinkShm("demo");
 * ```
 * @module
 */
import { EEXIST, EINVAL, ENOENT } from "./constants.ts";
import {
  cString,
  errno,
  fileSize,
  getLibc,
  isMapFailed,
  LibcError,
  MAP_SHARED,
  O_CREAT,
  O_EXCL,
  O_NONBLOCK,
  O_RDONLY,
  O_RDWR,
  PROT_READ,
  PROT_WRITE,
} from "./libc.ts";

/** x86-64 `struct stat`: size of the struct, offsets of st_dev, st_ino, st_mode and st_uid. */
const STAT_SIZE = 144;
const STAT_OFF_DEV = 0;
const STAT_OFF_INO = 8;
const STAT_OFF_MODE = 24;
const STAT_OFF_UID = 28;

/** Owner, permission bits and identity of an object (`fstat`). */
export interface ShmOwner {
  readonly uid: number;
  /** `st_mode & 0o7777`. */
  readonly mode: number;
  /** `st_dev` and `st_ino`: which object (a name can be removed and made again). */
  readonly dev: number;
  readonly ino: number;
}

/** `st_mode` file type bits, and the type of a regular file. */
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;

/**
 * The object is not a regular file: e.g. a FIFO another user made in `/dev/shm`, whose open
 * would block forever and which cannot be mapped. errno EINVAL.
 */
export class NotRegularFileError extends LibcError {
  constructor(name: string) {
    super("shm_open", EINVAL);
    this.message = `/dev/shm/${name} is not a regular file`;
  }
}

/**
 * `shm_open` that never blocks and opens only regular files: `O_NONBLOCK` (opening a FIFO
 * planted under the name would wait for a writer forever otherwise), then the type from `fstat`.
 * Returns the fd, or -1 with errno set as `shm_open` does; throws {@link NotRegularFileError}.
 */
function shmOpenRegular(name: string, path: Uint8Array<ArrayBuffer>, flags: number, mode: number) {
  const libc = getLibc();
  const fd = libc.shm_open(path, flags | O_NONBLOCK, mode);
  if (fd < 0) return fd;
  const st = new Uint8Array(STAT_SIZE);
  const ok = libc.fstat(fd, st) === 0;
  const e = errno();
  if (ok && (new DataView(st.buffer).getUint32(STAT_OFF_MODE, true) & S_IFMT) === S_IFREG) {
    return fd;
  }
  libc.close(fd);
  if (!ok) throw new LibcError("fstat", e);
  throw new NotRegularFileError(name);
}

/** `fstat(fd)`: owner, permission bits, device and inode. */
function ownerOf(fd: number): ShmOwner {
  const st = new Uint8Array(STAT_SIZE);
  if (getLibc().fstat(fd, st) !== 0) throw new LibcError("fstat", errno());
  const dv = new DataView(st.buffer);
  return {
    uid: dv.getUint32(STAT_OFF_UID, true),
    mode: dv.getUint32(STAT_OFF_MODE, true) & 0o7777,
    dev: Number(dv.getBigUint64(STAT_OFF_DEV, true)),
    ino: Number(dv.getBigUint64(STAT_OFF_INO, true)),
  };
}

/** A mapped shared-memory object. */
export interface ShmMapping {
  /** The name as given by the caller. */
  readonly name: string;
  /** Size of the object (and of `buffer`) in bytes. */
  readonly size: number;
  /** The shared pages; views over it alias the object. Invalid after `close()`. */
  readonly buffer: ArrayBuffer;
  /** Whether the mapping is writable. */
  readonly writable: boolean;
  /** Owner, permission bits, device and inode of the object when it was mapped. */
  readonly owner: ShmOwner;
  /**
   * The object's current size (`fstat` of the descriptor kept with the mapping): smaller than
   * `size` when another process truncated it, and then reading past it raises SIGBUS.
   */
  objectSize(): number;
  /** Unmap and close the descriptor. Views over `buffer` must not be used afterwards. */
  close(): void;
}

/** Mode of newly created objects. */
const SHM_MODE = 0o600;

/** Map `fd`; the mapping owns `fd` when this returns (closed by `close()`), the caller otherwise. */
function mapFd(name: string, fd: number, size: number, writable: boolean): ShmMapping {
  const libc = getLibc();
  const owner = ownerOf(fd);
  const prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
  const p = libc.mmap(null, BigInt(size), prot, MAP_SHARED, fd, 0n);
  if (isMapFailed(p)) throw new LibcError("mmap", errno());
  const buffer = Deno.UnsafePointerView.getArrayBuffer(p!, size);
  let mapped = true;
  return {
    name,
    size,
    buffer,
    writable,
    owner,
    objectSize: () => fileSize(fd),
    close() {
      if (!mapped) return;
      mapped = false;
      libc.munmap(p, BigInt(size));
      libc.close(fd);
    },
  };
}

/**
 * Open and map an existing object with its current size. With `check`, the object's owner and
 * mode (`fstat` of the opened object) are shown to it before anything is mapped; what it throws
 * propagates. Throws {@link LibcError} (errno ENOENT when it does not exist).
 */
export function openShm(
  name: string,
  writable: boolean,
  check?: (owner: ShmOwner) => void,
): ShmMapping {
  const libc = getLibc();
  const fd = shmOpenRegular(name, cString(name), writable ? O_RDWR : O_RDONLY, 0);
  if (fd < 0) throw new LibcError("shm_open", errno());
  try {
    check?.(ownerOf(fd));
    const size = fileSize(fd);
    if (size === 0) throw new LibcError("mmap", EINVAL);
    return mapFd(name, fd, size, writable);
  } catch (e) {
    libc.close(fd);
    throw e;
  }
}

/**
 * Create the object if missing and map it read-write with exactly `size`
 * bytes. Space is reserved first (`posix_fallocate`) so that a full
 * `/dev/shm` is an error here instead of a SIGBUS later; an existing object
 * keeps its inode and contents until the caller overwrites them. New objects get mode 0600
 * (subject to umask). With `adopt`, an existing object is first shown to it (owner and mode
 * from `fstat` of the opened object, before anything is changed); if it throws, the object is
 * left as it was and the error propagates. With `grow` an existing larger object keeps its size
 * (the mapping covers all of it): another process may have it mapped, and pages cut from under a
 * mapping give SIGBUS.
 */
export function createShm(
  name: string,
  size: number,
  adopt?: (owner: ShmOwner) => void,
  grow = false,
): ShmMapping {
  const libc = getLibc();
  const path = cString(name);
  let fd = -1;
  if (adopt === undefined) {
    fd = shmOpenRegular(name, path, O_RDWR | O_CREAT, SHM_MODE);
    if (fd < 0) throw new LibcError("shm_open", errno());
  } else {
    // Tell "created now" from "existed" without a gap: O_EXCL first, then open the existing one.
    while (fd < 0) {
      fd = libc.shm_open(path, O_RDWR | O_CREAT | O_EXCL, SHM_MODE);
      if (fd >= 0) break;
      if (errno() !== EEXIST) throw new LibcError("shm_open", errno());
      fd = shmOpenRegular(name, path, O_RDWR, 0);
      if (fd < 0) {
        if (errno() === ENOENT) continue; // removed meanwhile: create it
        throw new LibcError("shm_open", errno());
      }
      try {
        adopt(ownerOf(fd));
      } catch (e) {
        libc.close(fd);
        throw e;
      }
    }
  }
  try {
    const old = fileSize(fd);
    if (grow && old > size) size = old;
    if (size > old) {
      const rc = libc.posix_fallocate(fd, 0n, BigInt(size));
      if (rc !== 0) throw new LibcError("posix_fallocate", rc);
    }
    if (size !== old && libc.ftruncate(fd, BigInt(size)) !== 0) {
      throw new LibcError("ftruncate", errno());
    }
    return mapFd(name, fd, size, true);
  } catch (e) {
    libc.close(fd);
    throw e;
  }
}

/**
 * Create `name` exclusively (`O_CREAT | O_EXCL`: never an object that exists, whoever made it)
 * with exactly `mode` (set with `fchmod`, whatever the umask) and `size` bytes of zeros, and map
 * it read-write. Returns undefined when an object of that name exists; throws
 * {@link LibcError} otherwise (an object it created is removed again then).
 */
export function createShmExclusive(
  name: string,
  size: number,
  mode: number,
): ShmMapping | undefined {
  const libc = getLibc();
  const path = cString(name);
  const fd = libc.shm_open(path, O_RDWR | O_CREAT | O_EXCL, mode);
  if (fd < 0) {
    if (errno() === EEXIST) return undefined;
    throw new LibcError("shm_open", errno());
  }
  try {
    if (libc.fchmod(fd, mode) !== 0) throw new LibcError("fchmod", errno());
    const rc = libc.posix_fallocate(fd, 0n, BigInt(size));
    if (rc !== 0) throw new LibcError("posix_fallocate", rc);
    if (libc.ftruncate(fd, BigInt(size)) !== 0) throw new LibcError("ftruncate", errno());
    return mapFd(name, fd, size, true);
  } catch (e) {
    libc.close(fd);
    libc.shm_unlink(path);
    throw e;
  }
}

/**
 * Owner, permission bits, device and inode of object `name` without opening it (`lstat` of
 * `/dev/shm/<name>`, where glibc keeps them), or undefined when it does not exist. Compare
 * `dev` and `ino` with a mapping's `owner` to tell whether the name still is that object.
 */
export function statShm(name: string): ShmOwner | undefined {
  try {
    const st = Deno.lstatSync(`/dev/shm/${name}`);
    return { uid: st.uid ?? 0, mode: (st.mode ?? 0) & 0o7777, dev: st.dev, ino: st.ino ?? 0 };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/**
 * Remove `m`'s object if the name still is that object (same device and inode: not one another
 * process made under the name since). Returns whether it was removed. The name is compared and
 * then removed, two calls: only a process that may remove the object anyway (its owner, or root,
 * in the sticky `/dev/shm`) could replace it in between.
 */
export function unlinkShmIfSame(m: ShmMapping): boolean {
  const now = statShm(m.name);
  if (now === undefined || now.dev !== m.owner.dev || now.ino !== m.owner.ino) return false;
  return unlinkShm(m.name);
}

/** Remove an object. Returns false when it did not exist. */
export function unlinkShm(name: string): boolean {
  if (getLibc().shm_unlink(cString(name)) === 0) return true;
  const e = errno();
  if (e === ENOENT) return false;
  throw new LibcError("shm_unlink", e);
}
