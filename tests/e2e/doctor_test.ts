/**
 * `nfqlb doctor` in a network namespace the test creates (as root): each check is made to fail by
 * creating its condition, seen to fail (exit 1, the check's FAIL with a fix), then fixed and seen
 * to pass; `--netns` runs the same checks from outside.
 */
import assert from "node:assert/strict";
import { removeShm, runCli, tempShmName } from "../../testkit/cli.ts";
import { isRoot, withTestNet } from "../../testkit/netns.ts";
import type { CheckResult } from "../../lib/doctor/checks.ts";
import { LineProcess } from "../../testkit/line_process.ts";

const ROOT = isRoot();
const DENO = Deno.execPath();
const CLI = new URL("../../cli.ts", import.meta.url).pathname;
const VIP = "10.213.255.1";
const Q = 13;

Deno.test({
  name: "doctor: every check fails on its condition and passes once it is fixed (needs root)",
  ignore: !ROOT,
  async fn(t) {
    const tshm = tempShmName("doc");
    const ftshm = tempShmName("docft");
    try {
      await withTestNet(async (net) => {
        const ns = await net.addNs("doc");
        const run = (...cmd: string[]) => net.run(ns, cmd);
        await net.veth(ns, "d0", await net.addNs("docpeer"), "p0");
        await run("ip", "addr", "add", "10.213.0.1/24", "dev", "d0");
        // A healthy start: the sysctls a load balancer wants.
        for (
          const kv of [
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.d0.rp_filter=0",
            "net.ipv4.fwmark_reflect=1",
            "net.ipv6.fwmark_reflect=1",
          ]
        ) {
          await run("sysctl", "-q", "-w", kv);
        }
        await net.exec(ns, [
          "sysctl",
          "-q",
          "-w",
          "net.bridge.bridge-nf-call-iptables=0",
          "net.bridge.bridge-nf-call-ip6tables=0",
        ]);
        assert.equal((await runCli("init", `--shm=${tshm}`, "--M=97", "--N=4")).code, 0);
        assert.equal((await runCli("activate", `--shm=${tshm}`, "101")).code, 0);
        const args = [
          `--vip=${VIP}`,
          `--queue=${Q}`,
          "--tun=nfqtun",
          `--tshm=${tshm}`,
          `--ft_shm=${ftshm}`,
          "--json",
        ];
        const doctor = async () => {
          const r = await net.exec(ns, [DENO, "run", "-A", CLI, "doctor", ...args]);
          const results = JSON.parse(r.stdout) as CheckResult[];
          return { code: r.code, get: (c: string) => results.find((x) => x.check === c)! };
        };
        const expectFail = async (check: string, detail: RegExp) => {
          const d = await doctor();
          assert.equal(d.code, 1);
          assert.equal(d.get(check).ok, false, `${check}: ${d.get(check).detail}`);
          assert.match(d.get(check).detail, detail);
          assert.ok((d.get(check).fix ?? "") !== "", `${check} has a fix`);
        };
        const expectPass = async (check: string) =>
          assert.equal((await doctor()).get(check).ok, true, check);

        await t.step(
          "a --tshm that does not exist: a FAIL with the fix; the rest still runs",
          async () => {
            const missing = `${tshm}-missing`;
            const r = await net.exec(ns, [
              DENO,
              "run",
              "-A",
              CLI,
              "doctor",
              ...args.map((a) => a === `--tshm=${tshm}` ? `--tshm=${missing}` : a),
            ]);
            assert.equal(r.code, 1, r.stderr);
            const results = JSON.parse(r.stdout) as CheckResult[];
            const routes = results.find((x) => x.check === "fwmark-routes")!;
            assert.equal(routes.status, "fail");
            assert.equal(
              routes.detail,
              `${missing}: /dev/shm/${missing}: No such file or directory`,
            );
            assert.match(routes.fix!, new RegExp(`^create it with: nfqlb init --shm=${missing} `));
            assert.ok(results.some((x) => x.check === "conntrack"), "the other checks ran");
            // An object that is not a table: a FAIL too.
            const junk = `${tshm}-junk`;
            Deno.writeFileSync(`/dev/shm/${junk}`, new Uint8Array(100).fill(0xa5), { mode: 0o600 });
            try {
              const j = await net.exec(ns, [
                DENO,
                "run",
                "-A",
                CLI,
                "doctor",
                ...args.map((a) => a === `--tshm=${tshm}` ? `--tshm=${junk}` : a),
              ]);
              const jr = (JSON.parse(j.stdout) as CheckResult[]).find((x) =>
                x.check === "fwmark-routes"
              )!;
              assert.equal(jr.status, "fail", jr.detail);
              assert.match(jr.detail, new RegExp(`^${junk}: not a valid target table: `));
            } finally {
              removeShm(junk);
            }
          },
        );

        await t.step("queues, VIP rule, tun, fwmark routes: missing, then in place", async () => {
          await expectFail("queues", new RegExp(`no listener on queue ${Q}`));
          await expectFail(
            "vip-rules",
            new RegExp(`no NFQUEUE rule for ${VIP.replace(/\./g, "\\.")}`),
          );
          await expectFail("tun", /no device nfqtun/);
          await expectFail("fwmark-routes", /fwmark 101: no ip rule/);
          await run(
            "iptables",
            ..."-t mangle -A PREROUTING -d".split(" "),
            VIP,
            ..."-j NFQUEUE --queue-num".split(" "),
            String(Q),
          );
          await expectPass("vip-rules");
          await run("ip", "tuntap", "add", "nfqtun", "mode", "tun");
          await expectFail("tun", /nfqtun is down/);
          await run("ip", "link", "set", "nfqtun", "up");
          await expectPass("tun");
          await run("ip", "rule", "add", "fwmark", "101", "table", "101");
          await expectFail("fwmark-routes", /table 101 is empty/);
          await run("ip", "route", "add", "default", "via", "10.213.0.2", "table", "101");
          await expectPass("fwmark-routes");
          const lb = new LineProcess(net, ns, [
            DENO,
            "run",
            "-A",
            CLI,
            "lb",
            `--tshm=${tshm}`,
            `--queue=${Q}`,
            `--ft_shm=${ftshm}`,
          ], "lb");
          try {
            await lb.waitLine(/^queue_length=/);
            await expectPass("queues");
            await expectPass("reassembled");
          } finally {
            Deno.kill(lb.pid, "SIGTERM");
            await lb.finish();
          }
        });

        await t.step(
          "conntrack, rp_filter, fwmark_reflect, bridge netfilter, GRO: broken, then fixed",
          async () => {
            const ct = "-A FORWARD -m conntrack --ctstate INVALID -j DROP".split(" ");
            await run("iptables", ...ct);
            await expectFail("conntrack", /ctstate INVALID/);
            await run("iptables", "-D", ...ct.slice(1));
            await expectPass("conntrack");
            await run("sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=1");
            await expectFail("rp_filter", /d0/);
            await run("sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=2");
            await expectPass("rp_filter");
            await run("sysctl", "-q", "-w", "net.ipv4.fwmark_reflect=0");
            await expectFail("fwmark_reflect", /net\.ipv4\.fwmark_reflect = 0/);
            await run("sysctl", "-q", "-w", "net.ipv4.fwmark_reflect=1");
            await expectPass("fwmark_reflect");
            const bridged = await net.exec(ns, [
              "sysctl",
              "-q",
              "-w",
              "net.bridge.bridge-nf-call-iptables=1",
            ]);
            if (bridged.code === 0) {
              await expectFail("bridge-netfilter", /bridge-nf-call-iptables = 1/);
              await run("sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=0");
            }
            await expectPass("bridge-netfilter");
            await run("ethtool", "-K", "d0", "gro", "on");
            await expectFail("offloads", /d0 generic-receive-offload/);
            await run("ethtool", "-K", "d0", "gro", "off");
            await expectPass("offloads");
          },
        );

        await t.step(
          "--netns runs the checks inside the namespace; text report, exit 1 on a failure",
          async () => {
            const r = await runCli("doctor", `--netns=${ns}`, `--queue=${Q}`);
            assert.equal(r.code, 1, r.err);
            assert.match(r.out, new RegExp(`^FAIL queues: no listener on queue ${Q}`, "m"));
            assert.match(r.out, /^PASS conntrack: /m);
          },
        );
      });
    } finally {
      removeShm(tshm);
      removeShm(ftshm);
    }
  },
});

Deno.test("doctor --netns with a name ip does not know: ip's line, then where the names are", async () => {
  const name = `nfqlb-nope-${Deno.pid}`;
  const r = await runCli("doctor", `--netns=${name}`);
  assert.notEqual(r.code, 0);
  assert.equal(r.out, "");
  assert.equal(
    r.err,
    `Cannot open network namespace "${name}": No such file or directory\n` +
      "  (ip netns list shows the names)\n",
  );
});
