/**
 * In a namespace the test creates (as root): `doctor` without rules passes conntrack (the tools
 * ran and listed nothing), SKIPs what it could not check, finds flowlb's queues itself, checks
 * flows' dsts against the queue rules and policy routing per family; `activate` and `flow-set`
 * warn on stderr (exit status and stdout unchanged) exactly when the configuration cannot work;
 * `ruleset --style=nft --apply` on a kernel without the nft queue expression says so.
 */
import assert from "node:assert/strict";
import { removeShm, runCli, tempShmName } from "../../testkit/cli.ts";
import { isRoot, withTestNet } from "../../testkit/netns.ts";
import type { CheckResult } from "../../lib/doctor/checks.ts";
import { LineProcess } from "../../testkit/line_process.ts";

const DENO = Deno.execPath();
const CLI = new URL("../../cli.ts", import.meta.url).pathname;
const V4 = "10.214.255.1";
const V6 = "1000::214:1";
const ENV = ["env", "NFQLB_FLOW_ADDRESS=unix:nfqlb-cw"];

Deno.test({
  name: "doctor finds flowlb's queues, checks flows and routing per family; activate and " +
    "flow-set warn only when the configuration cannot work (needs root)",
  ignore: !isRoot(),
  async fn(t) {
    const tshm = tempShmName("cw");
    const ftshm = tempShmName("cwft");
    const noFt = tempShmName("cwnone");
    try {
      await withTestNet(async (net) => {
        const ns = await net.addNs("cw");
        const run = (...cmd: string[]) => net.run(ns, cmd);
        const nfqlb = (...args: string[]) =>
          net.exec(ns, [...ENV, DENO, "run", "-A", CLI, ...args]);
        const doctor = async (...args: string[]) => {
          const r = await nfqlb("doctor", "--json", ...args);
          const results = JSON.parse(r.stdout) as CheckResult[];
          return { code: r.code, get: (c: string) => results.find((x) => x.check === c)!, results };
        };
        assert.equal((await runCli("init", `--shm=${tshm}`, "--M=97", "--N=4")).code, 0);

        await t.step(
          "no rules at all: conntrack passes, what could not run is a SKIP",
          async () => {
            const d = await doctor(`--ft_shm=${noFt}`, `--vip=${V4}`);
            assert.equal(d.get("conntrack").status, "pass", d.get("conntrack").detail);
            assert.equal(d.get("reassembled").status, "skip");
            assert.match(d.get("reassembled").detail, new RegExp(`no statistics object ${noFt}`));
            assert.equal(d.get("flow-rules").status, "skip");
            assert.match(d.get("flow-rules").detail, /no flowlb answers at unix:nfqlb-cw/);
            assert.equal(
              d.get("vip-rules").fix,
              `nfqlb ruleset --vip=${V4} --queue=<lb/flowlb's --queue> --apply`,
            );
            assert.match(d.get("queues").detail, /no queue has a listener in this namespace/);
            const text = await nfqlb("doctor", `--ft_shm=${noFt}`);
            assert.match(
              text.stdout,
              new RegExp(`^SKIP reassembled: no statistics object ${noFt}`, "m"),
            );
          },
        );

        await t.step("activate: no daemon here and no fwmark routed: no warning", async () => {
          const quiet = await nfqlb("activate", `--shm=${tshm}`, "105");
          assert.deepEqual([quiet.code, quiet.stderr], [0, ""]);
          assert.equal((await nfqlb("deactivate", `--shm=${tshm}`, "105")).code, 0);
          // A table without an active target cannot forward anything (as /healthz says).
          const empty = (await doctor(`--tshm=${tshm}`)).get("fwmark-routes");
          assert.equal(empty.status, "fail");
          assert.equal(empty.fix, `nfqlb activate --shm=${tshm} FWMARK...`);
        });

        await t.step(
          "ruleset --style=nft --apply names a missing nft queue expression",
          async () => {
            const r = await nfqlb("ruleset", `--vip=${V4}`, "--style=nft", "--apply");
            if (r.code === 0) {
              await nfqlb("ruleset", `--vip=${V4}`, "--style=nft", "--delete");
              return; // this kernel has the queue expression
            }
            assert.equal(
              r.stderr.split("\n")[0],
              "ruleset: nft -f failed (nothing changed): this kernel has no nft queue expression; " +
                "use --style=iptables",
            );
            assert.match(r.stderr, /\n {2}nft: .*Could not process rule/);
          },
        );

        const flowlb = new LineProcess(net, ns, [
          ...ENV,
          DENO,
          "run",
          "-A",
          CLI,
          "flowlb",
          "--queue=4:5",
          `--ft_shm=${ftshm}`,
        ], "flowlb");
        try {
          await flowlb.waitLine(/^queue_length=/);
          // The control socket listens a moment after the queues are bound: poll it.
          for (let i = 0; (await nfqlb("flow-list")).code !== 0; i++) {
            assert.ok(i < 200, "flowlb's control socket never answered");
            await new Promise((r) => setTimeout(r, 25));
          }

          await t.step(
            "flow-set: a warning for dsts without a queue rule, after the OK",
            async () => {
              const set = await nfqlb(
                "flow-set",
                "--name=web",
                `--target=${tshm}`,
                `--dsts=${V4}/32,${V6}/128`,
              );
              assert.equal(set.code, 0);
              assert.equal(set.stdout, "OK\n");
              assert.match(
                set.stderr,
                new RegExp(`^warning: flow web: no NFQUEUE rule .* sends ${V4}, ${V6} to a queue`),
              );
              const d = await doctor();
              assert.equal(d.code, 1);
              assert.match(d.get("queues").detail, /^queue 4:5 \(from the listeners of \/proc\//);
              assert.equal(d.get("flow-rules").status, "fail");
              assert.equal(
                d.get("flow-rules").fix,
                `nfqlb ruleset --vip=${V4},${V6} --queue=4:5 --apply`,
              );
              assert.equal(
                (await nfqlb("ruleset", `--vip=${V4},${V6}`, "--queue=4:5", "--apply")).code,
                0,
              );
              const again = await nfqlb(
                "flow-set",
                "--name=web",
                `--target=${tshm}`,
                `--dsts=${V4}/32,${V6}/128`,
              );
              assert.deepEqual([again.code, again.stdout, again.stderr], [0, "OK\n", ""]);
              assert.equal((await doctor()).get("flow-rules").status, "pass");
              assert.equal((await doctor()).get("queues").status, "pass");
            },
          );
          await t.step(
            "activate: a warning for a fwmark without an ip rule; none once it has one",
            async () => {
              const a = await nfqlb("activate", `--shm=${tshm}`, "104");
              assert.equal(a.code, 0);
              assert.match(
                a.stderr,
                /^warning: fwmark 104 has no ip rule \(ip rule add fwmark 104 table 104;/,
              );
              await run("ip", "rule", "add", "fwmark", "104", "table", "104");
              const b = await nfqlb("activate", `--shm=${tshm}`, "104");
              assert.deepEqual([b.code, b.stderr], [0, ""]);
            },
          );
        } finally {
          Deno.kill(flowlb.pid, "SIGTERM");
          await flowlb.finish();
        }

        await t.step("doctor checks policy routing for each family of the VIPs", async () => {
          await run("ip", "link", "add", "cw0", "type", "veth", "peer", "name", "cw1");
          await run("ip", "link", "set", "cw0", "up");
          await run("ip", "addr", "add", "10.214.0.1/24", "dev", "cw0");
          await run("ip", "-6", "addr", "add", "fd00:214::1/64", "dev", "cw0", "nodad");
          await run("ip", "route", "add", "default", "via", "10.214.0.2", "table", "104");
          const v4only = await doctor(`--tshm=${tshm}`, `--vip=${V4}`);
          assert.equal(
            v4only.get("fwmark-routes").status,
            "pass",
            v4only.get("fwmark-routes").detail,
          );
          const both = (await doctor(`--tshm=${tshm}`, `--vip=${V4},${V6}`)).get("fwmark-routes");
          assert.equal(both.status, "fail");
          assert.match(both.detail, /fwmark 104: no ip -6 rule/);
          // Without --vip (and no flowlb flows) the families are unknown: one family will do.
          assert.equal((await doctor(`--tshm=${tshm}`)).get("fwmark-routes").status, "pass");
          await run("ip", "-6", "rule", "add", "fwmark", "104", "table", "104");
          await run("ip", "-6", "route", "add", "default", "via", "fd00:214::2", "table", "104");
          assert.equal(
            (await doctor(`--tshm=${tshm}`, `--vip=${V4},${V6}`)).get("fwmark-routes").status,
            "pass",
          );
        });
      });
    } finally {
      removeShm(tshm);
      removeShm(ftshm);
    }
  },
});
