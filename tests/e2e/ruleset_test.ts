/**
 * `nfqlb ruleset` (iptables style; this kernel has no nft `queue` expression) in namespaces the
 * test creates (testkit/e2e_topology.ts): `--apply` makes VIP traffic flow through the queue to
 * the targets the table predicts, a second `--apply` changes nothing, `--delete` restores the
 * previous rules and chains exactly. The nft style is checked as text.
 */
import assert from "node:assert/strict";
import { Addressing } from "../../testkit/e2e_topology.ts";
import {
  Daemon,
  predict,
  readyTopology,
  removeShmObjects,
  type Service,
  serviceOf,
} from "../../testkit/e2e_service.ts";
import { isRoot, type TestNet, withTestNet } from "../../testkit/netns.ts";
import { runCli } from "../../testkit/cli.ts";

const ROOT = isRoot();
const DENO = Deno.execPath();
const CLI = new URL("../../cli.ts", import.meta.url).pathname;
const UDP_EXCHANGE = new URL("../../testkit/fixtures/udp_exchange.py", import.meta.url).pathname;
const NET = new Addressing(214, 1, 1);
const PORT = 5001;
const SVC: Service = serviceOf(NET, PORT);

/**
 * Both families' rules and user chains, per table (`iptables-save` without counters and comments;
 * an empty built-in table that appears once loaded is not a change).
 */
async function saved(net: TestNet, ns: string): Promise<string> {
  const norm = (t: string) => {
    let table = "";
    const out: string[] = [];
    for (const l of t.split("\n")) {
      if (l.startsWith("*")) table = l;
      else if (l.startsWith("-A ") || /^:[^A-Z ]/.test(l)) {
        out.push(`${table} ${l.replace(/\[\d+:\d+\]/g, "")}`);
      }
    }
    return out.join("\n");
  };
  return norm(await net.run(ns, ["iptables-save"])) + "\n" +
    norm(await net.run(ns, ["ip6tables-save"]));
}

Deno.test({
  name:
    "ruleset --apply (twice) and --delete: traffic through the queue, then the old ruleset (needs root)",
  ignore: !ROOT,
  async fn() {
    const token = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
    const tshm = `nfqlbrs-${Deno.pid}-${token}-t`;
    const ftshm = `nfqlbrs-${Deno.pid}-${token}-ft`;
    let daemon: Daemon | null = null;
    try {
      await withTestNet(async (net) => {
        const { cl, lb, servers } = await readyTopology(net, NET, SVC, undefined, tshm);
        const ruleset = (...args: string[]) =>
          net.run(lb, [
            DENO,
            "run",
            "-A",
            CLI,
            "ruleset",
            `--vip=${NET.vip4},${NET.vip6}`,
            "--queue=14:15",
            ...args,
          ]);
        // Rules of somebody else's, which must survive untouched.
        await net.run(lb, [
          "iptables",
          ..."-t mangle -A PREROUTING -p tcp --dport 22 -j ACCEPT".split(" "),
        ]);
        await net.run(lb, [
          "ip6tables",
          ..."-t raw -A OUTPUT -p udp --dport 53 -j ACCEPT".split(" "),
        ]);
        const before = await saved(net, lb);
        assert.match(before, /--dport 22 -j ACCEPT/);
        await ruleset("--apply");
        const applied = await saved(net, lb);
        assert.notEqual(applied, before);
        assert.match(applied, /-A nfqlb -d 10\.214\.255\.1\/32 -j NFQUEUE --queue-balance 14:15/);
        await ruleset("--apply");
        assert.equal(await saved(net, lb), applied, "a second --apply changes nothing");

        daemon = new Daemon(net, lb, "lb", [
          `--tshm=${tshm}`,
          "--queue=14:15",
          `--ft_shm=${ftshm}`,
        ]);
        await daemon.ready(2);
        const ports = Array.from({ length: 20 }, (_, i) => 44000 + i);
        const out = await net.run(cl, [
          "/usr/bin/python3",
          UDP_EXCHANGE,
          NET.cl4[0],
          NET.vip4,
          String(PORT),
          ...ports.map(String),
        ]);
        const got = new Map(out.trim().split("\n").map((l) => l.split(" ") as [string, string]));
        for (const p of ports) {
          assert.equal(got.get(String(p)), await predict(SVC, tshm, NET.cl4[0], p), `port ${p}`);
        }
        const r = await daemon.stop();
        daemon = null;
        assert.equal(r.code, 0, r.stderr);

        await ruleset("--delete");
        assert.equal(await saved(net, lb), before, "--delete restores the ruleset exactly");
        await ruleset("--delete"); // nothing left to delete: no error
        for (const s of servers) await s.finish();
      });
    } finally {
      await (daemon as Daemon | null)?.kill();
      removeShmObjects(tshm, ftshm);
    }
  },
});

Deno.test("ruleset: the nft style in the frontend's shape, the policy routing, bad input", async () => {
  const nft = await runCli("ruleset", "--vip=20.0.0.1,2000::1", "--style=nft");
  assert.equal(nft.code, 0);
  for (
    const l of [
      "\tset ipv4-vips {",
      "\t\telements = { 20.0.0.1 }",
      "\t\telements = { 2000::1 }",
      "\t\tip daddr @ipv4-vips counter queue to 0-3",
      "\t\tip6 daddr @ipv6-vips counter queue to 0-3",
      "\t\ttype filter hook output priority filter; policy accept;",
      "\t\tmeta l4proto ipv6-icmp ip6 daddr @ipv6-vips counter queue to 0-3",
      "\t\tip daddr @ipv4-vips notrack",
    ]
  ) assert.ok(nft.out.split("\n").includes(l), l);
  const name = `nfqlbrs-${Deno.pid}-pr`;
  try {
    assert.equal((await runCli("init", `--shm=${name}`, "--M=97", "--N=4")).code, 0);
    assert.equal((await runCli("activate", `--shm=${name}`, "101", "102")).code, 0);
    const pr = await runCli("ruleset", "--vip=20.0.0.1", "--queue=2", `--tshm=${name}`);
    assert.match(pr.out, /-j NFQUEUE --queue-num 2\n/);
    assert.match(pr.out, /^ip rule add fwmark 101 table 101$/m);
    assert.match(
      pr.out,
      /^ip route add default via <address of the target with fwmark 102> table 102$/m,
    );
  } finally {
    try {
      Deno.removeSync(`/dev/shm/${name}`);
    } catch {
      // not made
    }
  }
  assert.deepEqual(await runCli("ruleset", "--vip=10.0.0.300"), {
    code: 1,
    out: "",
    err: "ruleset: invalid --vip [10.0.0.300]\n",
  });
  assert.equal((await runCli("ruleset")).code, 1, "--vip is required");
  assert.equal((await runCli("ruleset", "--vip=1.2.3.4", "--apply", "--delete")).code, 1);
});
