/**
 * `nfqlb doctor`: checks the network namespace it runs in (or `--netns=NAME`)
 * for what silently breaks a stateless load balancer, one PASS/FAIL/SKIP line per
 * check with the fix (`lib/doctor/checks.ts`); exit 1 when a check fails (a SKIP, a check that
 * could not run, does not). Without `--queue` it finds the daemon's queues (its statistics
 * object, or the queues bound in this namespace) and says where from; the flows of this
 * namespace's flowlb (`flow-list`) are checked against the NFQUEUE rules.
 * @module
 */
import { queueInvalid } from "../lib/hints/accepted.ts";
import { openShm } from "../ffi/shm.ts";
import {
  checkBridgeNetfilter,
  checkConntrack,
  checkFlowRules,
  checkFwmarkReflect,
  checkFwmarkRoutes,
  checkOffloads,
  checkQueues,
  checkReassembled,
  type CheckResult,
  checkRpFilter,
  checkShmSpace,
  checkTun,
  checkVipRules,
  type DaemonQueues,
  fail,
  type FlowDsts,
  foreignQueues,
  formatReport,
  skip,
} from "../lib/doctor/checks.ts";
import { readStatsExt } from "../lib/frag/stats.ts";
import { readQueueCounters } from "../lib/counters/queue_counters.ts";
import { type FwmarkRule, parseDst, parseQueueRules } from "../lib/doctor/rules.ts";
import { buildRequest, decodeReply } from "../lib/flow/control_protocol.ts";
import { parseSocketAddress, type SocketAddress } from "../lib/ccompat/sockaddr.ts";
import { connectSocket } from "./flow_transport.ts";
import { readFwmarkRules, readRuleSets, tableHasRoute } from "./namespace_rules.ts";
import { resolveTool, runTool, stoppedWhy, tool, type ToolLimits } from "./tools.ts";
import { parseNfqueueProc } from "../lib/nfqueue/proc.ts";
import { parseQueueRange } from "../daemon/options.ts";
import { activeFwmarks } from "../daemon/open_table.ts";
import { TableOpenError } from "../daemon/errors.ts";
import { type Command, die } from "./command.ts";
import { DEFAULT_FLOW_ADDRESS, DOCTOR_SPEC, FLOW_ADDRESS_ENV } from "./specs.ts";

/** How long doctor lets one tool run, and waits for the flowlb's flow list (ms). */
export const DOCTOR_TIMEOUT_MS = 5000;

/** What doctor's checks read through: the tools' directories and timeout, the environment. */
export interface DoctorDeps {
  /** The tools (`ip`, `iptables-save`, `nft`, `ethtool`, `df`) and their timeout. */
  readonly tools: ToolLimits;
  /** How long the flowlb has to answer `flow-list` (ms). */
  readonly flowTimeoutMs: number;
  /** Reads `NFQLB_FLOW_ADDRESS`. */
  readonly env: (name: string) => string | undefined;
  /** How long `--netns` lets the doctor in the namespace run (ms; default {@link netnsTimeoutMs}). */
  readonly netnsTimeoutMs?: number;
}

/**
 * How long `doctor --netns` waits for the doctor it runs in the namespace (ms): the flow list's
 * timeout and twelve tool timeouts (the rule sets, two `ip rule`, `ip route` of a few tables,
 * `ethtool` of a few interfaces, `df`: most of them run one after the other), plus 10 s to start.
 */
export function netnsTimeoutMs(deps: DoctorDeps): number {
  return deps.netnsTimeoutMs ??
    deps.flowTimeoutMs + 12 * (deps.tools.timeoutMs ?? DOCTOR_TIMEOUT_MS) + 10_000;
}

const DEFAULT_DEPS: DoctorDeps = {
  tools: { timeoutMs: DOCTOR_TIMEOUT_MS },
  flowTimeoutMs: DOCTOR_TIMEOUT_MS,
  env: (name) => {
    try {
      return Deno.env.get(name);
    } catch {
      return undefined;
    }
  },
};

