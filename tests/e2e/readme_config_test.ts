/**
 * README.md's "A worked configuration", run as written (issue 19): the blocks marked
 * `<!-- worked-config: NAME -->` are read from README.md at test time (testkit/readme_blocks.ts)
 * and run with bash in namespaces wired as the README describes them: a client (which is also the
 * router: it sends the VIPs to the LB's eth0), the LB, a switch, and three targets on the LB's
 * eth1 link. The LB and the targets start as a stock host would: strict reverse-path filtering,
 * fwmark_reflect off, forwarding off; only what the README adds makes traffic flow.
 *
 * The LB's blocks run one after the other in one bash (`bash -e`: a failing command fails the
 * test), so the restart block can stop the flowlb the first block started. That bash runs in
 * private mount and PID namespaces (`unshare --kill-child`): /dev/shm and /var/lib are tmpfs of
 * its own (the README's tshm-web, ftshm and /var/lib/nfqlb never touch the host's), and when the
 * test ends or fails, every process the blocks started dies with it. `nfqlb` on its PATH runs this
 * checkout's cli.ts with the project's deno.
 *
 * After drain and restart, the targets run the README's test service instead of the test's own,
 * the "check it works" blocks must show both VIPs answered, `/healthz` ok and the flow's matches;
 * the teardown block must leave no rule, ip rule, route table, shm object or flow state in the
 * LB's namespace. No README command may print a `warning:` (the configuration warnings of
 * `activate` and `flow-set`) on the LB shell's stderr.
 */
import assert from "node:assert/strict";
import { type Service, startTargets } from "../../testkit/e2e_service.ts";
import type { ClientResult } from "../../testkit/e2e_topology.ts";
import { LineProcess } from "../../testkit/line_process.ts";
import { isRoot, type TestNet, withTestNet } from "../../testkit/netns.ts";
import { markedBlock } from "../../testkit/readme_blocks.ts";

const ROOT = isRoot();
if (!ROOT) console.warn("readme_config_test: not running as root: README configuration skipped");

const DENO = Deno.execPath();
const CLI = new URL("../../cli.ts", import.meta.url).pathname;
const CLIENT = new URL("../../testkit/fixtures/e2e_client.ts", import.meta.url).pathname;
const README = new URL("../../README.md", import.meta.url).pathname;

/** The README's addresses. */
const VIP4 = "10.0.0.1";
const VIP6 = "1000::1";
const LB_T4 = "192.168.1.1";
const LB_T6 = "fd00:1::1";
const TARGETS = [1, 2, 3];
const tAddr4 = (i: number) => `192.168.1.1${i}`;
const tAddr6 = (i: number) => `fd00:1::1${i}`;
/** The client side, which the README leaves to the network: client 192.168.0.2, fd00::2. */
const CL4 = "192.168.0.2";
const CL6 = "fd00::2";
const LB_C4 = "192.168.0.1";
const LB_C6 = "fd00::1";

const SERVICE: Service = {
  vip4: VIP4,
  vip6: VIP6,
  port: 80,
  targets: new Map(TARGETS.map((i) => [100 + i, `t${i}`])),
};

/** README.md's block `name` (read now: the README as it is, not a copy). */
const block = (name: string) => markedBlock(Deno.readTextFileSync(README), "worked-config", name);

/** The namespaces of the README's network, wired but not configured. */
interface Network {
  readonly cl: string;
  readonly lb: string;
  /** Target number -> namespace. */
  readonly targets: Map<number, string>;
}

