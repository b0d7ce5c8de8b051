/**
 * The fast path's nf_tables writer (daemon/fastpath_writer.ts) through a real nf_tables socket,
 * as root, in a network namespace the test creates (testkit/fixtures/fastpath_writer_probe.ts
 * drives the writer there and reports what it returned and what `nft` lists):
 *
 * - the 32-bit netlink sequence number wraps: batches sent from every position around 2^32 are
 *   acknowledged and applied (before, the first number past 2^32 - 1 waited for an ack that
 *   never came, and the writer died);
 * - a failed side switch (refused by the kernel, its answer lost, or the emptying before it
 *   refused) leaves no table, so nothing can be marked with an old decision, and the table is
 *   created again with empty maps;
 * - a socket that fails outside a switch (a send refused with ENOBUFS, no answer within the
 *   receive timeout, for an add, a removal step or a counter read) removes the table the same
 *   way instead of throwing (before, the writer thread died and the fast path stayed off for the
 *   daemon's life), and the table is created again;
 * - a switch that fails every time: the table is created again after each, and the notice
 *   `fastpath: table inet NAME created again` is logged 3 times a minute, then summed up
 *   (before, once per failure: up to 200 lines a second);
 * - the writer keeps its live socket's fd in a shared word for the main thread (which closes it
 *   if the writer thread dies, so the table goes): -1 while the table is removed, the new fd
 *   after a re-creation, and a socket the main thread took from the word is not closed again by
 *   the writer (before, the main thread followed the fd through messages that could arrive
 *   after the thread's error).
 */
import assert from "node:assert/strict";
import { isRoot, withTestNet } from "../../testkit/netns.ts";

const ROOT = isRoot();
if (!ROOT) console.warn("fastpath_writer_test: not running as root: skipped");

const PROBE = new URL("../../testkit/fixtures/fastpath_writer_probe.ts", import.meta.url).pathname;

/** Run the probe's `scenario` in a namespace of its own; its JSON report. */
async function probe(scenario: string, ...args: string[]): Promise<unknown> {
  const table = `fpw${crypto.getRandomValues(new Uint32Array(1))[0].toString(36)}`;
  return await withTestNet(async (net) => {
    const ns = await net.addNs("fpw");
    const r = await net.exec(ns, [Deno.execPath(), "run", "-A", PROBE, scenario, table, ...args]);
    assert.equal(r.code, 0, `probe ${scenario}: ${r.stdout}\n${r.stderr}`);
    return JSON.parse(r.stdout.trim().split("\n").at(-1)!);
  });
}

/** What the probe reports of the kernel's table. */
interface KernelView {
  exists: boolean;
  ruleMaps: string[];
  elements: Record<string, number>;
}

const EMPTY = { fp4a: 0, fp4b: 0, fp6a: 0, fp6b: 0 };

/** A step of the failure scenarios: the problem the writer reports, its state, the kernel's. */
interface FailureStep {
  name: string;
  problem: { errno: number; what: string } | null;
  thrown?: string;
  up: boolean;
  side: number;
  kernel: KernelView;
}

/** The kernel's view without the table. */
const gone = { exists: false, ruleMaps: [], elements: {} };
/** The table created anew: side A in use, empty. */
const fresh = { exists: true, ruleMaps: ["fp4a", "fp6a"], elements: EMPTY };

/** Run a failure `scenario`: its steps, and the `nth` step named `name`. */
async function failureProbe(scenario: string) {
  const steps = await probe(scenario) as FailureStep[];
  const byName = (name: string, nth = 0) => steps.filter((s) => s.name === name)[nth];
  return { steps, byName };
}

Deno.test({
  name: "fast-path writer: batches from every position around the 2^32 sequence wrap are applied",
  ignore: !ROOT,
  async fn() {
    // One run takes 36 sequence numbers: starting 1..36 below 2^32 puts the wrap at each of them.
    const starts = Array.from({ length: 36 }, (_, i) => 2 ** 32 - 1 - i);
    const runs = await probe("wrap", ...starts.map(String)) as {
      firstSeq: number;
      error?: string;
      problems: unknown[];
      nextSeq: number;
      kernel: KernelView;
    }[];
    assert.equal(runs.length, starts.length, JSON.stringify(runs.at(-1)));
    for (const r of runs) {
      assert.equal(r.error, undefined, `from ${r.firstSeq}: ${r.error}`);
      assert.deepEqual(r.problems, r.problems.map(() => null), `from ${r.firstSeq}`);
      assert.ok(r.nextSeq < 64, `from ${r.firstSeq}: wrapped to ${r.nextSeq}`);
      // Side B in use with the 2 elements added after the switch; side A emptied.
      assert.deepEqual(r.kernel, {
        exists: true,
        ruleMaps: ["fp4b", "fp6b"],
        elements: { ...EMPTY, fp4b: 2 },
      }, `from ${r.firstSeq}`);
    }
  },
});

