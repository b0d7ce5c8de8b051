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
import { type Restore, runIptablesSteps } from "../../cli/ruleset.ts";
import {
  NO_NFT_TABLE,
  parseIptablesSave,
  parseNftState,
  planIptables,
  planNft,
  type SavedTable,
} from "../../lib/ruleset/plan.ts";
import { parseVip, type Vip } from "../../lib/ruleset/vip.ts";

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

/** nfqlb's chains and their rules as `iptables-save` shows them, per family ("" when none). */
async function ownChains(net: TestNet, ns: string): Promise<string> {
  const out: string[] = [];
  for (const cmd of ["iptables", "ip6tables"]) {
    for (const l of (await net.run(ns, [`${cmd}-save`])).split("\n")) {
      if (/^(-A \S+ -j nfqlb|-A nfqlb|:nfqlb)/.test(l)) {
        out.push(`${cmd} ${l.replace(/ \[.*$/, "")}`);
      }
    }
  }
  return out.sort().join("\n");
}

/**
 * What nfqlb's chains must hold for `vips` (all to queues `q`), derived from the rule definitions
 * (docs/COMPATIBILITY.md D55): per family with VIPs, the four chains, a jump to each from its hook
 * chain, and per VIP one rule in each chain.
 */
function expectedChains(vips: string[], q: string): string {
  const out: string[] = [];
  for (
    const [cmd, v6, icmp, host] of [["iptables", false, "icmp", "/32"], [
      "ip6tables",
      true,
      "ipv6-icmp",
      "/128",
    ]] as const
  ) {
    const mine = vips.filter((v) => v.includes(":") === v6);
    if (mine.length === 0) continue;
    const queue = q.includes(":") ? `--queue-balance ${q}` : `--queue-num ${q}`;
    out.push(
      `${cmd} :nfqlb -`,
      `${cmd} :nfqlb-local -`,
      `${cmd} :nfqlb-defrag -`,
      `${cmd} :nfqlb-defrag-local -`,
      `${cmd} -A PREROUTING -j nfqlb`,
      `${cmd} -A OUTPUT -j nfqlb-local`,
      `${cmd} -A PREROUTING -j nfqlb-defrag`,
      `${cmd} -A OUTPUT -j nfqlb-defrag-local`,
    );
    for (const v of mine) {
      out.push(
        `${cmd} -A nfqlb -d ${v}${host} -j NFQUEUE ${queue}`,
        `${cmd} -A nfqlb-local -d ${v}${host} -p ${icmp} -j NFQUEUE ${queue}`,
        `${cmd} -A nfqlb-defrag -d ${v}${host} -j NOTRACK`,
        `${cmd} -A nfqlb-defrag-local -d ${v}${host} -j NOTRACK`,
      );
    }
  }
  return out.sort().join("\n");
}