async function wire(net: TestNet): Promise<Network> {
  const cl = await net.addNs("cl");
  const lb = await net.addNs("lb");
  const sw = await net.addNs("sw");
  const targets = new Map<number, string>();
  for (const i of TARGETS) targets.set(i, await net.addNs(`t${i}`));
  const ip = (ns: string, args: string) => net.run(ns, ["ip", ...args.split(" ")]);
  const sysctl = (ns: string, ...kv: string[]) =>
    net.run(ns, ["sysctl", "-q", ...kv.flatMap((x) => ["-w", x])]);
  // Before any interface exists, so that every new one inherits "default". Addresses are usable
  // at once (no DAD wait), and the LB and the targets filter reverse paths strictly, as many
  // distributions ship.
  for (const ns of [cl, lb, sw, ...targets.values()]) {
    const strict = ns === lb || [...targets.values()].includes(ns);
    await sysctl(
      ns,
      "net.ipv6.conf.all.accept_dad=0",
      "net.ipv6.conf.default.accept_dad=0",
      "net.ipv6.conf.all.accept_ra=0",
      "net.ipv6.conf.default.accept_ra=0",
      `net.ipv4.conf.all.rp_filter=${strict ? 1 : 0}`,
      `net.ipv4.conf.default.rp_filter=${strict ? 1 : 0}`,
    );
  }
  await net.veth(cl, "eth0", lb, "eth0");
  await net.veth(lb, "eth1", sw, "p0");
  for (const [i, ns] of targets) await net.veth(ns, "eth0", sw, `p${i}`);
  await ip(sw, "link add br0 type bridge mcast_snooping 0");
  await ip(sw, "link set br0 up");
  for (const p of [0, ...TARGETS]) await ip(sw, `link set p${p} master br0`);

  await ip(cl, `addr add ${CL4}/24 dev eth0`);
  await ip(cl, `-6 addr add ${CL6}/64 dev eth0`);
  await ip(cl, `route add ${VIP4}/32 via ${LB_C4}`);
  await ip(cl, `-6 route add ${VIP6}/128 via ${LB_C6}`);
  await ip(lb, `addr add ${LB_C4}/24 dev eth0`);
  await ip(lb, `-6 addr add ${LB_C6}/64 dev eth0`);
  await ip(lb, `route add default via ${CL4}`);
  await ip(lb, `-6 route add default via ${CL6}`);
  await ip(lb, `addr add ${LB_T4}/24 dev eth1`);
  await ip(lb, `-6 addr add ${LB_T6}/64 dev eth1`);
  for (const [i, ns] of targets) {
    await ip(ns, `addr add ${tAddr4(i)}/24 dev eth0`);
    await ip(ns, `-6 addr add ${tAddr6(i)}/64 dev eth0`);
  }
  return { cl, lb, targets };
}

/** A directory holding `nfqlb`: this checkout's cli.ts run by the project's deno. */
function nfqlbBin(): string {
  const dir = Deno.makeTempDirSync({ prefix: "nfqlb-readme-bin-" });
  Deno.writeTextFileSync(
    `${dir}/nfqlb`,
    `#!/bin/sh\nexec '${DENO}' run --allow-all '${CLI}' "$@"\n`,
    { mode: 0o755 },
  );
  return dir;
}

/**
 * The LB's shell: bash -e reading commands from stdin, in the LB namespace, with private mount and
 * PID namespaces (tmpfs on /dev/shm and /var/lib) that end, with every process in them, when it
 * ends or the test kills it.
 */
class LbShell {
  readonly #p: LineProcess;
  #steps = 0;

  constructor(net: TestNet, ns: string, bin: string) {
    // The default trace object name, as the README's teardown removes it: /dev/shm is private.
    this.#p = new LineProcess(net, ns, [
      "env",
      "-u",
      "NFQLB_FLOW_ADDRESS",
      "-u",
      "NFQLB_TRACE_SHM",
      `PATH=${bin}:${Deno.env.get("PATH")}`,
      "unshare",
      "--mount",
      "--pid",
      "--kill-child",
      "--mount-proc",
      "--",
      "bash",
      "-c",
      "mount -t tmpfs -o mode=1777 tmpfs /dev/shm && mount -t tmpfs tmpfs /var/lib && exec bash -e",
    ], "the LB's bash");
  }

  /** Every stdout line so far (the blocks' and the backgrounded flowlb's). */
  get lines(): readonly string[] {
    return this.#p.lines;
  }

  /** Run README block `name`; returns the stdout lines it printed. */
  run(name: string): Promise<string[]> {
    return this.runText(block(name));
  }

  /** Run the shell commands `text`; returns the stdout lines they printed. */
  async runText(text: string): Promise<string[]> {
    const tag = `__readme_block_${++this.#steps}_done__`;
    const from = this.#p.lines.length;
    await this.#p.write(`${text}\necho ${tag}\n`);
    // The tag may end a line: `flow-list` prints its JSON without a final newline, as 1.2.0.
    const last = await this.#p.waitLine((l) => l.endsWith(tag), from, 180_000);
    const end = this.#p.lines.indexOf(last, from);
    const rest = last.slice(0, -tag.length);
    return [...this.#p.lines.slice(from, end), ...(rest === "" ? [] : [rest])];
  }

  /** End the shell (and so every process in its PID namespace); its exit status and stderr. */
  async end(): Promise<{ code: number; stderr: string }> {
    const { code, stderr } = await this.#p.finish();
    return { code, stderr };
  }
}

