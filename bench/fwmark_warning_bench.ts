/**
 * The cost of `activate`'s fwmark warning (`warnFwmarkRules`), in-process: the rtnetlink dump
 * against the `ip -4|-6 rule` fallback, median of 25 runs each after a warm-up. Run it as root in
 * a namespace with a daemon-like setup of your choosing, e.g.
 * `ip netns exec NS deno run -A bench/fwmark_warning_bench.ts`.
 */
import { warnFwmarkRules } from "../cli/namespace_rules.ts";

const RUNS = 25;
const sink = { out: () => {}, err: () => {} };

/** Median wall time (ms) of `RUNS` runs of `f`. */
async function median(f: () => Promise<void>): Promise<number> {
  await f();
  const t: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const s = performance.now();
    await f();
    t.push(performance.now() - s);
  }
  t.sort((a, b) => a - b);
  return t[RUNS >> 1];
}

const netlink = await median(() => warnFwmarkRules(sink, [104]));
const ip = await median(() => warnFwmarkRules(sink, [104], { netlink: false }));
console.log(
  `activate's warning, median of ${RUNS}: rtnetlink ${netlink.toFixed(3)} ms, ` +
    `ip ${ip.toFixed(3)} ms`,
);
