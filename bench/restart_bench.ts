/**
 * Restart of `nfqlb lb` under load, as root: how long SIGTERM takes to end the
 * daemon, how long a new daemon takes until its queue is bound (`queue_length=`
 * printed), and how many packets are lost in between.
 *
 * ```
 *   cl (UDP sender, 10 kpps) --veth-- lb (NFQUEUE rule on queue 0, nfqlb lb)
 * ```
 *
 * The sender sends 64-byte datagrams to port 9999 of the LB at `--rate`
 * packets/s for `--seconds`; after 1 s the daemon gets SIGTERM, and a new one
 * is started once the old one has exited (as a service manager does). The LB
 * counts the datagrams that passed the queue with an iptables rule in INPUT
 * (which then drops them). Lost = sent − passed. With `--fail-open` both
 * daemons set the queue's fail-open flag (it only acts while a queue is bound
 * and full, so it is not expected to change the loss across a restart).
 *
 * Usage: deno run --allow-all bench/restart_bench.ts [--runs=3] [--rate=10000]
 *   [--seconds=3] [--fail-open]
 * @module
 */
import { isRoot, withTestNet } from "../testkit/netns.ts";

const opt = new Map<string, string>();
for (const a of Deno.args) {
  const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
  if (m === null || !["runs", "rate", "seconds", "fail-open"].includes(m[1])) {
    console.error(
      "usage: deno run -A bench/restart_bench.ts [--runs=3] [--rate=10000] [--seconds=3] " +
        "[--fail-open]",
    );
    Deno.exit(2);
  }
  opt.set(m[1], m[2] ?? "");
}
const RUNS = Number(opt.get("runs") ?? 3);
const RATE = Number(opt.get("rate") ?? 10000);
const SECONDS = Number(opt.get("seconds") ?? 3);
const FAIL_OPEN = opt.has("fail-open");
if (!isRoot()) {
  console.error("restart_bench: needs root (network namespaces, NFQUEUE)");
  Deno.exit(1);
}

const DENO = Deno.execPath();
const CLI = new URL("../cli.ts", import.meta.url).pathname;
const token = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
const TSHM = `nfqlbrb-${Deno.pid}-${token}`;
const FTSHM = `${TSHM}-ft`;
const SENDER = `
  import dgram from "node:dgram";
  const s = dgram.createSocket("udp4");
  const buf = new Uint8Array(64);
  let sent = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < ${SECONDS * 1000}) {
    const want = Math.floor((performance.now() - t0) * ${RATE / 1000});
    while (sent < want) { s.send(buf, 9999, "10.251.0.1"); sent++; }
    await new Promise((r) => setTimeout(r, 1));
  }
  await new Promise((r) => setTimeout(r, 100));
  console.log(sent);
  s.close();`;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function nfqlb(...args: string[]): Promise<void> {
  const r = await new Deno.Command(DENO, { args: ["run", "-A", CLI, ...args] }).output();
  if (!r.success) throw new Error(`nfqlb ${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
}

const results: { lost: number; stopMs: number; startMs: number }[] = [];
try {
  await nfqlb("init", `--shm=${TSHM}`, "--M=997", "--N=4");
  await nfqlb("activate", `--shm=${TSHM}`, "5");
  for (let run = 1; run <= RUNS; run++) {
    await withTestNet(async (net) => {
      const cl = await net.addNs("cl");
      const lb = await net.addNs("lb");
      await net.veth(cl, "v0", lb, "v1");
      await net.run(cl, ["ip", "addr", "add", "10.251.0.2/24", "dev", "v0"]);
      await net.run(lb, ["ip", "addr", "add", "10.251.0.1/24", "dev", "v1"]);
      await net.run(lb, [
        "iptables",
        "-t",
        "mangle",
        "-A",
        "PREROUTING",
        "-p",
        "udp",
        "--dport",
        "9999",
        "-j",
        "NFQUEUE",
        "--queue-num",
        "0",
      ]);
      await net.run(lb, ["iptables", "-A", "INPUT", "-p", "udp", "--dport", "9999", "-j", "DROP"]);
      const args = [
        DENO,
        "run",
        "-A",
        CLI,
        "lb",
        `--tshm=${TSHM}`,
        `--ft_shm=${FTSHM}`,
        "--queue=0",
      ];
      if (FAIL_OPEN) args.push("--fail-open");
      /** Start a daemon; resolves with it once its queue is bound. */
      const start = async () => {
        const p = net.spawn(lb, args);
        const reader = p.stdout.pipeThrough(new TextDecoderStream()).getReader();
        let text = "";
        while (!text.includes("queue_length=")) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`lb exited before binding its queue: ${text}`);
          text += value;
        }
        reader.releaseLock();
        p.stdout.cancel().catch(() => undefined);
        p.stderr.pipeTo(new WritableStream()).catch(() => undefined);
        return p;
      };
      let daemon = await start();
      const sender = net.spawn(cl, [DENO, "eval", SENDER]);
      sender.stderr.pipeTo(new WritableStream()).catch(() => undefined);
      const sentText = new Response(sender.stdout).text();
      await new Promise((r) => setTimeout(r, 1000));
      const t0 = performance.now();
      daemon.kill("SIGTERM");
      await daemon.status;
      const t1 = performance.now();
      daemon = await start();
      const t2 = performance.now();
      const sent = Number((await sentText).trim());
      await sender.status;
      await new Promise((r) => setTimeout(r, 300));
      daemon.kill("SIGTERM");
      await daemon.status;
      const listing = await net.run(lb, ["iptables", "-L", "INPUT", "-v", "-x", "-n"]);
      const passed = Number(/^\s*(\d+)\s+\d+\s+DROP.*dpt:9999/m.exec(listing)?.[1] ?? NaN);
      const r = { lost: sent - passed, stopMs: t1 - t0, startMs: t2 - t1 };
      results.push(r);
      console.error(
        `run ${run}/${RUNS}: sent ${sent}, passed ${passed}, lost ${r.lost}, ` +
          `stop ${r.stopMs.toFixed(0)} ms, start ${r.startMs.toFixed(0)} ms`,
      );
    });
  }
} finally {
  for (const name of [TSHM, FTSHM]) {
    try {
      Deno.removeSync(`/dev/shm/${name}`);
    } catch {
      // not created
    }
  }
}
console.log(
  `\n### lb restart under ${RATE} pkt/s${
    FAIL_OPEN ? ", --fail-open" : ""
  } (median of ${RUNS})\n\n` +
    `| packets lost | SIGTERM → exit | start → queue bound |\n|--:|--:|--:|\n` +
    `| ${median(results.map((r) => r.lost))} | ${
      median(results.map((r) => r.stopMs)).toFixed(0)
    } ms | ${median(results.map((r) => r.startMs)).toFixed(0)} ms |`,
);
