/**
 * The demo behind `./dev demo`. As root: the live demo of `./live_demo.ts`
 * (namespaces, `flowlb`, real traffic). Without root, or with `--table`: the
 * table demo, which needs no privileges: it creates a Maglev target table in
 * shared memory, activates four targets, shows it, asks where a few flows go,
 * takes one target out and shows that only its flows move. Every step is a
 * real `nfqlb` command, printed as it runs.
 *
 * Both leave nothing behind: the live demo's daemon uses a trace object of its own
 * (`./demo_trace_shm.ts`, imported first), removed with its tables and statistics object.
 *
 * Usage: deno run -A scripts/demo.ts [--table] [SHM-NAME]
 */
import "./demo_trace_shm.ts";
import { main } from "../cli/main.ts";
import { isRoot } from "../testkit/netns.ts";
import { liveDemo } from "./live_demo.ts";

const TABLE_ONLY = Deno.args.includes("--table");
const SHM = Deno.args.filter((a) => a !== "--table")[0] ?? "nfqlb-demo";
const encoder = new TextEncoder();
const print = (t: string) => Deno.stdout.writeSync(encoder.encode(t));
const io = { out: print, err: (t: string) => Deno.stderr.writeSync(encoder.encode(t)) };

async function nfqlb(...args: string[]): Promise<string> {
  print(`$ nfqlb ${args.join(" ")}\n`);
  let out = "";
  const code = await main("nfqlb", args, { out: (t) => (out += t), err: io.err });
  print(out);
  if (code !== 0) Deno.exit(code);
  return out;
}

const flows = [
  ["10.0.0.1:40001", "192.168.1.10:80"],
  ["10.0.0.2:40002", "192.168.1.10:80"],
  ["10.0.0.3:40003", "192.168.1.10:80"],
  ["[1000::5]:40004", "[2000::1]:443"],
];

async function where(): Promise<number[]> {
  const marks: number[] = [];
  for (const [src, dst] of flows) {
    const out = await nfqlb(
      "fwmark",
      `--shm=${SHM}`,
      "--proto=tcp",
      `--src=${src}`,
      `--dst=${dst}`,
    );
    marks.push(JSON.parse(out).fwmark);
  }
  return marks;
}

/** The table demo: no namespaces, no privileges. */
async function tableDemo(): Promise<void> {
  await nfqlb("init", `--shm=${SHM}`, "--M=997", "--N=32");
  await nfqlb("activate", `--shm=${SHM}`, "100", "101", "102", "103");
  await nfqlb("show", `--shm=${SHM}`);
  const before = await where();
  const victim = before[0];
  await nfqlb("deactivate", `--shm=${SHM}`, String(victim));
  await nfqlb("show", `--shm=${SHM}`);
  const after = await where();
  print("\nflow                                   before  after\n");
  flows.forEach(([src, dst], i) => {
    const moved = before[i] === after[i]
      ? ""
      : before[i] === victim
      ? "  (moved: its target was removed)"
      : "  (moved by Maglev rebalancing)";
    print(
      `${`${src} -> ${dst}`.padEnd(38)} ${String(before[i]).padStart(6)} ${
        String(after[i]).padStart(6)
      }${moved}\n`,
    );
  });
  await nfqlb("delete", `--shm=${SHM}`);
}

if (TABLE_ONLY || !isRoot()) {
  if (!TABLE_ONLY) print("(not root: the table demo; as root ./dev demo sends real traffic)\n");
  await tableDemo();
} else {
  await liveDemo();
}