Deno.test({
  name:
    "ruleset --apply adds and keeps, never removes VIPs it was not given; --delete removes only those given (needs root)",
  ignore: !ROOT,
  async fn() {
    await withTestNet(async (net) => {
      const ns = await net.addNs("rs");
      const ruleset = (...args: string[]) =>
        net.exec(ns, [DENO, "run", "-A", CLI, "ruleset", ...args]);
      let r = await ruleset("--vip=10.0.0.1,1000::1", "--apply");
      assert.equal(r.code, 0, r.stderr);
      const firstLines = r.stdout;
      assert.equal(await ownChains(net, ns), expectedChains(["10.0.0.1", "1000::1"], "0:3"));

      r = await ruleset("--vip=10.0.0.2", "--apply");
      assert.equal(r.code, 0, r.stderr);
      const three = expectedChains(["10.0.0.1", "10.0.0.2", "1000::1"], "0:3");
      assert.equal(await ownChains(net, ns), three, "10.0.0.1 and 1000::1 are still there");
      assert.equal(r.stdout, "added vip 10.0.0.2 queue 0:3\n");
      assert.equal(
        firstLines,
        "added vip 10.0.0.1 queue 0:3\nadded vip 1000::1 queue 0:3\n" +
          ["iptables", "ip6tables"].map((c) =>
            `added chain ${c} mangle nfqlb (jump from PREROUTING)\n` +
            `added chain ${c} mangle nfqlb-local (jump from OUTPUT)\n` +
            `added chain ${c} raw nfqlb-defrag (jump from PREROUTING)\n` +
            `added chain ${c} raw nfqlb-defrag-local (jump from OUTPUT)\n`
          ).join(""),
      );

      const applied = await saved(net, ns);
      r = await ruleset("--vip=10.0.0.2,10.0.0.1", "--apply");
      assert.equal(r.stdout, "kept vip 10.0.0.2 queue 0:3\nkept vip 10.0.0.1 queue 0:3\n");
      assert.equal(await saved(net, ns), applied, "applying again changes nothing");

      // Other queues than the rules in place: refused, naming them, nothing changed.
      r = await ruleset("--vip=10.0.0.3", "--queue=4:7", "--apply");
      assert.equal(r.code, 1);
      assert.equal(r.stdout, "");
      assert.match(r.stderr, /refused, nothing changed/);
      assert.match(r.stderr, /10\.0\.0\.1 queue 0:3; 10\.0\.0\.2 queue 0:3; 1000::1 queue 0:3/);
      assert.match(r.stderr, /--replace/);
      assert.equal(await saved(net, ns), applied);

      // --tshm and --tun only print; with --apply they are refused, not silently dropped.
      r = await ruleset("--vip=10.0.0.9", "--apply", "--tshm=tshm-web");
      assert.equal(r.code, 1);
      assert.match(r.stderr, /--tshm only print/);
      assert.equal(await saved(net, ns), applied);
    });
  },
});

Deno.test({
  name:
    "ruleset --delete removes only the VIPs given, says so of an absent one; --replace; the last VIP takes the chains (needs root)",
  ignore: !ROOT,
  async fn() {
    await withTestNet(async (net) => {
      const ns = await net.addNs("rsd");
      const ruleset = (...args: string[]) =>
        net.exec(ns, [DENO, "run", "-A", CLI, "ruleset", ...args]);
      await net.run(ns, [
        "iptables",
        ..."-t mangle -A PREROUTING -p tcp --dport 22 -j ACCEPT".split(" "),
      ]);
      const before = await saved(net, ns);
      let r = await ruleset("--vip=10.0.0.1,1000::1,10.0.0.2", "--apply");
      assert.equal(r.code, 0, r.stderr);
      assert.equal(
        await ownChains(net, ns),
        expectedChains(["10.0.0.1", "10.0.0.2", "1000::1"], "0:3"),
      );

      r = await ruleset("--vip=10.0.0.2", "--delete");
      assert.equal(r.code, 0, r.stderr);
      assert.equal(
        await ownChains(net, ns),
        expectedChains(["10.0.0.1", "1000::1"], "0:3"),
        "10.0.0.1 and 1000::1 are still there",
      );
      assert.equal(r.stdout, "removed vip 10.0.0.2 queue 0:3\n");

      const two = await saved(net, ns);
      r = await ruleset("--vip=10.0.0.2", "--delete");
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "absent vip 10.0.0.2\n");
      assert.equal(await saved(net, ns), two, "deleting an absent VIP changes nothing");

      // Deliberate replacement: exactly the request, each change said.
      r = await ruleset("--vip=10.0.0.1", "--queue=4:7", "--apply", "--replace");
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.split("\n").slice(0, 2), [
        "replaced vip 10.0.0.1 queue 4:7 (was queue 0:3)",
        "removed vip 1000::1 queue 0:3",
      ]);
      assert.match(r.stdout, /^removed chain ip6tables mangle nfqlb$/m);
      assert.equal(await ownChains(net, ns), expectedChains(["10.0.0.1"], "4:7"));

      r = await ruleset("--vip=10.0.0.1", "--delete");
      assert.equal(r.code, 0, r.stderr);
      assert.match(
        r.stdout,
        /^removed vip 10\.0\.0\.1 queue 4:7\nremoved chain iptables mangle nfqlb\n/,
      );
      assert.equal(await saved(net, ns), before, "the last VIP takes nfqlb's chains with it");

      // A delete of absent VIPs changes nothing, not even an empty chain of nfqlb's left behind.
      await net.run(ns, ["iptables", ..."-t mangle -N nfqlb".split(" ")]);
      const leftover = await saved(net, ns);
      r = await ruleset("--vip=10.0.0.9", "--delete");
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "absent vip 10.0.0.9\n");
      assert.equal(await saved(net, ns), leftover);
    });
  },
});

