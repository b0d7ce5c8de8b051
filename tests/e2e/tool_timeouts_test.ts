/**
 * Tools that hang do not hold the commands that read the namespace with them: fake `ip`,
 * `iptables-save`, `ip6tables-save` and `nft` that sleep (in a directory the test makes, given
 * as the tools' directory) are killed when the warnings' budget runs out (`activate`,
 * `flow-set`: silent) and after doctor's per-tool timeout (SKIP with the reason); a flowlb that
 * accepts and never replies is a SKIP of flow-rules. No namespace is needed: nothing real runs.
 */
import assert from "node:assert/strict";
import { warnFwmarkRules, warnUnqueuedDsts } from "../../cli/namespace_rules.ts";
import { makeDoctorCommand } from "../../cli/doctor.ts";
import { makeRulesetCommand } from "../../cli/ruleset.ts";
import { resolveTool, tool } from "../../cli/tools.ts";
import { runCommand } from "../../cli/command.ts";
import type { CheckResult } from "../../lib/doctor/checks.ts";

/** A directory of fake tools that write their pid to `pids/` and sleep for an hour. */
function hangingTools(): { dir: string; pids: () => number[] } {
  const dir = Deno.makeTempDirSync({ prefix: "nfqlb-hang-" });
  Deno.mkdirSync(`${dir}/pids`);
  for (const name of ["ip", "iptables-save", "ip6tables-save", "nft"]) {
    const path = `${dir}/${name}`;
    // exec: the sleep is the killed process itself; a child of a shell would keep the pipes.
    Deno.writeTextFileSync(path, `#!/bin/sh\necho $$ > ${dir}/pids/$$\nexec sleep 3600\n`);
    Deno.chmodSync(path, 0o755);
  }
  return {
    dir,
    pids: () => [...Deno.readDirSync(`${dir}/pids`)].map((e) => Number(e.name)),
  };
}

/** Whether process `pid` still runs (not a zombie). */
function running(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(Deno.readTextFileSync(`/proc/${pid}/status`));
  } catch {
    return false;
  }
}

/** Whether process `pid` ends within a few seconds (a SIGKILL takes effect asynchronously). */
async function ends(pid: number): Promise<boolean> {
  for (let i = 0; i < 500; i++) {
    if (!running(pid)) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return false;
}

/** `p`, or a failure if it has not settled in `ms` (a hang guard, far above the bounds tested). */
async function settles<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} hangs`)), ms);
  });
  try {
    return await Promise.race([p, guard]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The warnings' budget here: long enough that each fake tool (a shell) has started and written its
 * pid before it runs out, also with the other core busy, so the test sees it killed.
 */
const BUDGET_MS = 1500;

const recorder = () => {
  const io = { out: "", err: "" };
  return {
    io,
    sink: { out: (t: string) => void (io.out += t), err: (t: string) => void (io.err += t) },
  };
};

Deno.test({
  name: "activate's and flow-set's warnings: hanging tools are killed at the budget, nothing said",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const tools = hangingTools();
    try {
      const a = recorder();
      await settles(
        // The `ip` fallback (the rtnetlink dump would not run a tool at all).
        warnFwmarkRules(a.sink, [104], { dirs: [tools.dir], budgetMs: BUDGET_MS, netlink: false }),
        30_000,
        "activate's warning",
      );
      const f = recorder();
      await settles(
        warnUnqueuedDsts(f.sink, "web", "10.0.0.1/32", "unix:x", {
          dirs: [tools.dir],
          budgetMs: BUDGET_MS,
        }),
        30_000,
        "flow-set's warning",
      );
      assert.deepEqual([a.io.err, f.io.err], ["", ""]);
      const pids = tools.pids();
      assert.ok(pids.length >= 3, `the fake tools ran (${pids})`);
      for (const pid of pids) assert.ok(await ends(pid), `tool ${pid} was killed`);
    } finally {
      for (const pid of tools.pids()) if (running(pid)) Deno.kill(pid, "SIGKILL");
      Deno.removeSync(tools.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "doctor: a hanging tool is a SKIP with the reason; a silent flowlb is a SKIP of flow-rules",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const tools = hangingTools();
    const name = `nfqlb-silent-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
    const listener = Deno.listen({ transport: "unix", path: `\0${name}` });
    const held: Deno.Conn[] = [];
    const accepting = (async () => {
      for await (const c of listener) held.push(c); // accepted, never answered
    })();
    try {
      const doctor = makeDoctorCommand({
        tools: { dirs: [tools.dir], timeoutMs: 200 },
        flowTimeoutMs: 200,
        env: (k) => (k === "NFQLB_FLOW_ADDRESS" ? `unix:${name}` : undefined),
      });
      const r = recorder();
      const code = await settles(
        runCommand(doctor, ["--json", "--vip=10.0.0.1"], r.sink),
        60_000,
        "doctor",
      );
      const results = JSON.parse(r.io.out) as CheckResult[];
      const get = (c: string) => results.find((x) => x.check === c)!;
      assert.equal(get("conntrack").status, "skip");
      assert.match(get("conntrack").detail, /`iptables-save` did not finish in 200 ms/);
      assert.match(get("conntrack").detail, /`nft list ruleset` did not finish in 200 ms/);
      assert.equal(get("flow-rules").status, "skip");
      assert.match(
        get("flow-rules").detail,
        new RegExp(`no flowlb answers at unix:${name} \\(no reply in 0\\.2 s\\)`),
      );
      assert.ok(held.length >= 1, "the flowlb was reached");
      assert.ok(code === 0 || code === 1);
      for (const pid of tools.pids()) assert.ok(await ends(pid), `tool ${pid} was killed`);
    } finally {
      listener.close();
      await accepting.catch(() => {});
      for (const c of held) c.close();
      for (const pid of tools.pids()) if (running(pid)) Deno.kill(pid, "SIGKILL");
      Deno.removeSync(tools.dir, { recursive: true });
    }
  },
});

