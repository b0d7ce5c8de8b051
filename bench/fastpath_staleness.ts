/**
 * How long a kernel fast-path element can keep an old mark after a table change made by a
 * program that does not wait (1.2.0's `activate`/`deactivate`), as root (docs/FASTPATH.md):
 *
 * ```
 *   cl (UDP sender: one datagram per 5-tuple) --veth-- lb (nfqlb lb --fastpath, queue 0)
 * ```
 *
 * Per sample: fill the maps with `--elements` 5-tuples (each sent once, `--fastpath-min-packets=1`,
 * until the status object shows them), then write the table straight into shared memory (as
 * 1.2.0's CLI does: deactivate or activate one target, whichever changes the table) and measure the time until the
 * writer has flushed both maps (its status object's flush count moves; polled every 0.2 ms). That
 * time is the longest a cached flow can keep its old mark: the writer's scan interval, the scan and
 * the flush. Also reported: the writer's own measure of the flush (change seen → both maps empty).
 *
 * Usage: deno run --allow-all bench/fastpath_staleness.ts [--samples=10] [--elements=1000,10000,60000]
 * @module
 */
import { main } from "../cli/main.ts";
import { isRoot, TestNet } from "../testkit/netns.ts";
import { openShm } from "../ffi/shm.ts";
import { MaglevTable } from "../lib/maglev/table.ts";
import { activate, deactivate } from "../lib/maglev/maglev.ts";
import {
  F_ELEMENTS,
  F_FLUSHES,
  F_LAST_FLUSH_US,
  statusTable,
  statusValues,
} from "../lib/fastpath/status.ts";

const opt = new Map(Deno.args.map((a) => {
  const m = /^--([^=]+)=(.*)$/.exec(a);
  if (m === null) throw new Error(`bad argument ${a}`);
  return [m[1], m[2]] as [string, string];
}));
const SAMPLES = Number(opt.get("samples") ?? "10");
const SIZES = (opt.get("elements") ?? "1000,10000,60000").split(",").map(Number);
if (!isRoot()) {
  console.error("fastpath_staleness: needs root");
  Deno.exit(1);
}

const io = {
  out: () => {},
  err: (s: string) => Deno.stderr.writeSync(new TextEncoder().encode(s)),
};
const token = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
const tshm = `nfqlbst-${token}`;
const table = `nfqlbst${token}`;
const DENO = Deno.execPath();
const CLI = new URL("../cli.ts", import.meta.url).pathname;
/** Sends one datagram to the VIP from each of `n` source ports (raw socket: no receiver needed). */
const SENDER = `
import socket, sys
n = int(sys.argv[1]); base = int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
for i in range(n):
    p = 1024 + (base + i) % 64000
    hdr = p.to_bytes(2, "big") + (80).to_bytes(2, "big") + (8).to_bytes(2, "big") + bytes(2)
    s.sendto(hdr, ("10.216.255.1", 0))
`;
const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

await main("nfqlb", ["init", `--shm=${tshm}`, "--M=997", "--N=32"], io);
await main("nfqlb", ["activate", `--shm=${tshm}`, "101", "102", "103", "104"], io);
const net = await TestNet.create();
let daemon: Deno.ChildProcess | undefined;
try {
  const cl = await net.addNs("cl");
  const lb = await net.addNs("lb");
  await net.veth(cl, "veth0", lb, "vcl");
  await net.run(cl, ["ip", "addr", "add", "10.216.0.2/24", "dev", "veth0"]);
  await net.run(lb, ["ip", "addr", "add", "10.216.0.1/24", "dev", "vcl"]);
  await net.run(cl, ["ip", "route", "add", "default", "via", "10.216.0.1"]);
  await net.run(cl, ["ping", "-c1", "-W3", "10.216.0.1"]);
  await net.run(lb, [
    "iptables",
    "-t",
    "mangle",
    "-A",
    "PREROUTING",
    "-d",
    "10.216.255.1",
    "-m",
    "mark",
    "--mark",
    "0",
    "-j",
    "NFQUEUE",
    "--queue-num",
    "0",
  ]);
  daemon = net.spawn(lb, [
    DENO,
    "run",
    "-A",
    CLI,
    "lb",
    `--tshm=${tshm}`,
    `--ft_shm=${tshm}-ft`,
    "--queue=0",
    "--fastpath",
    `--fastpath-table=${table}`,
    "--fastpath-min-packets=1",
    "--fastpath-timeout=600000",
    "--fastpath-size=65536",
  ]);
  let st;
  for (let i = 0; i < 200 && st === undefined; i++) {
    await sleep(50);
    try {
      const n = [...Deno.readDirSync("/dev/shm")].map((e) => e.name)
        .find((x) => statusTable(x) === table);
      if (n !== undefined) st = openShm(n, false);
    } catch {
      // not up yet
    }
  }
  if (st === undefined) throw new Error("the daemon did not start");
  const v = statusValues(st.buffer);
  const m = openShm(tshm, true);
  const t = MaglevTable.view(m.buffer);
  console.log(
    `\n### Fast-path staleness: table write (not waiting) → the rules use empty maps, ${SAMPLES} samples\n`,
  );
  console.log(
    "| elements in the maps | write → switched to empty maps, median | max | the switch itself, median | max |",
  );
  console.log("| ---: | ---: | ---: | ---: | ---: |");
  let base = 0;
  for (const size of SIZES) {
    const total: number[] = [], flush: number[] = [];
    for (let s = 0; s < SAMPLES; s++) {
      await net.run(cl, ["python3", "-c", SENDER, String(size), String(base)]);
      base += size;
      for (let i = 0; i < 400 && v[F_ELEMENTS] < size * 0.98; i++) await sleep(10);
      const before = v[F_FLUSHES];
      const t0 = performance.now();
      if (t.active.includes(104)) deactivate(t, [104]);
      else activate(t, [104]);
      while (v[F_FLUSHES] === before && performance.now() - t0 < 2000) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 0.2);
      }
      total.push(performance.now() - t0);
      flush.push(v[F_LAST_FLUSH_US] / 1000);
      await sleep(30); // the 20 ms grace of a deactivation ends in a second flush
    }
    const f = (x: number) => `${x.toFixed(1)} ms`;
    const row = [f(median(total)), f(Math.max(...total)), f(median(flush)), f(Math.max(...flush))];
    console.log(`| ${size} | ${row.join(" | ")} |`);
  }
  m.close();
  st.close();
} finally {
  if (daemon !== undefined) {
    try {
      daemon.kill("SIGTERM");
    } catch {
      // gone
    }
    const out = await daemon.output();
    const err = new TextDecoder().decode(out.stderr).trim();
    if (err !== "") console.error(`nfqlb lb stderr:\n${err}`);
  }
  await net.cleanup();
  await main("nfqlb", ["delete", `--shm=${tshm}`], io);
  try {
    Deno.removeSync(`/dev/shm/${tshm}-ft`);
  } catch {
    // not there
  }
}