Deno.test({
  name:
    "fast-path writer: a failed side switch removes the table (nothing marks), then re-creates it empty",
  ignore: !ROOT,
  async fn() {
    const { steps, byName } = await failureProbe("switch-failure");

    assert.deepEqual(byName("added to side A").kernel, {
      ...fresh,
      elements: { ...EMPTY, fp4a: 3, fp6a: 2 },
    });
    // The kernel refused the switch batch: the rules would still use side A's marks.
    const refused = byName("switch refused");
    assert.deepEqual([refused.problem, refused.up, refused.kernel], [
      { errno: 2, what: "switch maps" },
      false,
      gone,
    ]);
    assert.equal(byName("add while removed").problem?.errno, 2);
    assert.deepEqual(byName("add while removed").kernel, gone);
    assert.deepEqual(
      [byName("switch while removed").problem, byName("switch while removed").kernel],
      [null, gone],
    );
    for (let i = 0; i < 3; i++) {
      const r = byName("restore", i);
      assert.deepEqual([r.problem, r.up, r.side, r.kernel], [null, true, 0, fresh], `restore ${i}`);
    }
    // The kernel applied the switch but its answer was lost: the writer cannot know the side.
    const lost = byName("switch answer lost");
    assert.deepEqual([lost.problem?.errno, lost.up, lost.kernel], [11, false, gone]);
    assert.deepEqual(byName("switch").kernel, {
      exists: true,
      ruleMaps: ["fp4b", "fp6b"],
      elements: { ...EMPTY, fp4a: 2 },
    });
    // The switch back to A must empty A first; that was refused: the rules stayed on B.
    const clean = byName("emptying before the switch refused");
    assert.deepEqual([clean.problem, clean.up, clean.kernel], [
      { errno: 12, what: "empty a map" },
      false,
      gone,
    ]);
    assert.deepEqual(byName("closed").kernel, gone);
    assert.deepEqual(steps.filter((s) => s.thrown !== undefined), [], "no writer call threw");
  },
});

Deno.test({
  name:
    "fast-path writer: a socket failure outside a switch removes the table instead of throwing; it is created again",
  ignore: !ROOT,
  async fn() {
    const { steps, byName } = await failureProbe("socket-failure");
    assert.deepEqual(steps.filter((s) => s.thrown !== undefined), [], "no writer call threw");
    for (
      const [name, problem] of [
        ["add: send fails", { errno: 105, what: "add elements: send" }],
        ["add: no answer", { errno: 11, what: "add elements: recv (no answer from nf_tables)" }],
        ["emptying step: no answer", {
          errno: 11,
          what: "empty a map: recv (no answer from nf_tables)",
        }],
        ["counter read: no answer", { errno: 11, what: "read the hit counters: recv" }],
      ] as const
    ) {
      const s = byName(name);
      assert.deepEqual([s.problem, s.up, s.kernel], [problem, false, gone], name);
    }
    for (let i = 0; i < 4; i++) {
      const r = byName("restore", i);
      assert.deepEqual([r.problem, r.up, r.side, r.kernel], [null, true, 0, fresh], `restore ${i}`);
    }
    const read = byName("counter read");
    assert.deepEqual([read.problem, read.up], [null, true]);
    assert.deepEqual(byName("closed").kernel, gone);
  },
});

Deno.test({
  name:
    "fast-path writer: the shared fd word follows the live socket; a socket taken from it is the taker's",
  ignore: !ROOT,
  async fn() {
    const steps = await probe("fd-word") as {
      name: string;
      problem: { errno: number } | null;
      thrown?: string;
      up: boolean;
      word: number;
      fd: number;
      taken?: boolean;
      open?: boolean;
      kernel: KernelView;
    }[];
    const byName = (name: string) => steps.find((s) => s.name === name)!;
    assert.deepEqual(steps.filter((s) => s.thrown !== undefined), [], "no writer call threw");
    const setup = byName("setup");
    assert.ok(setup.fd >= 0 && setup.word === setup.fd, JSON.stringify(setup));
    const refused = byName("switch refused");
    assert.deepEqual([refused.up, refused.fd, refused.word], [false, -1, -1]);
    const restore = byName("restore");
    assert.ok(
      restore.up && restore.fd >= 0 && restore.word === restore.fd,
      JSON.stringify(restore),
    );
    // The writer dropped a socket the main thread had taken: left open for the taker to close.
    const lost = byName("add: no answer, fd taken");
    assert.deepEqual(
      [lost.problem?.errno, lost.up, lost.fd, lost.word, lost.taken, lost.open, lost.kernel.exists],
      [11, false, -1, -1, true, true, true],
    );
    assert.equal(byName("closed by the taker").kernel.exists, false, "the table went with it");
  },
});

Deno.test({
  name:
    "fast-path writer: a switch failing every time: the table is created again at most once an interval; notices rate-limited",
  ignore: !ROOT,
  async fn() {
    const r = await probe("restore-notices") as {
      table: string;
      failed: number;
      restoreProblems: number;
      restores: number;
      up: boolean;
      exists: boolean;
      notices: string[];
    };
    const line = `fastpath: table inet ${r.table} created again`;
    assert.deepEqual(r, {
      table: r.table,
      // Refused each time the table is up; with the table removed a switch has nothing to do.
      failed: 6,
      restoreProblems: 0,
      // At once after the first failure (100 ms), then once a 1000 ms interval (1100 ... 4100),
      // and once more after the last interval: not once per failed switch.
      restores: 6,
      up: true,
      exists: true,
      notices: [line, line, line, `${line} ... repeated 3 times`],
    });
  },
});