Deno.test({
  name: "ruleset: a failed step undoes the steps before it (needs root)",
  ignore: !ROOT,
  async fn() {
    await withTestNet(async (net) => {
      const ns = await net.addNs("rsu");
      const restore: Restore = async (cmd, input) => {
        const r = await net.exec(ns, [`${cmd}-restore`, "--noflush", "-w"], input);
        return r.code === 0 ? undefined : r.stderr.trim();
      };
      const read = async () => {
        const m = new Map<string, SavedTable>();
        for (const cmd of ["iptables", "ip6tables"]) {
          for (const t of ["mangle", "raw"]) {
            m.set(`${cmd} ${t}`, parseIptablesSave(await net.run(ns, [`${cmd}-save`, "-t", t])));
          }
        }
        return m;
      };
      const spec = { first: 0, last: 3, fastpath: false };
      const vips = ["10.0.0.1", "1000::1"].map((v) => parseVip(v) as Vip);
      await runIptablesSteps(
        planIptables(await read(), { vips: vips.slice(0, 1), spec, mode: "apply", replace: false })
          .steps,
        restore,
      );
      const before = await saved(net, ns);
      // Add 1000::1 and remove 10.0.0.1 (--replace): four steps; the last is made to fail.
      const plan = planIptables(await read(), {
        vips: vips.slice(1),
        spec,
        mode: "apply",
        replace: true,
      });
      assert.equal(plan.steps.length, 4);
      const last = plan.steps[3];
      const steps = [...plan.steps.slice(0, 3), {
        ...last,
        ops: [...last.ops, "-D nfqlb-defrag -d 2000::9 -j NOTRACK"],
      }];
      await assert.rejects(() => runIptablesSteps(steps, restore), (e: Error) => {
        assert.match(e.message, /ip6tables-restore \(table raw\) failed: /);
        assert.match(e.message, /nothing changed \(the earlier changes were undone\)/);
        return true;
      });
      assert.equal(await saved(net, ns), before, "the three committed steps were undone");
      await runIptablesSteps(plan.steps, restore);
      assert.equal(await ownChains(net, ns), expectedChains(["1000::1"], "0:3"));
    });
  },
});

