/**
 * The LB tier across two nfqlb instances (docs/COMPATIBILITY.md#packet-decisions, LB tier), as root,
 * in private network namespaces:
 *
 * ```
 *   cl (4 IPv4 + 4 IPv6 sources)    testkit/fixtures/frag_client.py
 *    | veth
 *   rt   ECMP by hand: every other packet to the VIP gets mark 1 (iptables statistic nth) and
 *    |   `ip rule fwmark 1` routes it to lb1, the rest go to lb2: the fragments of one datagram
 *    |   reach both LBs
 *   lb1, lb2   nfqlb lb --lbshm=<own tier table> --tun; tier tables with fwmarks 1 (lb1) and
 *    |   2 (lb2), init --ownfw=1 / --ownfw=2; a fragment the tier gives to the other LB is
 *    |   accepted with that LB's fwmark and routed to it over the switch
 *   sw   a bridge: lb1, lb2 and the targets
 *    |
 *   t1..t4   VIP on lo; answer each UDP datagram with their name (default route via lb1)
 * ```
 *
 * Every datagram must arrive whole at the target `nfqlb fwmark` predicts (both LBs share the
 * target table), in order, reversed and shuffled, IPv4 and IPv6; fragments must really have been
 * handed from one LB to the other.
 */
import assert from "node:assert/strict";
import {
  cli,
  Daemon,
  fragDrops,
  fragStats,
  perFamily,
  removeShmObjects,
  sendAndCheck,
  type Service,
  startTargets,
} from "../../testkit/e2e_service.ts";
import { isRoot, type TestNet, withTestNet } from "../../testkit/netns.ts";

const ROOT = isRoot();
if (!ROOT) console.warn("lb_tier_test: not running as root: LB-tier end-to-end test skipped");

const B = 208;
const VIP4 = `10.${B}.255.1`;
const VIP6 = `fd00:${B}:ffff::1`;
const CL4 = [2, 3, 4, 5].map((i) => `10.${B}.0.${i}`);
const CL6 = [2, 3, 4, 5].map((i) => `fd00:${B}::${i}`);
const TARGETS = [1, 2, 3, 4];
const tMark = (i: number) => 100 + i;
const tName = (i: number) => `t${i}`;
const PORT = 80;
const Q = 8;
const TUN = "nfqtun";
const SVC: Service = {
  vip4: VIP4,
  vip6: VIP6,
  port: PORT,
  targets: new Map(TARGETS.map((i) => [tMark(i), tName(i)])),
};
/** Addresses on the switch: lb1 .1, lb2 .2, target i .(10 + i). */
const sw4 = (h: number) => `10.${B}.100.${h}`;
const sw6 = (h: number) => `fd00:${B}:100::${h}`;
/** The links between the router and LB n. */
const rt4 = (n: number) => `10.${B}.${n}0.1`;
const lbRt4 = (n: number) => `10.${B}.${n}0.2`;
const rt6 = (n: number) => `fd00:${B}:${n}0::1`;
const lbRt6 = (n: number) => `fd00:${B}:${n}0::2`;

async function sysctls(net: TestNet, ns: string, forward: boolean) {
  const kv = [
    "net.ipv4.conf.all.rp_filter=0",
    "net.ipv4.conf.default.rp_filter=0",
    "net.ipv6.conf.all.accept_dad=0",
    "net.ipv6.conf.default.accept_dad=0",
    "net.ipv6.conf.all.accept_ra=0",
    "net.ipv6.conf.default.accept_ra=0",
    ...(forward ? ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] : []),
  ];
  await net.run(ns, ["sysctl", "-q", ...kv.flatMap((x) => ["-w", x])]);
}

