/**
 * Median figures for the README: runs `deno bench --json` on the
 * microbenchmark files several times and prints, per benchmark, the median
 * of the per-run mean times (`deno bench` itself reports means and
 * percentiles, not medians).
 *
 * Usage: deno run --allow-all bench/report.ts [--runs=5] [FILE...]
 */
const FILES = [
  "bench/maglev_bench.ts",
  "bench/packet_bench.ts",
  "bench/fragtable_bench.ts",
  "bench/classifier_bench.ts",
];

const runsArg = Deno.args.find((a) => a.startsWith("--runs="));
const runs = runsArg ? Number(runsArg.slice(7)) : 5;
const files = Deno.args.filter((a) => !a.startsWith("--"));
const root = new URL("../", import.meta.url).pathname;

interface BenchJson {
  benches: { name: string; results: { ok?: { avg: number } }[] }[];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function human(ns: number): string {
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)} ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(2)} µs`;
  return `${ns.toFixed(1)} ns`;
}

for (const file of files.length > 0 ? files : FILES) {
  const samples = new Map<string, number[]>();
  for (let r = 0; r < runs; r++) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["bench", "--allow-all", "--json", file],
      cwd: root,
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!out.success) throw new Error(`deno bench ${file} failed`);
    const json: BenchJson = JSON.parse(new TextDecoder().decode(out.stdout));
    for (const b of json.benches) {
      const avg = b.results[0]?.ok?.avg;
      if (avg !== undefined) samples.set(b.name, [...(samples.get(b.name) ?? []), avg]);
    }
  }
  console.log(`\n${file} (median of ${runs} runs' means)\n`);
  console.log("| benchmark | median |\n|---|--:|");
  for (const [name, xs] of samples) console.log(`| ${name} | ${human(median(xs))} |`);
}
