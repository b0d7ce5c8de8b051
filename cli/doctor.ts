/**
 * `nfqlb doctor`: checks the network namespace it runs in (or `--netns=NAME`)
 * for what silently breaks a stateless load balancer, one PASS/FAIL line per
 * check with the fix (`lib/doctor/checks.ts`); exit 1 when a check fails.
 * @module
 */
import { openShm } from "../ffi/shm.ts";
import {
  checkBridgeNetfilter,
  checkConntrack,
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
  formatReport,
} from "../lib/doctor/checks.ts";
import { readStatsExt } from "../lib/frag/stats.ts";
import { parseNfqueueProc } from "../lib/nfqueue/proc.ts";
import { parseQueueRange } from "../daemon/options.ts";
import { activeFwmarks } from "../daemon/open_table.ts";
import { type Command, die } from "./command.ts";
import { exec } from "./exec.ts";

/** stdout of `cmd`, or "" when it cannot run or fails. */
async function output(cmd: string, ...args: string[]): Promise<string> {
  try {
    const r = await exec([cmd, ...args]);
    return r.code === 0 ? r.stdout : "";
  } catch {
    return "";
  }
}

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
async function offloads(): Promise<Map<string, string> | undefined> {
  try {
    await new Deno.Command("ethtool", { args: ["--version"], stdout: "null", stderr: "null" })
      .output();
  } catch {
    return undefined;
  }
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
async function shmFreeKiB(): Promise<number | undefined> {
  const line = (await output("df", "-Pk", "/dev/shm")).trim().split("\n")[1];
  const n = Number(line?.trim().split(/\s+/)[3]);
  return Number.isFinite(n) ? n : undefined;
}

export const doctorCommand: Command = {
  name: "doctor",
  help:
    "doctor [--netns=NAME] [--vip=VIP,...] [--queue=N|first:last] [--tun=NAME] [--tshm=NAME]\n" +
    "  Check this network namespace (or NAME) for what breaks a stateless load balancer:\n" +
    "  conntrack reassembly, bridge netfilter, rp_filter, fwmark_reflect, queues without a\n" +
    "  listener, VIPs without a queue rule, the tun device, fwmarks without a route,\n" +
    "  GRO/LRO, /dev/shm space. One PASS/FAIL line per check with the fix; exit 1 if any fails.",
  options: [
    { name: "netns", desc: "Run the checks in network namespace NAME (ip netns)" },
    { name: "vip", desc: "VIPs that must be sent to NFQUEUE, comma-separated" },
    {
      name: "queue",
      desc: "Queues that must have a listener (default 2, as lb/flowlb; `ruleset` defaults to " +
        "0:3: give the daemon's --queue)",
    },
    { name: "tun", desc: "tun device the daemon re-injects fragments through" },
    { name: "tshm", desc: "Target table whose active fwmarks need an ip rule and a route" },
    { name: "ft_shm", desc: "Fragment statistics of the daemon (default ftshm)" },
    { name: "json", desc: "Print the results as JSON", flag: true },
  ],
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
      const r = await exec(argv);
      inv.io.out(r.stdout);
      if (r.stderr !== "") inv.io.err(r.stderr);
      return r.code;
    }
    const queueText = o.get("queue") ?? "2";
    const queues = parseQueueRange(queueText);
    if (queues === undefined) die(`queue invalid [${queueText}]`);
    const sets = [
      await output("iptables-save"),
      await output("ip6tables-save"),
      await output("nft", "list", "ruleset"),
    ];
    const rules = sets.join("\n");
    // iptables-save prints at least its header when it works: all empty means none could run.
    const readable = sets.some((t) => t !== "") ? rules : undefined;
    const ftShm = o.get("ft_shm") ?? "ftshm";
    let reassembled: number | undefined;
    try {
      const m = openShm(ftShm, false);
      reassembled = readStatsExt(m.buffer)?.kernelReassembled ?? 0;
      m.close();
    } catch {
      reassembled = undefined;
    }
    const proc = parseNfqueueProc(read("/proc/net/netfilter/nfnetlink_queue") ?? "");
    const results: CheckResult[] = [
      checkConntrack(readable),
      checkReassembled(reassembled, ftShm),
      checkBridgeNetfilter(
        read("/proc/sys/net/bridge/bridge-nf-call-iptables"),
        read("/proc/sys/net/bridge/bridge-nf-call-ip6tables"),
      ),
      checkRpFilter(rpFilters()),
      checkFwmarkReflect(
        read("/proc/sys/net/ipv4/fwmark_reflect"),
        read("/proc/sys/net/ipv6/fwmark_reflect"),
      ),
      checkQueues(queues[0], queues[1], new Set(proc.keys())),
    ];
    const vips = o.get("vip");
    if (vips !== undefined) {
      results.push(checkVipRules(vips.split(",").filter((v) => v !== ""), rules));
    }
    const tun = o.get("tun");
    if (tun !== undefined) results.push(checkTun(tun, read(`/sys/class/net/${tun}/flags`)));
    const tshm = o.get("tshm");
    if (tshm !== undefined) {
      let marks: number[] = [];
      try {
        marks = activeFwmarks(tshm);
      } catch (e) {
        die(`doctor: --tshm=${tshm}: ${e instanceof Error ? e.message : e}`);
      }
      const ipRules = (await output("ip", "rule", "show")) +
        (await output("ip", "-6", "rule", "show"));
      const routes = new Map<string, boolean>();
      for (const m of ipRules.matchAll(/lookup (\S+)/g)) {
        const t = m[1];
        if (routes.has(t)) continue;
        const r4 = await output("ip", "route", "show", "table", t);
        const r6 = await output("ip", "-6", "route", "show", "table", t);
        routes.set(t, (r4 + r6).trim() !== "");
      }
      results.push(checkFwmarkRoutes(tshm, marks, ipRules, (t) => routes.get(t) ?? false));
    }
    results.push(checkOffloads(await offloads()));
    results.push(checkShmSpace(await shmFreeKiB()));
    inv.io.out(o.has("json") ? JSON.stringify(results, null, 2) + "\n" : formatReport(results));
    return results.every((r) => r.ok) ? 0 : 1;
  },
};