Deno.test({
  name:
    "ruleset nft style: the planned scripts run in nft and do what they say (queue replaced by accept; needs root)",
  ignore: !ROOT,
  async fn() {
    await withTestNet(async (net) => {
      const ns = await net.addNs("rsn");
      const nft = async (script: string) => {
        const r = await net.exec(ns, ["nft", "-f", "-"], script);
        assert.equal(r.code, 0, `${script}: ${r.stderr}`);
      };
      // This kernel has no nft queue expression: the table as written, with accept for queue.
      const spec = { first: 0, last: 3, fastpath: false };
      const first = planNft(NO_NFT_TABLE, {
        vips: ["10.0.0.1", "1000::1"].map((v) => parseVip(v) as Vip),
        spec,
        mode: "apply",
        replace: false,
      });
      await nft(first.steps[0].replaceAll("queue to 0-3", "accept"));
      // Read back with nfqlb's accept rules as the queue rules they stand for.
      const read = async () => {
        const json = await net.run(ns, ["nft", "-j", "list", "table", "inet", "nfqlb"]);
        return parseNftState(json.replaceAll(
          /("@ipv[46]-vips"\}\}, \{"counter": \{"packets": \d+, "bytes": \d+\}\}, )\{"accept": null\}/g,
          '$1{"queue": {"num": {"range": [0, 3]}}}',
        ));
      };
      const request = (mode: "apply" | "delete", v: string[]) => ({
        vips: v.map((x) => parseVip(x) as Vip),
        spec,
        mode,
        replace: false,
      });
      const texts = async () => (await read()).vips.map((v) => v.text);
      const state = await read();
      assert.deepEqual([state.spec, state.problems, state.foreignObjects], [spec, [], []]);

      let plan = planNft(await read(), request("apply", ["10.0.0.2", "2000::/64"]));
      assert.equal(plan.steps.length, 1);
      await nft(plan.steps[0]);
      assert.deepEqual(await texts(), ["10.0.0.1", "10.0.0.2", "1000::1", "2000::/64"]);

      plan = planNft(await read(), request("delete", ["10.0.0.2", "2000::/64"]));
      await nft(plan.steps[0]);
      assert.deepEqual(await texts(), ["10.0.0.1", "1000::1"]);

      plan = planNft(await read(), request("delete", ["10.0.0.1", "1000::1"]));
      assert.deepEqual(plan.steps, ["delete table inet nfqlb\n"]);
      await nft(plan.steps[0]);
      const gone = await net.exec(ns, ["nft", "list", "table", "inet", "nfqlb"]);
      assert.notEqual(gone.code, 0, "the table went with the last VIP");

      // A chain and a rule of the operator's in the table: deleting the last VIPs keeps them.
      await nft(first.steps[0].replaceAll("queue to 0-3", "accept"));
      await nft(
        "add chain inet nfqlb operator-own\n" +
          "add rule inet nfqlb operator-own counter accept\n" +
          'add rule inet nfqlb nfqlb log prefix "operator"\n',
      );
      const own = await net.run(ns, ["nft", "list", "table", "inet", "nfqlb"]);
      plan = planNft(await read(), request("delete", ["10.0.0.1", "1000::1"]));
      assert.match(plan.lines.at(-1)!, /^kept table inet nfqlb \(it holds 1 chain and 2 rules /);
      await nft(plan.steps[0]);
      assert.deepEqual(await texts(), []);
      const kept = await net.run(ns, ["nft", "list", "table", "inet", "nfqlb"]);
      assert.equal(
        kept,
        own.replace(/\t\telements = \{ [^}]* \}\n/g, ""),
        "only the elements went",
      );
      // Nothing of the request in place: nothing planned, even for a table without VIPs.
      assert.deepEqual(planNft(await read(), request("delete", ["10.0.0.9"])).steps, []);
      // A rewrite (other queues) would remove them: refused.
      plan = planNft(await read(), {
        ...request("apply", ["10.0.0.1"]),
        spec: { ...spec, first: 4, last: 7 },
        replace: true,
      });
      assert.equal(plan.refusals.length, 2);
      assert.deepEqual(plan.steps, []);
    });
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
    err: "ruleset: invalid --vip [10.0.0.300]: not an address or prefix\n",
  });
  assert.equal((await runCli("ruleset")).code, 1, "--vip is required");
  for (
    const [args, err] of [
      [
        ["--vip=10.0.0.1/24"],
        "ruleset: invalid --vip [10.0.0.1/24]: host bits set (the prefix is 10.0.0.0/24)\n",
      ],
      [["--vip=10.0.0.0/24,10.0.0.1"], "ruleset: invalid --vip: 10.0.0.1 overlaps 10.0.0.0/24\n"],
      [["--vip=10.0.0.1", "--replace"], "ruleset: --replace goes with --apply\n"],
      [["--vip=10.0.0.1", "--delete", "--replace"], "ruleset: --replace goes with --apply\n"],
    ] as [string[], string][]
  ) assert.deepEqual(await runCli("ruleset", ...args), { code: 1, out: "", err }, args.join(" "));
  // The same VIP twice is one VIP; its forms are printed canonically.
  const twice = await runCli("ruleset", "--vip=10.0.0.1,10.0.0.1/32", "--queue=2");
  assert.equal(twice.out.split("\n").filter((l) => l.includes("-A nfqlb ")).length, 1);
  assert.equal((await runCli("ruleset", "--vip=1.2.3.4", "--apply", "--delete")).code, 1);
});
