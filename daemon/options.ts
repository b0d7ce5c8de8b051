/**
 * Options of the packet daemons `lb` and `flowlb` (docs/COMPATIBILITY.md#nfqueue): declarations,
 * defaults, and validation into a plain, structured-cloneable config that
 * can be handed to the per-queue worker threads. Invalid values throw an
 * {@link OptionError}.
 * @module
 */
import { parseStrictInt } from "../lib/ccompat/cnum.ts";
import { parseSocketAddress } from "../lib/ccompat/sockaddr.ts";
import { OptionError } from "./errors.ts";

/** Validated daemon configuration. */
export interface DaemonConfig {
  /** Target table shm name (`--tshm`, `lb` only). */
  readonly tshm: string;
  /** LB-tier table shm name (`--lbshm`), or "" for none. */
  readonly lbshm: string;
  readonly mtu: number;
  /** tun device for re-injecting stored fragments, or "" for none. */
  readonly tun: string;
  readonly reassembler: number;
  /** UDP port carrying SCTP (`--sctp_encap`, 0 = off). */
  readonly sctpEncap: number;
  readonly notargetsFwmark: number;
  readonly nolbFwmark: number;
  readonly hashMode: number;
  /** Queue numbers served, first..last. */
  readonly queueFirst: number;
  readonly queueLast: number;
  readonly qlength: number;
  readonly ftShm: string;
  readonly ftSize: number;
  readonly ftBuckets: number;
  /** Effective `--ft_frag` (0 without `--tun`). */
  readonly ftFrag: number;
  readonly ftTtl: number;
  readonly traceAddress: string;
  /** NFQA_CFG_F_FAIL_OPEN: accept instead of drop when the queue is full. */
  readonly failOpen: boolean;
  /**
   * `--queue-threads`: how many threads serve the queues, each serving several queue sockets
   * (0 or absent: one per queue, 1.2.0's way).
   */
  readonly queueThreads?: number;
  readonly promiscuousPing: boolean;
  /** `--flow-state` file (flowlb), or "". */
  readonly flowState: string;
  /** `--control-unauthenticated` (flowlb): admit tcp control peers that are not loopback. */
  readonly controlUnauthenticated: boolean;
  /** `--metrics=ADDR:PORT`: where `GET /metrics` and `GET /healthz` are served; undefined: off. */
  readonly metrics?: { readonly hostname: string; readonly port: number; readonly text: string };
  /** `--fastpath`: established flows are marked by an nftables map in the kernel; undefined: off. */
  readonly fastpath?: FastPathConfig;
}

/** The kernel fast path's settings (docs/FASTPATH.md). */
export interface FastPathConfig {
  /** The nftables table (family inet) the daemon owns (`--fastpath-table`). */
  readonly table: string;
  /** Element timeout in ms (`--fastpath-timeout`). */
  readonly timeoutMs: number;
  /** Elements per map (`--fastpath-size`). */
  readonly size: number;
  /** Packets of a 5-tuple the queue sees before it is offloaded (`--fastpath-min-packets`). */
  readonly minPackets: number;
}

/** The fast path's default table name. */
export const FASTPATH_TABLE = "nfqlb-fastpath";

const I32 = [-(2 ** 31), 2 ** 31 - 1] as const;
const U16_MAX = 65535;
/** Smallest MTU (docs/COMPATIBILITY.md#nfqueue: `< 576` is refused). */
export const MIN_MTU = 576;
/** Largest copy range NFQUEUE accepts (the kernel caps it at 0xffff). */
export const MAX_MTU = 65535;

/** Parsed option values by name (last occurrence wins); flags map to "". */
export type OptionValues = ReadonlyMap<string, string>;

/** Declaration of one daemon option (the command layer adds `--help`). */
export interface DaemonOptionDecl {
  /** Name without dashes. */
  readonly name: string;
  /** Text of the `--help` line. */
  readonly desc: string;
  /** A flag: takes no value. */
  readonly flag?: boolean;
}

