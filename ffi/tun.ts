/**
 * The tun device that stored fragments are re-injected through
 * (docs/COMPATIBILITY.md#fragments): `--tun=NAME` names a device the operator
 * created (`ip tuntap add NAME mode tun`) and set up; {@link TunDevice.open}
 * attaches to it (`open("/dev/net/tun")`, `TUNSETIFF` with `IFF_TUN |
 * IFF_NO_PI`), so every `write` is one raw IP packet that enters the host
 * stack as if received on that device, and comes back to the queue through
 * the operator's NFQUEUE rule.
 *
 * The descriptor is opened once by the main thread; the queue threads write
 * to the same descriptor number (one process, one descriptor table).
 *
 * @example
 * ```ts ignore
 * import { TunDevice } from "./tun.ts";
 * const tun = TunDevice.open("nfqlb0", 1500); // throws TunError with the reason
 * const pkt = new Uint8Array(28); // an IPv4 packet
 * tun.write(pkt, pkt.length) === pkt.length; // true when written
 * tun.close();
 * ```
 * @module
 */
import { cString, errno, getLibc, O_CLOEXEC, O_RDWR, strerror } from "./libc.ts";
import { AF_INET, ENOENT, EPERM, SOCK_CLOEXEC, SOCK_DGRAM } from "./constants.ts";

/** `_IOW('T', 202, int)`: attach a tun/tap descriptor to a device. */
const TUNSETIFF = 0x400454ca;
/** `SIOCGIFFLAGS`, `SIOCGIFMTU` (linux/sockios.h). */
const SIOCGIFFLAGS = 0x8913;
const SIOCGIFMTU = 0x8921;
/** Interface flags (linux/if.h, linux/if_tun.h). */
const IFF_UP = 0x1;
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
/** `struct ifreq`: name[IFNAMSIZ = 16], then a union (flags: short, mtu: int). */
const IFREQ_SIZE = 40;
const IFNAMSIZ = 16;
const IFR_UNION = 16;
/** errno: the device is of another type (a tap, or a tun with other flags). */
const EINVAL = 22;
/** errno: the descriptor of a single-queue device is already attached (another process). */
const EBUSY = 16;

/** Why a tun device could not be used; `message` starts with 1.2.0's text. */
export class TunError extends Error {
  /** The device name as given. */
  readonly device: string;
  /** What is wrong, with what to do about it. */
  readonly reason: string;
  constructor(device: string, reason: string, message?: string) {
    super(message ?? `Failed to open tun device [${device}]: ${reason}`);
    this.name = "TunError";
    this.device = device;
    this.reason = reason;
  }
}

/** A `struct ifreq` naming `name`. */
function ifreq(name: string): Uint8Array<ArrayBuffer> {
  const req = new Uint8Array(IFREQ_SIZE);
  req.set(new TextEncoder().encode(name));
  return req;
}

/** `SIOCGIF*` of `name` through a throw-away socket; the ifreq, or the errno. */
function queryInterface(name: string, request: number): Uint8Array | number {
  const libc = getLibc();
  const s = libc.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return errno();
  try {
    const req = ifreq(name);
    return libc.ioctl(s, BigInt(request), req) === 0 ? req : errno();
  } finally {
    libc.close(s);
  }
}

/** An attached tun device. */
export class TunDevice {
  /** The device name. */
  readonly name: string;
  /** The device's MTU when it was opened. */
  readonly mtu: number;
  #fd: number;

  private constructor(name: string, fd: number, mtu: number) {
    this.name = name;
    this.#fd = fd;
    this.mtu = mtu;
  }

  /** The descriptor (for {@link TunDevice.fromFd} in another thread of this process). */
  get fd(): number {
    return this.#fd;
  }

  /**
   * Attach to the existing, up tun device `name` whose MTU is at least
   * `mtu`. Throws {@link TunError}: the device does not exist, is not a tun
   * device (or has packet information on), is attached elsewhere, is down,
   * or its MTU is too small (1.2.0's `Tun mtu too small; <a> < <b>`).
   */
  static open(name: string, mtu: number): TunDevice {
    if (name.length === 0 || new TextEncoder().encode(name).length >= IFNAMSIZ) {
      throw new TunError(name, `a device name has 1 to ${IFNAMSIZ - 1} bytes`);
    }
    const libc = getLibc();
    const hint = `create it with \`ip tuntap add ${name} mode tun\` and \`ip link set ${name} up\``;
    if (libc.if_nametoindex(cString(name)) === 0) {
      throw new TunError(name, `no such device in this network namespace; ${hint}`);
    }
    const fd = libc.open(cString("/dev/net/tun"), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      const e = errno();
      throw new TunError(
        name,
        `/dev/net/tun: ${strerror(e)}${e === ENOENT ? " (no tun driver or device node)" : ""}`,
      );
    }
    let ok = false;
    try {
      const req = ifreq(name);
      new DataView(req.buffer).setUint16(IFR_UNION, IFF_TUN | IFF_NO_PI, true);
      if (libc.ioctl(fd, BigInt(TUNSETIFF), req) !== 0) {
        const e = errno();
        const why = e === EINVAL
          ? "it is a tap device or a multi-queue tun device; nfqlb needs a single-queue tun device"
          : e === EBUSY
          ? "another process is attached to it"
          : e === EPERM
          ? "not permitted (the device belongs to another user, or CAP_NET_ADMIN is missing)"
          : "";
        throw new TunError(name, `TUNSETIFF: ${strerror(e)}${why === "" ? "" : `; ${why}`}`);
      }
      const flags = queryInterface(name, SIOCGIFFLAGS);
      if (typeof flags === "number") throw new TunError(name, `SIOCGIFFLAGS: ${strerror(flags)}`);
      if ((new DataView(flags.buffer).getUint16(IFR_UNION, true) & IFF_UP) === 0) {
        throw new TunError(name, `the device is down; set it up: \`ip link set ${name} up\``);
      }
      const m = queryInterface(name, SIOCGIFMTU);
      if (typeof m === "number") throw new TunError(name, `SIOCGIFMTU: ${strerror(m)}`);
      const tunMtu = new DataView(m.buffer).getInt32(IFR_UNION, true);
      if (tunMtu < mtu) {
        throw new TunError(name, "mtu too small", `Tun mtu too small; ${tunMtu} < ${mtu}`);
      }
      ok = true;
      return new TunDevice(name, fd, tunMtu);
    } finally {
      if (!ok) libc.close(fd);
    }
  }

  /** The device opened by another thread of this process, by descriptor (not closed here). */
  static fromFd(name: string, fd: number, mtu: number): TunDevice {
    return new TunDevice(name, fd, mtu);
  }

  /**
   * Write `bytes[0, len)`, one raw IP packet. Returns what `write(2)` returned
   * (`len` on success, -1 on failure: see {@link lastErrno}). Allocates nothing;
   * throws RangeError when `len` is not within `bytes`.
   */
  write(bytes: Uint8Array, len: number): number {
    if (!(len >= 0 && len <= bytes.length)) throw new RangeError(`tun write: bad length ${len}`);
    // The pointer is the view's start; the length says how much of it goes.
    return getLibc().write(this.#fd, bytes as Uint8Array<ArrayBuffer>, len);
  }

  /** errno after a failed {@link write}. */
  lastErrno(): number {
    return errno();
  }

  /** Close the descriptor (the thread that opened it, once the writers have stopped). */
  close(): void {
    if (this.#fd >= 0) getLibc().close(this.#fd);
    this.#fd = -1;
  }
}