/** A file's text, or undefined when it cannot be read. */
function read(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

/** rp_filter of `all` and of every interface. */
function rpFilters(): Map<string, number> {
  const m = new Map<string, number>();
  try {
    for (const e of Deno.readDirSync("/proc/sys/net/ipv4/conf")) {
      const v = read(`/proc/sys/net/ipv4/conf/${e.name}/rp_filter`);
      if (v !== undefined) m.set(e.name, Number(v.trim()));
    }
  } catch {
    // no /proc/sys: nothing to check
  }
  return m;
}

/** `ethtool -k` of every interface but lo and tun devices, or undefined when ethtool cannot run. */
async function offloads(tools: ToolLimits): Promise<Map<string, string> | undefined> {
  if (resolveTool("ethtool", tools.dirs) === undefined) return undefined;
  const output = async (...argv: string[]) => {
    const r = await tool(argv, tools);
    return r.ok ? r.text : "";
  };
  const m = new Map<string, string>();
  try {
    for (const e of Deno.readDirSync("/sys/class/net")) {
      // lo, and tun devices (what is written to them does not go through GRO), are not asked.
      if (e.name === "lo" || read(`/sys/class/net/${e.name}/tun_flags`) !== undefined) continue;
      m.set(e.name, await output("ethtool", "-k", e.name));
    }
  } catch {
    // no /sys/class/net: nothing to check
  }
  return m;
}

/** Available KiB in /dev/shm (`df -Pk`), undefined if unknown. */
async function shmFreeKiB(tools: ToolLimits): Promise<number | undefined> {
  const r = await tool(["df", "-Pk", "/dev/shm"], tools);
  const line = (r.ok ? r.text : "").trim().split("\n")[1];
  const n = Number(line?.trim().split(/\s+/)[3]);
  return Number.isFinite(n) ? n : undefined;
}

/** What the daemon's statistics object `name` says: its queues and its reassembled count. */
function readFtShm(name: string): { queues: number[]; reassembled: number } | undefined {
  try {
    const m = openShm(name, false);
    try {
      return {
        queues: readQueueCounters(m.buffer)?.queues.map((q) => q.queue) ?? [],
        reassembled: readStatsExt(m.buffer)?.kernelReassembled ?? 0,
      };
    } finally {
      m.close();
    }
  } catch {
    return undefined;
  }
}

/**
 * The daemon's queues: `--queue`; else the queues bound in this namespace (the statistics object
 * in /dev/shm may be another namespace's daemon's); else undefined.
 */
function daemonQueues(
  option: string | undefined,
  bound: ReadonlySet<number>,
): DaemonQueues | undefined {
  if (option !== undefined) {
    const q = parseQueueRange(option);
    if (q === undefined) die(queueInvalid(option));
    const queues: number[] = [];
    for (let n = q[0]; n <= q[1]; n++) queues.push(n);
    return { queues, source: "--queue" };
  }
  if (bound.size === 0) return undefined;
  return {
    queues: [...bound].sort((a, b) => a - b),
    source: "the listeners of /proc/net/netfilter/nfnetlink_queue in this namespace",
  };
}

/**
 * Send `request` to `address` and read the reply to its end, within `timeoutMs` (connect
 * included); throws on a failure, a message on the timeout (the connection is closed).
 */
async function requestWithin(
  address: SocketAddress,
  request: Uint8Array,
  timeoutMs: number,
): Promise<Uint8Array> {
  let conn: Deno.Conn | undefined;
  let expired = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      expired = true;
      try {
        conn?.close();
      } catch {
        // closed
      }
      reject(new Error(`no reply in ${timeoutMs / 1000} s`));
    }, timeoutMs);
  });
  const exchange = async () => {
    const c = await connectSocket(address);
    if (expired) {
      c.close();
      throw new Error("late");
    }
    conn = c;
    const req = new Uint8Array(request);
    for (let off = 0; off < req.length;) off += await c.write(req.subarray(off));
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(65536);
    for (let n; (n = await c.read(buf)) !== null;) chunks.push(buf.slice(0, n));
    c.close();
    const out = new Uint8Array(chunks.reduce((a, x) => a + x.length, 0));
    chunks.reduce((off, x) => (out.set(x, off), off + x.length), 0);
    return out;
  };
  const run = exchange();
  run.catch(() => {}); // after a timeout its failure is not wanted
  try {
    return await Promise.race([run, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The flows of the flowlb of this namespace (`flow-list`), or why there are none to check. */
async function listFlows(deps: DoctorDeps): Promise<FlowDsts[] | string> {
  const text = deps.env(FLOW_ADDRESS_ENV) ?? DEFAULT_FLOW_ADDRESS;
  const address = parseSocketAddress(text);
  if (address === undefined) return `${FLOW_ADDRESS_ENV}=${text} is not an address`;
  let reply: string;
  try {
    const bytes = await requestWithin(address, buildRequest("list", {}), deps.flowTimeoutMs);
    reply = decodeReply(bytes).text;
  } catch (e) {
    return `no flowlb answers at ${text} (${
      e instanceof Error ? e.message : e
    }): flows not checked`;
  }
  try {
    const list = JSON.parse(reply) as { name: string; dests?: string[]; user_ref?: string }[];
    return list.map((f) => ({
      name: f.name,
      dsts: f.dests ?? [],
      ...(f.user_ref !== undefined && f.user_ref !== "NULL" ? { target: f.user_ref } : {}),
    }));
  } catch {
    return `the flowlb at ${text} gave no flow list (${reply.slice(0, 60)})`;
  }
}

/**
 * The fwmark-routes check of each target table (`families`: of the VIPs and flows' dsts): its
 * active fwmarks against `ip rule` and the routes of each rule's table. A table that cannot be
 * opened, or an `ip` that cannot tell, is a SKIP.
 */
async function fwmarkRoutes(
  tables: readonly string[],
  families: readonly (4 | 6)[],
  tools: ToolLimits,
): Promise<CheckResult[]> {
  // Each table first: one that cannot be opened is a FAIL whatever the routes.
  const opened = tables.map((table) => ({ table, marks: tableMarks(table) }));
  const ipRules = new Map<4 | 6, FwmarkRule[] | undefined>([
    [4, await readFwmarkRules(4, tools)],
    [6, await readFwmarkRules(6, tools)],
  ]);
  const routes = new Map<string, boolean>();
  let unknown: string | undefined;
  for (const [f, list] of ipRules) {
    for (const r of list ?? []) {
      const key = `${f} ${r.table}`;
      if (unknown !== undefined || routes.has(key)) continue;
      const has = await tableHasRoute(f, r.table, tools);
      if (typeof has === "string") unknown = has;
      else routes.set(key, has);
    }
  }
  const results: CheckResult[] = [];
  for (const { table, marks } of opened) {
    if (!Array.isArray(marks)) results.push(marks);
    else if (unknown === undefined) {
      results.push(
        checkFwmarkRoutes(
          table,
          marks,
          families,
          ipRules,
          (f, t) => routes.get(`${f} ${t}`) ?? false,
        ),
      );
    }
  }
  if (unknown !== undefined) results.push(skip("fwmark-routes", unknown));
  return results;
}

/**
 * The active fwmarks of `table`, or the check's result when it cannot be opened: missing,
 * another user's or not a table, nothing it is used for works, so a FAIL with the cause and the
 * fix (and the other checks go on); anything else a SKIP.
 */
function tableMarks(table: string): number[] | CheckResult {
  try {
    return activeFwmarks(table);
  } catch (e) {
    if (!(e instanceof TableOpenError)) {
      return skip("fwmark-routes", `${table}: ${e instanceof Error ? e.message : e}`);
    }
    if (e.problem !== "map" || e.hint === undefined) {
      return fail(
        "fwmark-routes",
        `${table}: not a valid target table: ${e.detail}`,
        `nfqlb init --shm=${table} (it makes the object a table again)`,
      );
    }
    const text = e.hint.trim();
    const at = text.indexOf("; ");
    return at < 0
      ? fail("fwmark-routes", `${table}: ${text}`, `nfqlb init --shm=${table}`)
      : fail("fwmark-routes", `${table}: ${text.slice(0, at)}`, text.slice(at + 2));
  }
}

/** `nfqlb doctor`, its tools and the flowlb's answer bounded as `deps` says (tests shrink them). */
export function makeDoctorCommand(deps: DoctorDeps = DEFAULT_DEPS): Command {
  const doctorCommand: Command = {
    ...DOCTOR_SPEC,
    async run(inv) {
      const o = inv.opts;
      const netns = o.get("netns");
      if (netns !== undefined) {
        // The same checks from inside the namespace (the /proc and /sys views are per namespace).
        const args = ["doctor"];
        for (const d of doctorCommand.options) {
          const v = o.get(d.name);
          if (d.name === "netns" || v === undefined) continue;
          args.push(d.flag ? `--${d.name}` : `--${d.name}=${v}`);
        }
        // This program: the bundle or cli.ts (in-process, as in tests, the main module is another).
        const main = new URL(Deno.mainModule).pathname;
        const self = /(\/cli\.ts|\/nfqlb)$/.test(main)
          ? main
          : new URL("../cli.ts", import.meta.url).pathname;
        const argv = ["ip", "netns", "exec", netns, Deno.execPath(), "run", "-A", self, ...args];
        const limits = { dirs: deps.tools.dirs, timeoutMs: netnsTimeoutMs(deps) };
        const r = await runTool(argv, limits);
        if (r.stopped === "timeout") {
          die(
            `doctor: \`ip netns exec ${netns} nfqlb doctor\` did not finish in ` +
              `${limits.timeoutMs / 1000} s (killed)`,
          );
        }
        if (r.stopped !== undefined) die(`doctor: ${stoppedWhy(argv, r.stopped, limits)}`);
        inv.io.out(r.stdout);
        if (r.stderr !== "") inv.io.err(r.stderr);
        // ip's line for a name it does not know: say where the names are.
        if (/^Cannot open network namespace /m.test(r.stderr)) {
          inv.io.err("  (ip netns list shows the names)\n");
        }
        return r.code;
      }
      const ftShm = o.get("ft_shm") ?? "ftshm";
      const stats = readFtShm(ftShm);
      const procQueues = read("/proc/net/netfilter/nfnetlink_queue");
      const bound = new Set(parseNfqueueProc(procQueues ?? "").keys());
      const daemon = daemonQueues(o.get("queue"), bound);
      const read3 = await readRuleSets(undefined, deps.tools);
      const { ip4, ip6, nft } = read3.sets;
      const rules = read3.readable ? parseQueueRules(read3.sets) : undefined;
      // "No rule queues X" needs every source: a tool that failed may hold the rule.
      const unread = read3.failures.length > 0 ? read3.failures.join("; ") : undefined;
      const flows = await listFlows(deps);
      const vips = (o.get("vip") ?? "").split(",").filter((v) => v !== "");
      const results: CheckResult[] = [
        checkConntrack(
          read3.readable ? [ip4, ip6, nft].join("\n") : undefined,
          read3.failures,
          Deno.uid() === 0,
        ),
        checkReassembled(
          stats?.reassembled,
          ftShm,
          stats === undefined
            ? undefined
            : foreignQueues(stats.queues, procQueues === undefined ? undefined : bound),
        ),
        checkBridgeNetfilter(
          read("/proc/sys/net/bridge/bridge-nf-call-iptables"),
          read("/proc/sys/net/bridge/bridge-nf-call-ip6tables"),
        ),
        checkRpFilter(rpFilters()),
        checkFwmarkReflect(
          read("/proc/sys/net/ipv4/fwmark_reflect"),
          read("/proc/sys/net/ipv6/fwmark_reflect"),
        ),
        checkQueues(daemon, bound, rules),
        vips.length > 0
          ? checkVipRules(vips, rules, daemon, unread)
          : skip("vip-rules", "no --vip given", "name the VIPs with --vip=VIP,..."),
        checkFlowRules(flows, rules, daemon, unread),
      ];
      const tun = o.get("tun");
      if (tun !== undefined) results.push(checkTun(tun, read(`/sys/class/net/${tun}/flags`)));
      const tshm = o.get("tshm");
      // The target tables: --tshm, and those of the flowlb's flows.
      const tables = new Set<string>(tshm === undefined ? [] : [tshm]);
      if (typeof flows !== "string") {
        for (const f of flows) if (f.target !== undefined) tables.add(f.target);
      }
      if (tables.size > 0) {
        const dsts = [...vips, ...(typeof flows === "string" ? [] : flows.flatMap((f) => f.dsts))];
        const families = ([4, 6] as const).filter((f) =>
          dsts.some((d) => parseDst(d)?.v6 === (f === 6))
        );
        results.push(...await fwmarkRoutes([...tables], families, deps.tools));
      }
      results.push(checkOffloads(await offloads(deps.tools)));
      results.push(checkShmSpace(await shmFreeKiB(deps.tools)));
      inv.io.out(o.has("json") ? JSON.stringify(results, null, 2) + "\n" : formatReport(results));
      return results.some((r) => r.status === "fail") ? 1 : 0;
    },
  };
  return doctorCommand;
}

/** `nfqlb doctor`. */
export const doctorCommand: Command = makeDoctorCommand();
