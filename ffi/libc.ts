/**
 * The glibc symbols the FFI modules use
 * (POSIX shared memory for `./shm.ts`, sockets for `./socket.ts`,
 * `./nfqueue.ts` and `./stream_server.ts`), plus errno reporting through
 * `strerror`.
 *
 * Each symbol is bound lazily on its first call, so that pure modules importing
 * this one (for types) do not need `--allow-ffi` and a short-lived command binds only what it
 * calls; a missing permission (`Deno.errors.NotCapable`) propagates from that first use.
 * @module
 */

/** open(2) flags and mode bits used with `shm_open`. */
export const O_RDONLY = 0;
export const O_RDWR = 2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_TRUNC = 0o1000;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
/** mmap(2) protection and flags. */
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 1;

const LIBC_SYMBOLS = {
  // shared memory (./shm.ts)
  shm_open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  shm_unlink: { parameters: ["buffer"], result: "i32" },
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  posix_fallocate: { parameters: ["i32", "i64", "i64"], result: "i32" },
  fstat: { parameters: ["i32", "buffer"], result: "i32" },
  fchmod: { parameters: ["i32", "u32"], result: "i32" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  // sockets
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  accept4: { parameters: ["i32", "pointer", "pointer", "i32"], result: "i32" },
  // the flow client's unix connection (./unix_client.ts); poll runs off the main thread
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  // the control server's event loop (./poll.ts), in its worker thread
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  poll_async: {
    name: "poll",
    parameters: ["buffer", "u64", "i32"],
    result: "i32",
    nonblocking: true,
  },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  // a queue socket's netlink port id, and the wake message sent to it (./nfqueue.ts)
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  // the peer of a tcp control connection (daemon/control_worker.ts)
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
  // The NFQUEUE data plane. Only typed-array `buffer`, integer and `pointer` parameters
  // and an i32 result, so Deno can use its fast call path.
  // int recvmmsg(int fd, struct mmsghdr *vec, unsigned vlen, int flags, struct timespec *timeout)
  recvmmsg: { parameters: ["i32", "buffer", "u32", "i32", "pointer"], result: "i32" },
  // ssize_t sendmsg(int fd, const struct msghdr *msg, int flags): used instead of send()
  // because its length lives in the iovec (written with a DataView), so no BigInt is
  // needed per call. The result fits in 32 bits (length of one datagram, or -1).
  sendmsg: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  // the tun device stored fragments are re-injected through (./tun.ts)
  open: { parameters: ["buffer", "i32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
  // one raw IP packet to the tun device: the length fits in 32 bits (at most --mtu)
  write: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  // errno
  strerror: { parameters: ["i32"], result: "pointer" },
  __errno_location: { parameters: [], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The bound glibc symbols. */
export type Libc = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];

type SymbolName = keyof typeof LIBC_SYMBOLS;

let libc: Libc | undefined;
let errnoCell: Int32Array | undefined;
/** The libraries opened, one per bound symbol: kept so that nothing closes them. */
const opened: Deno.DynamicLibrary<Deno.ForeignLibraryInterface>[] = [];

/**
 * Bind one symbol: a `Deno.dlopen` of glibc with only that symbol. glibc is loaded once; what
 * costs is each symbol's binding (~0.2 ms), so a process pays only for the symbols it calls.
 */
function bind(name: SymbolName): (...args: unknown[]) => unknown {
  const lib = Deno.dlopen("libc.so.6", { [name]: LIBC_SYMBOLS[name] });
  opened.push(lib);
  return lib.symbols[name] as (...args: unknown[]) => unknown;
}

/**
 * A stand-in for `name` until its first call: binds the symbol, puts it in its place in the
 * table (so later calls go straight to it) and calls it.
 */
function lazySymbol(name: SymbolName): unknown {
  let real: ((...args: unknown[]) => unknown) | undefined;
  const stub = (...args: unknown[]) => {
    real ??= bind(name);
    const table = libc as Record<string, unknown>;
    if (table[name] === stub) table[name] = real;
    return real(...args);
  };
  return stub;
}

/**
 * The glibc symbols. Each one is bound on its first call: a command that calls five of them
 * does not pay for the binding of all. The object is the same for the life of the thread, with
 * every symbol a plain writable property from the start (built whole: fast properties; a bound
 * symbol replaces its stand-in in place).
 */
export function getLibc(): Libc {
  libc ??= Object.fromEntries(
    (Object.keys(LIBC_SYMBOLS) as SymbolName[]).map((n) => [
      n,
      // errno is read right after a failed call: binding then (a dlopen) would overwrite it
      // (dlopen's path search sets ENOENT). So this one is bound with the table, first.
      n === "__errno_location" ? bind(n) : lazySymbol(n),
    ]),
  ) as Libc;
  return libc;
}

/** The calling thread's errno variable, as a one-element view (errno is thread-local). */
function errnoVar(): Int32Array | undefined {
  if (errnoCell === undefined) {
    const p = getLibc().__errno_location();
    if (p === null) return undefined;
    errnoCell = new Int32Array(Deno.UnsafePointerView.getArrayBuffer(p, 4));
  }
  return errnoCell;
}

/** The calling thread's errno (read right after a failed call). */
export function errno(): number {
  return errnoVar()?.[0] ?? 0;
}

/**
 * Set the calling thread's errno (e.g. to 0 before a library call that may
 * fail without setting it).
 */
export function setErrno(value: number): void {
  const cell = errnoVar();
  if (cell !== undefined) cell[0] = value;
}

/** `strerror(e)` as a JavaScript string, e.g. `"No such file or directory"`. */
export function strerror(e: number): string {
  const p = getLibc().strerror(e);
  return p === null ? `errno ${e}` : Deno.UnsafePointerView.getCString(p);
}

/** An error from a libc call, carrying errno and glibc's text for it. */
export class LibcError extends Error {
  /** errno at the time of the failure. */
  readonly errno: number;
  /** The libc function that failed. */
  readonly call: string;
  constructor(call: string, e: number) {
    super(strerror(e));
    this.name = "LibcError";
    this.errno = e;
    this.call = call;
  }
}

/** A NUL-terminated copy of `s` for passing to C. */
export function cString(s: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(s);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** `fstat(fd).st_size` (x86-64 `struct stat`: st_size is the i64 at offset 48). */
export function fileSize(fd: number): number {
  const st = new Uint8Array(144);
  if (getLibc().fstat(fd, st) !== 0) throw new LibcError("fstat", errno());
  return Number(new DataView(st.buffer).getBigInt64(48, true));
}

/** Whether a pointer returned by mmap is MAP_FAILED ((void *)-1). */
export function isMapFailed(p: Deno.PointerValue): boolean {
  return p === null || BigInt(Deno.UnsafePointer.value(p)) === 0xffffffffffffffffn;
}