/** Options shared by `lb` and `flowlb`, in 1.2.0's declaration order where it matters. */
export function daemonOptions(kind: "lb" | "flowlb"): DaemonOptionDecl[] {
  const opts: DaemonOptionDecl[] = [];
  if (kind === "lb") opts.push({ name: "tshm", desc: "Target table shm name (default nfqlb)" });
  opts.push(
    { name: "lbshm", desc: "LB-tier table for fragments (default none)" },
    { name: "mtu", desc: "Copy range and max stored fragment size, >= 576 (default 1500)" },
    { name: "tun", desc: "tun device for re-injecting stored fragments (default none)" },
    { name: "reassembler", desc: "Hole-descriptor pool size, 0 = off (default 0)" },
  );
  if (kind === "lb") {
    opts.push({ name: "sctp_encap", desc: "UDP port of SCTP over UDP, 0 = off (default 0)" });
  } else {
    opts.push({ name: "promiscuous_ping", desc: "ICMP echo matches any flow", flag: true });
    opts.push({ name: "nolb_fwmark", desc: "Verdict fwmark when no flow matches (default -1)" });
    opts.push({ name: "flow-state", desc: "File to save flows in and restore them from" });
    opts.push({
      name: "control-unauthenticated",
      desc: "Accept tcp control clients that are not loopback (no uid check)",
      flag: true,
    });
  }
  opts.push(
    { name: "notargets_fwmark", desc: "Verdict fwmark when a table has no target (default -1)" },
    { name: "hash_mode", desc: "1: SCTP hashes only the ports (default 1)" },
    {
      name: "queue",
      desc: "NFQUEUE number N or range first:last (default 2, as 1.2.0; `ruleset` queues to 0:3 " +
        "by default: give both the same --queue)",
    },
    { name: "qlength", desc: "NFQUEUE max queue length (default 1024)" },
    { name: "ft_shm", desc: "Fragment statistics shm name (default ftshm)" },
    { name: "ft_size", desc: "Fragment hash table size, >= 1 (default 500)" },
    { name: "ft_buckets", desc: "Extra fragment buckets for collisions (default 500)" },
    { name: "ft_frag", desc: "Max stored out-of-order fragments; 0 without --tun (default 100)" },
    { name: "ft_ttl", desc: "Fragment entry idle timeout in ms (default 200)" },
    { name: "trace_address", desc: "Trace server address (default unix:nfqlb-trace)" },
    {
      name: "metrics",
      desc: "Serve GET /metrics and /healthz on ADDR:PORT, e.g. [::1]:9100 (default off)",
    },
    { name: "fastpath", desc: "Mark established flows in the kernel (nftables maps)", flag: true },
    { name: "fastpath-table", desc: `nftables table of --fastpath (default ${FASTPATH_TABLE})` },
    { name: "fastpath-timeout", desc: "Fast-path element timeout in ms (default 5000)" },
    { name: "fastpath-size", desc: "Fast-path elements per IP family (default 65536)" },
    {
      name: "fastpath-min-packets",
      desc: "Queued packets of a flow before it is offloaded (default 2)",
    },
    {
      name: "fail-open",
      desc: "Accept packets instead of dropping them when the queue is full",
      flag: true,
    },
    {
      name: "queue-threads",
      desc: "Threads serving the queues, each several (default: one per queue; " +
        "each thread costs ~12 MB)",
    },
  );
  return opts;
}

function int(opts: OptionValues, name: string, dflt: number, min: number, max: number): number {
  const s = opts.get(name);
  if (s === undefined) return dflt;
  const v = parseStrictInt(s.trim(), min, max);
  if (v === undefined) throw new OptionError(name, s, { kind: "integer", min, max });
  return v;
}

/**
 * Parse `--metrics`: `IPv4:PORT`, `[IPv6]:PORT` or `HOSTNAME:PORT`, port 1..65535.
 * @example
 * ```ts
 * import { parseListenAddress } from "./options.ts";
 * parseListenAddress("[::1]:9100"); // { hostname: "::1", port: 9100, text: "[::1]:9100" }
 * parseListenAddress("9100"); // undefined
 * ```
 */
export function parseListenAddress(
  s: string,
): { hostname: string; port: number; text: string } | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):([0-9]{1,5})$/.exec(s);
  if (m === null) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > U16_MAX) return undefined;
  return { hostname: m[1] ?? m[2], port, text: s };
}