/** A directory per target, `DIR/tN/index.html` holding `tN`: what the README's service serves. */
function serviceDirs(): string {
  const dir = Deno.makeTempDirSync({ prefix: "nfqlb-readme-www-" });
  for (const i of TARGETS) {
    Deno.mkdirSync(`${dir}/t${i}`);
    Deno.writeTextFileSync(`${dir}/t${i}/index.html`, `t${i}\n`);
  }
  return dir;
}

/**
 * README block `service` on each target, from its directory under `dirs`; returns once every one
 * answers on 127.0.0.1 and ::1 (the README says it serves both families).
 */
async function startReadmeService(net: TestNet, targets: Map<number, string>, dirs: string) {
  for (const [i, ns] of targets) {
    new LineProcess(
      net,
      ns,
      ["bash", "-c", `cd ${dirs}/t${i} && exec ${block("service")}`],
      `t${i}`,
    );
  }
  for (const [i, ns] of targets) {
    for (const url of ["http://127.0.0.1/", "http://[::1]/"]) {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const r = await net.exec(ns, ["curl", "-s", "-g", "--max-time", "5", url]);
        if (r.stdout === `t${i}\n`) break;
        if (Date.now() > deadline) {
          throw new Error(`t${i}: the README's service: ${url}: ${r.stderr}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
}

/** `count` TCP connections per family from the client to VIP:80, from source ports base... */
async function connect(net: TestNet, cl: string, base: number, count = 30) {
  const ports = `${base}-${base + count - 1}`;
  const out = await net.run(cl, [
    DENO,
    "run",
    "-A",
    CLIENT,
    `--dst4=${VIP4}`,
    `--dst6=${VIP6}`,
    "--port=80",
    `--sets=tcp/${CL4}/${ports},tcp/${CL6}/${ports}`,
  ]);
  const { results } = JSON.parse(out.trim().split("\n").at(-1)!) as { results: ClientResult[] };
  assert.equal(results.length, 2 * count);
  const family = (v6: boolean) => {
    const rs = results.filter((r) => r.src.includes(":") === v6);
    const lost = rs.filter((r) => r.target === null).map((r) => `${r.sport}: ${r.error}`);
    assert.deepEqual(lost, [], `IPv${v6 ? 6 : 4}: connections that reached no target`);
    const per = new Map<string, number>();
    for (const r of rs) per.set(r.target!, (per.get(r.target!) ?? 0) + 1);
    return per;
  };
  return { v4: family(false), v6: family(true) };
}

Deno.test({
  name: "README's worked configuration, run as written: IPv4 and IPv6, drain, restart (root)",
  ignore: !ROOT,
  async fn(t) {
    // A failed step ends the test (the later ones build on it).
    const step = async (name: string, fn: () => Promise<void>) => {
      if (!await t.step(name, fn)) throw new Error(`step failed: ${name}`);
    };
    const bin = nfqlbBin();
    const dirs = serviceDirs();
    try {
      await withTestNet(async (net) => {
        const { cl, lb, targets } = await wire(net);
        const lbShell = new LbShell(net, lb, bin);

        await step("the LB block: doctor passes", async () => {
          const out = await lbShell.run("lb");
          const doctor = out.filter((l) => /^(PASS|FAIL) /.test(l));
          assert.deepEqual(doctor.filter((l) => l.startsWith("FAIL")), [], out.join("\n"));
          for (const check of ["queues", "vip-rules", "fwmark-routes", "rp_filter"]) {
            assert.ok(doctor.some((l) => l.startsWith(`PASS ${check}:`)), `${check}: ${doctor}`);
          }
        });

        await step("the target block on each target", async () => {
          for (const ns of targets.values()) {
            const r = await net.exec(ns, ["bash", "-e", "-c", block("target")]);
            assert.equal(r.code, 0, `${ns}: ${r.stdout}${r.stderr}`);
          }
        });
        const servers = await startTargets(
          net,
          SERVICE,
          [...targets].map(([i, ns]) => [`t${i}`, ns]),
        );

        await step("IPv4 and IPv6 connections reach the targets, spread", async () => {
          const got = await connect(net, cl, 20000);
          console.log(`  IPv4 ${JSON.stringify([...got.v4])}, IPv6 ${JSON.stringify([...got.v6])}`);
          for (const per of [got.v4, got.v6]) {
            assert.ok(per.size > 1, `one target got them all: ${[...per]}`);
          }
          // The drain below takes t2 out: it must have had connections for that to show.
          assert.ok(got.v4.has("t2") && got.v6.has("t2"), "t2 got no connection");
        });

        await step("after the drain block, no connection reaches target 2", async () => {
          await lbShell.run("drain");
          const got = await connect(net, cl, 21000);
          for (const per of [got.v4, got.v6]) assert.equal(per.get("t2"), undefined);
        });

        await step("the restart block: flowlb restores the flow, traffic flows", async () => {
          const out = await lbShell.run("restart");
          assert.equal(
            lbShell.lines.filter((l) => l.startsWith("FragTable;")).length,
            2,
            "flowlb started twice",
          );
          const list = out.filter((l) => !/^(FragTable;|queue_length=)/.test(l)).join("\n");
          assert.match(list, /"name": ?"web"/, `flow-list after the restart:\n${list}`);
          const got = await connect(net, cl, 22000);
          for (const per of [got.v4, got.v6]) assert.equal(per.get("t2"), undefined);
        });

        await step("the README's service and its check blocks", async () => {
          for (const s of servers) {
            Deno.kill(s.pid, "SIGTERM");
            await s.finish();
          }
          await startReadmeService(net, targets, dirs);
          const answers = await net.exec(cl, ["bash", "-e", "-c", block("check-client")]);
          assert.equal(answers.code, 0, answers.stderr);
          const names = answers.stdout.trim().split("\n");
          assert.equal(names.length, 2, `one answer per VIP: ${answers.stdout}`);
          for (const n of names) assert.match(n, /^t[13]$/, "an active target answered");
          const out = await lbShell.run("check-lb");
          assert.equal(out[0], "ok", `/healthz: ${out}`);
          const m = /^ *"matches_count": (\d+),?$/.exec(out[1] ?? "");
          assert.ok(m !== null && Number(m[1]) > 0, `matches_count: ${out}`);
        });

        await step("the teardown block leaves nothing in the LB namespace", async () => {
          await lbShell.run("teardown");
          for (const save of ["iptables-save", "ip6tables-save"]) {
            const rules = await net.run(lb, [save]);
            assert.doesNotMatch(rules, /nfqlb|NFQUEUE|NOTRACK|CT --notrack/, `${save}:\n${rules}`);
          }
          for (const family of ["-4", "-6"]) {
            const rules = await net.run(lb, ["ip", family, "rule", "show"]);
            assert.doesNotMatch(rules, /fwmark/, `ip ${family} rule:\n${rules}`);
            const routes = await net.run(lb, ["ip", family, "route", "show", "table", "all"]);
            assert.doesNotMatch(routes, /table 10[123]\b/, `ip ${family} route:\n${routes}`);
          }
          // The host-wide objects stay (README: shared by every nfqlb on the host); nothing else.
          const left = await lbShell.runText("find /dev/shm /var/lib/nfqlb -mindepth 1");
          assert.deepEqual(
            left.filter((f) => !/^\/dev\/shm\/(ftshm|nfqlb-trace)$/.test(f)),
            [],
            "a table or flow state left",
          );
        });

        const end = await lbShell.end();
        assert.equal(end.code, 0, `the LB's bash: ${end.stderr}`);
        const warnings = end.stderr.split("\n").filter((l) => /warning:/.test(l));
        assert.deepEqual(warnings, [], "the README's commands warn");
      });
    } finally {
      Deno.removeSync(bin, { recursive: true });
      Deno.removeSync(dirs, { recursive: true });
    }
  },
});
