/**
 * `./dev demo` (scripts/demo.ts) as root: the live demo sends real traffic through flowlb and
 * reports it, and leaves no namespace, shared-memory object (its trace object included: it uses
 * its own, not the one it inherits) or process behind. Without root it runs the table demo.
 */
import assert from "node:assert/strict";
import { isRoot, listNetns } from "../../testkit/netns.ts";

const ROOT = isRoot();

/** The names of the objects in /dev/shm now. */
const shmNames = () => [...Deno.readDirSync("/dev/shm")].map((e) => e.name);
const DEMO = new URL("../../scripts/demo.ts", import.meta.url).pathname;

Deno.test({
  name: "demo: live traffic, per-target counts, t1's connections move, nothing left (needs root)",
  ignore: !ROOT,
  async fn() {
    // An inherited trace object the demo must not use (a test run's, or an operator's): had it
    // used it, its daemon would have made it.
    const inherited = `nfqlb-trace.demotest-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
    const before = new Set(shmNames());
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", DEMO],
      env: { NFQLB_TRACE_SHM: inherited },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const pid = child.pid;
    let r: Deno.CommandOutput;
    let after: string[];
    try {
      r = await child.output();
    } finally {
      after = shmNames();
      try {
        Deno.removeSync(`/dev/shm/${inherited}`);
      } catch {
        // not made (as it should be)
      }
    }
    const out = new TextDecoder().decode(r.stdout);
    assert.equal(r.code, 0, out + new TextDecoder().decode(r.stderr));
    assert.match(out, /TCP -> t1: \d+, t2: \d+, t3: \d+\n/, "TCP spread over table A's targets");
    assert.match(out, /UDP -> t3: \d+, t4: \d+\n/, "UDP over table B's");
    assert.match(out, /3000 bytes .* -> t3: \d+, t4: \d+\n/);
    assert.match(out, /ping .*: 3\/3 answered/);
    const m = /moved: (\d+) of 200 connections: (\d+) of t1's (\d+), and (\d+) others? /.exec(out);
    assert.ok(m !== null, out);
    const [moved, fromT1, onT1, others] = m.slice(1).map(Number);
    assert.ok(onT1 > 0 && fromT1 === onT1, `every t1 connection moved: ${m[0]}`);
    assert.equal(moved, fromT1 + others);
    assert.ok(others <= 20, `Maglev moves only a few others: ${m[0]}`);
    assert.match(out, /nfqlb_target_packets_total\{fwmark="101"\} \d+/);
    assert.match(out, /done: nothing left behind/);
    assert.deepEqual((await listNetns()).filter((n) => n.startsWith(`nfqlbt-${pid}-`)), []);
    // Objects new since the start that the demo could have made (others' tests run meanwhile:
    // only these names are the demo's): its tables and statistics, its trace object, the
    // inherited or the host's trace object.
    const demos = (n: string) =>
      n.startsWith(`nfqlb-demo-${pid}-`) || n === `nfqlb-trace.demo-${pid}` || n === inherited ||
      n === "nfqlb-trace";
    assert.deepEqual(after.filter((n) => !before.has(n) && demos(n)), []);
    assert.ok(out.includes(`NFQLB_TRACE_SHM=nfqlb-trace.demo-${pid}:`), out);
    const ps = await new Deno.Command("pgrep", { args: ["-f", `nfqlb-demo-${pid}-`] }).output();
    assert.equal(new TextDecoder().decode(ps.stdout), "", "no process of the demo left");
  },
});

Deno.test("demo --table: the table demo needs no privileges and removes its table", async () => {
  const name = `nfqlb-demo-table-${Deno.pid}`;
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", DEMO, "--table", name],
    stdout: "piped",
  }).output();
  const out = new TextDecoder().decode(r.stdout);
  assert.equal(r.code, 0);
  assert.match(out, /\$ nfqlb deactivate --shm=/);
  assert.match(out, /\(moved: its target was removed\)/);
  assert.ok(![...Deno.readDirSync("/dev/shm")].some((e) => e.name === name));
});