/** Parse `--queue`: `N` or `first:last` (docs/COMPATIBILITY.md#nfqueue). */
export function parseQueueRange(q: string): [number, number] | undefined {
  const m = /^([0-9]{1,5})(?::([0-9]{1,5}))?$/.exec(q);
  if (m === null) return undefined;
  const first = Number(m[1]);
  const last = m[2] === undefined ? first : Number(m[2]);
  if (first > U16_MAX || last > U16_MAX || first > last) return undefined;
  return [first, last];
}

/**
 * Validate the options of `lb` / `flowlb` before anything is started;
 * throws {@link OptionError} for the first bad one.
 */
export function daemonConfig(opts: OptionValues): DaemonConfig {
  const mtuText = opts.get("mtu") ?? "";
  const mtu = int(opts, "mtu", 1500, I32[0], I32[1]);
  if (mtu < MIN_MTU) throw new OptionError("mtu", mtuText, { kind: "mtu-low" });
  if (mtu > MAX_MTU) throw new OptionError("mtu", mtuText, { kind: "mtu-high", max: MAX_MTU });
  const queueText = opts.get("queue") ?? "2";
  const queues = parseQueueRange(queueText);
  if (queues === undefined) throw new OptionError("queue", queueText, { kind: "queue" });
  const traceAddress = opts.get("trace_address") ?? "unix:nfqlb-trace";
  if (parseSocketAddress(traceAddress) === undefined) {
    throw new OptionError("trace_address", traceAddress, { kind: "address" });
  }
  const tun = opts.get("tun") ?? "";
  const metricsText = opts.get("metrics");
  const metrics = metricsText === undefined ? undefined : parseListenAddress(metricsText);
  if (metricsText !== undefined && metrics === undefined) {
    throw new OptionError("metrics", metricsText, { kind: "listen" });
  }
  const ftFrag = int(opts, "ft_frag", 100, 0, 1_000_000);
  const fastpath = fastpathConfig(opts);
  return {
    tshm: opts.get("tshm") ?? "nfqlb",
    lbshm: opts.get("lbshm") ?? "",
    mtu,
    tun,
    reassembler: int(opts, "reassembler", 0, 0, 1_000_000),
    sctpEncap: int(opts, "sctp_encap", 0, 0, U16_MAX),
    notargetsFwmark: int(opts, "notargets_fwmark", -1, I32[0], I32[1]),
    nolbFwmark: int(opts, "nolb_fwmark", -1, I32[0], I32[1]),
    hashMode: int(opts, "hash_mode", 1, 0, U16_MAX),
    queueFirst: queues[0],
    queueLast: queues[1],
    qlength: int(opts, "qlength", 1024, 1, 2 ** 31 - 1),
    ftShm: opts.get("ft_shm") ?? "ftshm",
    ftSize: int(opts, "ft_size", 500, 1, 10_000_000),
    ftBuckets: int(opts, "ft_buckets", 500, 0, 10_000_000),
    ftFrag: tun === "" ? 0 : ftFrag,
    ftTtl: int(opts, "ft_ttl", 200, 0, 86_400_000),
    traceAddress,
    failOpen: opts.has("fail-open"),
    queueThreads: int(opts, "queue-threads", 0, 1, 1024),
    promiscuousPing: opts.has("promiscuous_ping"),
    flowState: opts.get("flow-state") ?? "",
    controlUnauthenticated: opts.has("control-unauthenticated"),
    metrics,
    fastpath,
  };
}

/** `--fastpath` and its settings; the settings are checked even without it. */
function fastpathConfig(opts: OptionValues): FastPathConfig | undefined {
  const table = opts.get("fastpath-table") ?? FASTPATH_TABLE;
  if (!/^[A-Za-z][A-Za-z0-9_-]{0,63}$/.test(table)) {
    throw new OptionError("fastpath-table", table, { kind: "nft-name" });
  }
  const c = {
    table,
    timeoutMs: int(opts, "fastpath-timeout", 5000, 100, 3_600_000),
    size: int(opts, "fastpath-size", 65536, 1, 16_777_216),
    minPackets: int(opts, "fastpath-min-packets", 2, 1, 1000),
  };
  return opts.has("fastpath") ? c : undefined;
}