/** A directory with links to the real tools named (found in the system directories). */
function someTools(names: readonly string[]): string {
  const dir = Deno.makeTempDirSync({ prefix: "nfqlb-tools-" });
  for (const n of names) Deno.symlinkSync(resolveTool(n)!, `${dir}/${n}`);
  return dir;
}

Deno.test({
  name: "flow-set's warning: only when every rule source was read; never over TCP or when off",
  ignore: Deno.uid() !== 0 || resolveTool("nft") === undefined ||
    resolveTool("iptables-save") === undefined,
  async fn() {
    // A destination no rule of this (the host's) namespace queues: nothing here queues it.
    const dst = "10.254.253.252/32";
    const all = someTools(["iptables-save", "ip6tables-save", "nft"]);
    const noNft = someTools(["iptables-save", "ip6tables-save"]);
    try {
      const warn = async (dir: string, address = "unix:x") => {
        const r = recorder();
        await warnUnqueuedDsts(r.sink, "web", dst, address, { dirs: [dir] });
        return r.io.err;
      };
      assert.match(
        await warn(all),
        /^warning: flow web: no NFQUEUE rule .* sends 10\.254\.253\.252/,
      );
      assert.equal(await warn(noNft), "", "nft could not be read: no claim");
      assert.equal(await warn(all, "tcp:127.0.0.1:7000"), "", "the flowlb may be elsewhere");
      Deno.env.set("NFQLB_NO_CONFIG_WARNINGS", "1");
      try {
        assert.equal(await warn(all), "", "turned off");
      } finally {
        Deno.env.delete("NFQLB_NO_CONFIG_WARNINGS");
      }
      const big = recorder();
      await warnUnqueuedDsts(big.sink, "web", dst, "unix:x", { dirs: [all], maxBytes: 0 });
      // An empty namespace prints nothing at all; the host's rule sets print something.
      const hostPrints = (await tool(["iptables-save"])).ok &&
        ((await tool(["iptables-save"])) as { text: string }).text !== "";
      if (hostPrints) assert.equal(big.io.err, "", "output past the cap: no claim");
    } finally {
      Deno.removeSync(all, { recursive: true });
      Deno.removeSync(noNft, { recursive: true });
    }
  },
});

/**
 * A directory of fake `iptables-save`/`ip6tables-save` (empty tables) and an
 * `iptables-restore` that records each input (`in.N`) and hangs on its call number `hangAt`.
 */
function restoreTools(
  hangAt: number,
): { dir: string; inputs: () => string[]; pids: () => number[] } {
  const dir = Deno.makeTempDirSync({ prefix: "nfqlb-restore-" });
  Deno.mkdirSync(`${dir}/pids`);
  Deno.writeTextFileSync(`${dir}/count`, "0\n");
  for (const name of ["iptables-save", "ip6tables-save"]) {
    Deno.writeTextFileSync(`${dir}/${name}`, "#!/bin/sh\nexit 0\n");
    Deno.chmodSync(`${dir}/${name}`, 0o755);
  }
  for (const name of ["iptables-restore", "ip6tables-restore"]) {
    Deno.writeTextFileSync(
      `${dir}/${name}`,
      `#!/bin/sh\nn=$(cat ${dir}/count)\necho $((n + 1)) > ${dir}/count\n` +
        `cat > ${dir}/in.$n\n` +
        `if [ "$n" = ${hangAt} ]; then echo $$ > ${dir}/pids/$$; exec sleep 3600; fi\nexit 0\n`,
    );
    Deno.chmodSync(`${dir}/${name}`, 0o755);
  }
  return {
    dir,
    inputs: () => {
      const n = Number(Deno.readTextFileSync(`${dir}/count`));
      return Array.from({ length: n }, (_, i) => Deno.readTextFileSync(`${dir}/in.${i}`));
    },
    pids: () => [...Deno.readDirSync(`${dir}/pids`)].map((e) => Number(e.name)),
  };
}