Deno.test({
  name:
    "LB tier: two nfqlb instances behind a per-packet split deliver every datagram whole (needs root)",
  ignore: !ROOT,
  async fn(t) {
    const token = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
    const shm = (s: string) => `nfqlbtier-${Deno.pid}-${token}-${s}`;
    const tshm = shm("t");
    const tiers = [shm("tier1"), shm("tier2")];
    const ftshms = [shm("ft1"), shm("ft2")];
    const daemons: Daemon[] = [];
    try {
      await withTestNet(async (net) => {
        const ip = (ns: string, ...args: string[]) => net.run(ns, ["ip", ...args]);
        const cl = await net.addNs("cl");
        const rt = await net.addNs("rt");
        const lbs = [await net.addNs("lb1"), await net.addNs("lb2")];
        const sw = await net.addNs("sw");
        const targets = new Map<number, string>();
        for (const i of TARGETS) targets.set(i, await net.addNs(tName(i)));
        for (const ns of [cl, sw, ...targets.values()]) await sysctls(net, ns, false);
        for (const ns of [rt, ...lbs]) await sysctls(net, ns, true);

        // Client <-> router.
        await net.veth(cl, "veth0", rt, "vcl");
        await ip(rt, "addr", "add", `10.${B}.0.1/24`, "dev", "vcl");
        await ip(rt, "-6", "addr", "add", `fd00:${B}::1/64`, "dev", "vcl", "nodad");
        for (const a of CL4) await ip(cl, "addr", "add", `${a}/24`, "dev", "veth0");
        for (const a of CL6) await ip(cl, "-6", "addr", "add", `${a}/64`, "dev", "veth0", "nodad");
        await ip(cl, "route", "add", "default", "via", `10.${B}.0.1`);
        await ip(cl, "-6", "route", "add", "default", "via", `fd00:${B}::1`);

        // Router <-> each LB; the VIP via lb2, mark 1 via lb1.
        for (const [k, lb] of lbs.entries()) {
          const n = k + 1;
          await net.veth(rt, `vlb${n}`, lb, "vrt");
          await ip(rt, "addr", "add", `${rt4(n)}/24`, "dev", `vlb${n}`);
          await ip(rt, "-6", "addr", "add", `${rt6(n)}/64`, "dev", `vlb${n}`, "nodad");
          await ip(lb, "addr", "add", `${lbRt4(n)}/24`, "dev", "vrt");
          await ip(lb, "-6", "addr", "add", `${lbRt6(n)}/64`, "dev", "vrt", "nodad");
          await ip(lb, "route", "add", "default", "via", rt4(n));
          await ip(lb, "-6", "route", "add", "default", "via", rt6(n));
        }
        await ip(rt, "route", "add", `${VIP4}/32`, "via", lbRt4(2));
        await ip(rt, "-6", "route", "add", `${VIP6}/128`, "via", lbRt6(2));
        await ip(rt, "rule", "add", "fwmark", "1", "table", "1");
        await ip(rt, "-6", "rule", "add", "fwmark", "1", "table", "1");
        await ip(rt, "route", "add", "default", "via", lbRt4(1), "table", "1");
        await ip(rt, "-6", "route", "add", "default", "via", lbRt6(1), "table", "1");
        await perFamily(SVC, (ipt, vip) =>
          net.run(rt, [
            ipt,
            ...`-t mangle -A PREROUTING -d ${vip} -m statistic --mode nth --every 2 --packet 0`
              .split(" "),
            ..."-j MARK --set-mark 1".split(" "),
          ]));

        // The switch: a bridge with the LBs and the targets.
        await ip(sw, "link", "add", "br0", "type", "bridge");
        await ip(sw, "link", "set", "br0", "up");
        const port = async (ns: string, name: string, host: number) => {
          await net.veth(sw, name, ns, "vsw");
          await ip(sw, "link", "set", name, "master", "br0");
          await ip(ns, "addr", "add", `${sw4(host)}/24`, "dev", "vsw");
          await ip(ns, "-6", "addr", "add", `${sw6(host)}/64`, "dev", "vsw", "nodad");
        };
        for (const [k, lb] of lbs.entries()) await port(lb, `plb${k + 1}`, k + 1);
        for (const [i, ns] of targets) {
          await port(ns, `pt${i}`, 10 + i);
          await ip(ns, "addr", "add", `${VIP4}/32`, "dev", "lo");
          await ip(ns, "-6", "addr", "add", `${VIP6}/128`, "dev", "lo");
          await ip(ns, "route", "add", "default", "via", sw4(1));
          await ip(ns, "-6", "route", "add", "default", "via", sw6(1));
        }
        // Each LB: fwmark of target i -> target i; fwmark of the other LB -> that LB.
        for (const [k, lb] of lbs.entries()) {
          const routes: [number, number][] = TARGETS.map((i) => [tMark(i), 10 + i]);
          routes.push([2 - k, 2 - k]); // lb1 sends mark 2 to lb2 (.2), lb2 mark 1 to lb1 (.1)
          for (const [mark, host] of routes) {
            await ip(lb, "rule", "add", "fwmark", String(mark), "table", String(mark));
            await ip(lb, "-6", "rule", "add", "fwmark", String(mark), "table", String(mark));
            await ip(lb, "route", "add", "default", "via", sw4(host), "table", String(mark));
            await ip(lb, "-6", "route", "add", "default", "via", sw6(host), "table", String(mark));
          }
          await ip(lb, "tuntap", "add", TUN, "mode", "tun");
          await ip(lb, "link", "set", TUN, "up");
          await perFamily(SVC, async (ipt, vip) => {
            await net.run(lb, [ipt, ..."-t raw -A PREROUTING -j NOTRACK".split(" ")]);
            // Counts fragments handed over by the other LB (they come in from the switch).
            await net.run(lb, [ipt, ...`-t mangle -A PREROUTING -i vsw -d ${vip}`.split(" ")]);
            const queue = `-t mangle -A PREROUTING -d ${vip} -j NFQUEUE --queue-num ${Q}`;
            await net.run(lb, [ipt, ...queue.split(" ")]);
          });
        }
        // Neighbours resolved up front.
        const pings: [string, string][] = [];
        for (const n of [1, 2]) pings.push([rt, lbRt4(n)], [rt, lbRt6(n)]);
        for (const lb of lbs) {
          for (const h of [1, 2, 11, 12, 13, 14]) pings.push([lb, sw4(h)], [lb, sw6(h)]);
        }
        for (const ns of targets.values()) pings.push([ns, sw4(1)], [ns, sw6(1)]);
        for (const a of [...CL4, ...CL6]) pings.push([rt, a]);
        await Promise.all(
          pings.map(([ns, a]) => net.exec(ns, ["ping", "-c1", "-W3", a])),
        );

        const servers = await startTargets(
          net,
          SVC,
          [...targets].map(([i, ns]) => [tName(i), ns]),
        );

        await cli("init", `--shm=${tshm}`, "--M=997", "--N=32");
        await cli("activate", `--shm=${tshm}`, ...TARGETS.map((i) => String(tMark(i))));
        for (const [k, tier] of tiers.entries()) {
          await cli("init", `--shm=${tier}`, `--ownfw=${k + 1}`, "--M=97", "--N=4");
          await cli("activate", `--shm=${tier}`, "1", "2");
        }
        for (const [k, lb] of lbs.entries()) {
          const d = new Daemon(net, lb, "lb", [
            `--tshm=${tshm}`,
            `--lbshm=${tiers[k]}`,
            `--ft_shm=${ftshms[k]}`,
            `--queue=${Q}`,
            `--tun=${TUN}`,
          ]);
          daemons.push(d);
          await d.ready();
        }

        let sportBase = 40000;
        for (const v6 of [false, true]) {
          await t.step(
            `IPv${v6 ? 6 : 4}: 3000 and 10000 bytes, in order, reversed, shuffled`,
            async () => {
              for (const size of [3000, 10000]) {
                for (const order of ["in-order", "reverse", "shuffle"] as const) {
                  for (const src of v6 ? CL6 : CL4) {
                    const c = { src, size, order, sportBase, count: 13 };
                    sportBase += 13;
                    await sendAndCheck(
                      net,
                      cl,
                      SVC,
                      tshm,
                      c,
                      `IPv${v6 ? 6 : 4} ${size} ${order} from ${src}`,
                    );
                  }
                }
              }
            },
          );
        }

        await t.step("fragments were handed between the LBs; nothing dropped", async () => {
          let handed = 0;
          for (const lb of lbs) {
            for (const ipt of ["iptables", "ip6tables"]) {
              const out = await net.run(lb, [
                ipt,
                "-t",
                "mangle",
                "-L",
                "PREROUTING",
                "-n",
                "-v",
                "-x",
              ]);
              handed += Number(out.split("\n")[2].trim().split(/\s+/)[0]);
            }
          }
          console.log(`  fragments handed over between the LBs: ${handed}`);
          assert.ok(handed > 100, `handed over: ${handed}`);
          for (const name of ftshms) assert.deepEqual(fragDrops(fragStats(name)), {}, name);
          for (const d of daemons.splice(0)) {
            const r = await d.stop();
            assert.equal(r.code, 0, r.stderr);
            assert.equal(r.stderr, "");
          }
        });
        for (const s of servers) await s.finish();
      });
    } finally {
      for (const d of daemons) await d.kill();
      removeShmObjects(tshm, ...tiers, ...ftshms);
    }
  },
});