Deno.test({
  name: "ruleset --apply: a tool past its timeout is killed, said in one line, and undone",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const hang = hangingTools();
    const rs = restoreTools(1);
    try {
      // Reading the rules hangs: nothing was changed.
      const reading = makeRulesetCommand({ tools: { dirs: [hang.dir], timeoutMs: 200 } });
      const r1 = recorder();
      const c1 = await settles(
        runCommand(reading, ["--vip=10.0.0.1", "--apply"], r1.sink),
        30_000,
        "ruleset (reading)",
      );
      assert.deepEqual({ code: c1, ...r1.io }, {
        code: 1,
        out: "",
        err:
          "ruleset: `iptables-save -t mangle` did not finish in 0.2 s (killed): nothing changed\n",
      });
      // The second transaction (table raw) hangs: it is killed, the first one (mangle) undone.
      const applying = makeRulesetCommand({ tools: { dirs: [rs.dir], timeoutMs: 1500 } });
      const r2 = recorder();
      const c2 = await settles(
        runCommand(applying, ["--vip=10.0.0.1", "--apply"], r2.sink),
        30_000,
        "ruleset (applying)",
      );
      assert.deepEqual({ code: c2, ...r2.io }, {
        code: 1,
        out: "",
        err: "ruleset: iptables-restore (table raw) failed: `iptables-restore --noflush -w` did " +
          "not finish in 1.5 s (killed) (waiting for the xtables lock, most likely)\n" +
          // Killed: it may have committed; the earlier step is undone and said.
          "ruleset: iptables-restore (table raw) may have been applied before it was killed; the " +
          "earlier steps were undone: check with iptables-save -t raw; the same command again " +
          "completes or keeps what is there\n",
      });
      const inputs = rs.inputs();
      assert.equal(inputs.length, 3, "mangle, raw (killed), mangle's undo");
      assert.match(inputs[0], /^\*mangle\n/);
      assert.match(inputs[1], /^\*raw\n/);
      assert.match(inputs[2], /^\*mangle\n/);
      assert.notEqual(inputs[2], inputs[0], "the undo, not the change again");
      for (const pid of [...hang.pids(), ...rs.pids()]) {
        assert.ok(await ends(pid), `tool ${pid} was killed`);
      }
    } finally {
      for (const pid of [...hang.pids(), ...rs.pids()]) if (running(pid)) Deno.kill(pid, "SIGKILL");
      Deno.removeSync(hang.dir, { recursive: true });
      Deno.removeSync(rs.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "doctor --netns: the doctor in the namespace past its timeout is killed, one line, exit 1",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const tools = hangingTools(); // its `ip` hangs: `ip netns exec` never ends
    try {
      const doctor = makeDoctorCommand({
        tools: { dirs: [tools.dir], timeoutMs: 200 },
        flowTimeoutMs: 200,
        env: () => undefined,
        netnsTimeoutMs: 1500,
      });
      const r = recorder();
      const code = await settles(
        runCommand(doctor, ["--netns=nfqlb-none"], r.sink),
        30_000,
        "doctor",
      );
      assert.deepEqual({ code, ...r.io }, {
        code: 1,
        out: "",
        err: "doctor: `ip netns exec nfqlb-none nfqlb doctor` did not finish in 1.5 s (killed)\n",
      });
      for (const pid of tools.pids()) assert.ok(await ends(pid), `tool ${pid} was killed`);
    } finally {
      for (const pid of tools.pids()) if (running(pid)) Deno.kill(pid, "SIGKILL");
      Deno.removeSync(tools.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "activate's warning reads the rules with an rtnetlink dump: no tool runs",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const tools = hangingTools();
    try {
      const a = recorder();
      await settles(
        warnFwmarkRules(a.sink, [104], { dirs: [tools.dir], budgetMs: 60_000 }),
        30_000,
        "activate's warning",
      );
      assert.deepEqual(tools.pids(), [], "no ip was started");
    } finally {
      for (const pid of tools.pids()) if (running(pid)) Deno.kill(pid, "SIGKILL");
      Deno.removeSync(tools.dir, { recursive: true });
    }
  },
});
