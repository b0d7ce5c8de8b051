/**
 * NFQUEUE reader (ffi/nfqueue.ts) with the packet loop (daemon/packet_loop.ts):
 * option checks and permission errors always; as root, an end-to-end test in
 * two private network namespaces joined by a veth pair.
 *
 * Netlink sockets belong to the namespace of the process that creates them,
 * so the queue reader runs as a subprocess under `ip netns exec`
 * (testkit/fixtures/queue_reader.ts); traffic comes from the other namespace
 * (testkit/fixtures/udp_sender.ts, ping). The fwmark set by the verdict is
 * checked with counting iptables rules in mangle INPUT.
 */
import assert from "node:assert/strict";
import { NfQueue, type NfQueueStats } from "../../ffi/nfqueue.ts";
import { LineProcess } from "../../testkit/line_process.ts";
import { isRoot, type TestNet, withTestNet } from "../../testkit/netns.ts";

// ---------------------------------------------------------------- without the kernel

Deno.test("NfQueue.open rejects invalid options before touching the kernel", () => {
  const base = { queue: 2, mtu: 1500, qlength: 1024 };
  assert.throws(() => NfQueue.open({ ...base, queue: 65536 }), RangeError);
  assert.throws(() => NfQueue.open({ ...base, queue: -1 }), RangeError);
  assert.throws(() => NfQueue.open({ ...base, mtu: 0 }), RangeError);
  assert.throws(() => NfQueue.open({ ...base, qlength: 0 }), RangeError);
  assert.throws(() => NfQueue.open({ ...base, batch: 0 }), RangeError);
});

// ---------------------------------------------------------------- integration (root)

const ROOT = isRoot();
if (!ROOT) {
  console.warn("nfqueue_test: not running as root: NFQUEUE integration test skipped");
}

const DENO = Deno.execPath();
const FIXTURES = new URL("../../testkit/fixtures/", import.meta.url).pathname;
const READER = [DENO, "run", "--allow-ffi", "--allow-read", FIXTURES + "queue_reader.ts"];
const SENDER = [DENO, "run", "--allow-net", FIXTURES + "udp_sender.ts"];

Deno.test("without --allow-ffi the permission error propagates from NfQueue.open", async () => {
  const r = await new Deno.Command(DENO, {
    args: ["run", "--allow-read", FIXTURES + "queue_reader.ts", "--queue=7"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(r.stdout);
  assert.equal(r.code, 3, out + new TextDecoder().decode(r.stderr));
  assert.match(out, /^ERROR \[-1\] Requires ffi access to "libc\.so\.6"/);
});

const Q = 7;
const LB4 = "10.211.0.1";
const CL4 = "10.211.0.2";
const LB6 = "fd00:211::1";
const CL6 = "fd00:211::2";
const PORT = 5001;
const MARK = 77;

interface Summary {
  received: number;
  l3: Record<string, number>;
  lengths: number[];
  tags: number[];
  stats: NfQueueStats;
  verdictErrors: { count: number; lastErrno: number };
  bad: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A queue_reader.ts subprocess. */
class Reader extends LineProcess {
  constructor(net: TestNet, ns: string, args: string[]) {
    super(net, ns, [...READER, ...args], "reader");
  }

  /** Wait for a stdout line matching `re` (or ERROR), within `ms`. */
  waitFor(re: RegExp, ms = 15000): Promise<string> {
    return this.waitLine((l) => re.test(l) || l.startsWith("ERROR"), 0, ms);
  }

  /** The JSON summary line printed at exit. */
  async summary(): Promise<Summary> {
    const r = await this.finish();
    assert.equal(r.code, 0, `reader exit ${r.code}: ${r.lines.join("\n")}\n${r.stderr}`);
    const last = r.lines.findLast((l) => l.startsWith("{"));
    assert.ok(last !== undefined, `no summary in:\n${r.lines.join("\n")}\n${r.stderr}`);
    return JSON.parse(last);
  }
}

/** Packet counter of the mangle INPUT rule with comment `name`. */
async function counter(net: TestNet, ns: string, name: string, ip = "iptables"): Promise<number> {
  const out = await net.run(ns, [ip, "-t", "mangle", "-L", "INPUT", "-nvx"]);
  const line = out.split("\n").find((l) => l.includes(`/* ${name} */`));
  assert.ok(line !== undefined, `no rule ${name} in:\n${out}`);
  return Number(line.trim().split(/\s+/)[0]);
}

/** Poll `f` until it returns `want` (or time out and return the last value). */
async function waitValue<T>(f: () => Promise<T>, want: T, ms = 3000): Promise<T> {
  const deadline = Date.now() + ms;
  let v = await f();
  while (v !== want && Date.now() < deadline) {
    await sleep(50);
    v = await f();
  }
  return v;
}

/** Fields of our queue's line in /proc/net/netfilter/nfnetlink_queue, or null. */
async function procQueue(net: TestNet, ns: string) {
  const out = await net.run(ns, ["cat", "/proc/net/netfilter/nfnetlink_queue"]);
  for (const l of out.split("\n")) {
    const f = l.trim().split(/\s+/).map(Number);
    if (f.length >= 8 && f[0] === Q) {
      return {
        portid: f[1],
        total: f[2],
        copyMode: f[3],
        copyRange: f[4],
        dropped: f[5],
        userDropped: f[6],
        idSequence: f[7],
      };
    }
  }
  return null;
}

async function send(net: TestNet, ns: string, count: number, size = 100) {
  await net.run(ns, [
    ...SENDER,
    `--to=${LB4}`,
    `--port=${PORT}`,
    `--count=${count}`,
    `--size=${size}`,
  ]);
}

Deno.test({
  name: "NFQUEUE end to end in network namespaces (needs root)",
  ignore: !ROOT,
  async fn(t) {
    await withTestNet(async (net) => {
      const lb = await net.addNs("lb");
      const cl = await net.addNs("cl");
      await net.veth(lb, "veth0", cl, "veth0");
      for (const [ns, a4, a6] of [[lb, LB4, LB6], [cl, CL4, CL6]]) {
        await net.run(ns, ["ip", "addr", "add", `${a4}/24`, "dev", "veth0"]);
        await net.run(ns, ["ip", "-6", "addr", "add", `${a6}/64`, "dev", "veth0", "nodad"]);
      }
      // Resolve neighbours before any rule queues packets.
      await net.run(cl, ["ping", "-c1", "-W2", LB4]);
      await net.run(cl, ["ping", "-6", "-c1", "-W2", LB6]);

      const ipt = (ip: string, ...args: string[]) => net.run(lb, [ip, "-t", "mangle", ...args]);
      const nfq = ["-j", "NFQUEUE", "--queue-num", String(Q)];
      await ipt("iptables", "-A", "PREROUTING", "-p", "udp", "--dport", `${PORT}`, ...nfq);
      await ipt(
        "iptables",
        "-A",
        "PREROUTING",
        "-p",
        "icmp",
        "--icmp-type",
        "echo-request",
        ...nfq,
      );
      await ipt(
        "ip6tables",
        "-A",
        "PREROUTING",
        "-p",
        "ipv6-icmp",
        "--icmpv6-type",
        "echo-request",
        ...nfq,
      );
      const count = (...m: string[]) => ["-A", "INPUT", "-p", "udp", "--dport", `${PORT}`, ...m];
      await ipt("iptables", ...count("-m", "comment", "--comment", "udp-all"));
      await ipt(
        "iptables",
        ...count("-m", "mark", "--mark", `${MARK}`, "-m", "comment", "--comment", "udp-marked"),
      );
      await ipt(
        "iptables",
        ...count(
          "-m",
          "mark",
          "--mark",
          `${MARK + 1}`,
          "-m",
          "comment",
          "--comment",
          "udp-marked2",
        ),
      );
      const all = () => counter(net, lb, "udp-all");
      /** Packets that hit the UDP NFQUEUE rule in PREROUTING. */
      const nfqueueHits = async () => {
        const out = await net.run(lb, ["iptables", "-t", "mangle", "-L", "PREROUTING", "-nvx"]);
        const line = out.split("\n").find((l) => l.includes("NFQUEUE") && l.includes("udp"));
        assert.ok(line !== undefined, `no UDP NFQUEUE rule in:\n${out}`);
        return Number(line.trim().split(/\s+/)[0]);
      };
      const marked = () => counter(net, lb, "udp-marked");
      const marked2 = () => counter(net, lb, "udp-marked2");

      const sysctl = async (k: string) =>
        Number(await net.run(lb, ["cat", `/proc/sys/net/core/${k}`]));
      const rmemMax = await sysctl("rmem_max");
      const rmemDefault = await sysctl("rmem_default");

      await t.step("start-up line; ACCEPT with mark for a burst of 200 UDP packets", async () => {
        const r = new Reader(net, lb, [`--queue=${Q}`, `--mark=${MARK}`, "--count=200"]);
        const line = await r.waitFor(/^queue_length=/);
        // Default options: requested 765952 > default SO_RCVBUF, so it is set; Linux doubles
        // the value and caps it at rmem_max.
        const requested = 765952;
        const actual = requested > rmemDefault ? 2 * Math.min(requested, rmemMax) : rmemDefault;
        assert.equal(line, `queue_length=1024, mtu=1500, SO_RCVBUF=${actual} (${requested})`);
        await r.waitFor(/^READY$/);
        await send(net, cl, 200);
        const s = await r.summary();
        assert.equal(s.received, 200);
        assert.deepEqual(s.l3, { "0x0800": 200 });
        assert.ok(s.lengths.every((l) => l === 20 + 8 + 100), "IPv4 + UDP + 100 bytes each");
        assert.deepEqual([...s.tags].sort((a, b) => a - b), [...Array(200).keys()]);
        assert.equal(s.stats.verdicts, 200);
        assert.ok(s.stats.sends <= s.stats.batches, "at most one send per received batch");
        assert.ok(s.stats.maxBatch >= 1 && s.stats.maxBatch <= 32);
        assert.equal(s.verdictErrors.count, 0);
        assert.equal(s.bad, 0);
        assert.equal(await waitValue(marked, 200), 200, "all 200 reached INPUT with mark 77");
        assert.equal(await all(), 200);
      });

      await t.step("DROP verdict", async () => {
        const r = new Reader(net, lb, [`--queue=${Q}`, "--mark=-1", "--count=5"]);
        await r.waitFor(/^READY$/);
        await send(net, cl, 5);
        const s = await r.summary();
        assert.equal(s.received, 5);
        assert.equal(s.verdictErrors.count, 0);
        await sleep(200);
        assert.equal(await all(), 200, "dropped packets never reach INPUT");
      });

      await t.step(
        "runs of equal verdicts become batch verdicts; each packet keeps its own mark",
        async () => {
          const [all0, m0, m20] = [await all(), await marked(), await marked2()];
          for (const batchVerdicts of [true, false]) {
            const r = new Reader(net, lb, [
              `--queue=${Q}`,
              `--mark=${MARK}`,
              "--count=200",
              "--mark-pattern",
              "--delay-ms=1000",
              ...(batchVerdicts ? [] : ["--no-batch-verdicts"]),
            ]);
            await r.waitFor(/^READY$/);
            await send(net, cl, 200);
            const s = await r.summary();
            assert.equal(s.received, 200);
            assert.equal(s.stats.verdicts, 200);
            assert.equal(s.verdictErrors.count, 0);
            if (batchVerdicts) {
              // Tags 0-5 | 6-8 | 9 per ten: 3 messages per ten packets (batches may split runs).
              assert.ok(s.stats.maxBatch > 10, `packets piled up: max batch ${s.stats.maxBatch}`);
              assert.ok(s.stats.batchVerdicts >= 30, `batch verdicts: ${s.stats.batchVerdicts}`);
              assert.ok(s.stats.verdictMessages <= 70, `messages: ${s.stats.verdictMessages}`);
            } else {
              assert.equal(s.stats.batchVerdicts, 0);
              assert.equal(s.stats.verdictMessages, 200);
            }
          }
          // Twice 200 packets: tags t % 10 < 6 with MARK, 6..8 with MARK + 1, 9 dropped.
          assert.equal(await waitValue(marked, m0 + 240), m0 + 240);
          assert.equal(await waitValue(marked2, m20 + 120), m20 + 120);
          await sleep(200);
          assert.equal(await all(), all0 + 360, "the dropped 40 never reach INPUT");
          assert.equal(await procQueue(net, lb), null, "queue unbound, nothing left in it");
        },
      );

      await t.step("ICMP echo over IPv4 and IPv6 is accepted with mark 0", async () => {
        const r = new Reader(net, lb, [`--queue=${Q}`, "--mark=0", "--count=2"]);
        await r.waitFor(/^READY$/);
        const p4 = await net.exec(cl, ["ping", "-c1", "-W3", LB4]);
        assert.equal(p4.code, 0, p4.stdout + p4.stderr);
        const p6 = await net.exec(cl, ["ping", "-6", "-c1", "-W3", LB6]);
        assert.equal(p6.code, 0, p6.stdout + p6.stderr);
        const s = await r.summary();
        assert.deepEqual(s.l3, { "0x0800": 1, "0x86dd": 1 });
        assert.deepEqual(s.lengths, [84, 104]);
      });

      await t.step(
        "second process on the same queue: 'in use'; the queue is free after close",
        async () => {
          const a = new Reader(net, lb, [`--queue=${Q}`, "--hold"]);
          await a.waitFor(/^READY$/);
          const pq = await procQueue(net, lb);
          assert.ok(pq !== null && pq.portid !== 0, "queue bound");
          assert.equal(pq.copyMode, 2, "NFQNL_COPY_PACKET");
          assert.equal(pq.copyRange, 1500, "copy range = mtu");
          const b = await net.exec(lb, [...READER, `--queue=${Q}`]);
          assert.equal(b.code, 3, b.stdout + b.stderr);
          assert.match(
            b.stdout,
            new RegExp(`^ERROR \\[\\d+\\] queue ${Q} is in use by another process\\n$`),
          );
          assert.equal((await a.finish()).code, 0);
          assert.equal(await procQueue(net, lb), null, "close unbinds the queue");

          // Small request: 10 * 1280 / 2 -> 4096, not larger than the default, so not applied.
          const c = new Reader(net, lb, [`--queue=${Q}`, "--qlength=10", "--mtu=1280", "--hold"]);
          const line = await c.waitFor(/^queue_length=/);
          assert.equal(line, `queue_length=10, mtu=1280, SO_RCVBUF=${rmemDefault} (4096)`);
          await c.waitFor(/^READY$/);
          assert.equal((await procQueue(net, lb))?.copyRange, 1280);
          assert.equal((await c.finish()).code, 0);
        },
      );

      await t.step("queue full: fail-open accepts the excess, default drops it", async () => {
        const before = await all();
        const open = new Reader(net, lb, [`--queue=${Q}`, "--qlength=1", "--fail-open", "--hold"]);
        await open.waitFor(/^READY$/);
        await send(net, cl, 5);
        assert.equal(await waitValue(all, before + 4), before + 4, "4 bypass the full queue");
        assert.equal((await procQueue(net, lb))?.total, 1, "one packet waits in the queue");
        assert.equal((await open.finish()).code, 0);

        const closed = new Reader(net, lb, [`--queue=${Q}`, "--qlength=1", "--hold"]);
        await closed.waitFor(/^READY$/);
        await send(net, cl, 5);
        const pq = await waitValue(async () => (await procQueue(net, lb))?.dropped, 4);
        assert.equal(pq, 4, "4 dropped by the full queue");
        assert.equal(await all(), before + 4);
        assert.equal((await closed.finish()).code, 0);
      });

      await t.step(
        "opened while a sender floods the rule: every packet the kernel queued gets a verdict",
        async () => {
          const m0 = await marked();
          const hits0 = await nfqueueHits();
          const N = 100000;
          const sender = net.spawn(cl, [
            ...SENDER,
            `--to=${LB4}`,
            `--port=${PORT}`,
            `--count=${N}`,
            "--size=100",
          ]);
          await sender.stdin.close();
          sender.stdout.pipeTo(new WritableStream()).catch(() => undefined);
          sender.stderr.pipeTo(new WritableStream()).catch(() => undefined);
          let senderDone = false;
          const senderStatus = sender.status.then((st) => {
            senderDone = true;
            return st;
          });
          // Packets hit the NFQUEUE rule before the queue exists (the kernel drops them).
          const deadline = Date.now() + 15000;
          while ((await nfqueueHits()) === hits0 && Date.now() < deadline) await sleep(20);
          const r = new Reader(net, lb, [`--queue=${Q}`, `--mark=${MARK}`]);
          await r.waitFor(/^READY$/);
          assert.ok(!senderDone, "the flood was still running when the queue was open");
          assert.equal((await senderStatus).code, 0);
          // Wait until the last packet has passed the rule, then for the queue to drain.
          let hits = await nfqueueHits();
          for (let prev = -1; hits !== prev;) {
            await sleep(300);
            prev = hits;
            hits = await nfqueueHits();
          }
          const pq = await waitValue(async () => (await procQueue(net, lb))?.total, 0);
          if (pq !== 0) {
            const f = await r.finish(); // show why: e.g. the reader died
            const out = `${f.lines.join("\n").slice(0, 2000)}\n${f.stderr}`;
            assert.fail(`packets left in the bound queue: ${pq}; reader exit ${f.code}:\n${out}`);
          }
          const after = (await procQueue(net, lb))!;
          const s = await r.summary();
          const queued = after.idSequence - after.userDropped;
          console.log(
            `  flood: ${hits - hits0} packets hit the rule, ${after.idSequence} queued ` +
              `(${after.dropped} queue full, ${after.userDropped} socket full), ` +
              `${s.stats.openPackets} arrived before the bind ACK`,
          );
          assert.ok(after.idSequence > 0 && after.idSequence < hits - hits0);
          assert.equal(s.received, queued, "every queued packet was decided");
          assert.equal(s.stats.verdicts, queued);
          assert.equal(s.verdictErrors.count, 0, "no verdict for an unknown id");
          assert.equal(s.bad, 0);
          assert.equal(await waitValue(marked, m0 + queued), m0 + queued, "all reached INPUT");
        },
      );

      await t.step("without CAP_NET_ADMIN: a clear error", async () => {
        const r = await net.exec(lb, [
          "setpriv",
          "--bounding-set=-net_admin",
          "--inh-caps=-net_admin",
          "--",
          ...READER,
          `--queue=${Q}`,
        ]);
        assert.equal(r.code, 3, r.stdout + r.stderr);
        assert.match(
          r.stdout,
          new RegExp(
            `^ERROR \\[1\\] queue ${Q}: permission denied \\(NFQUEUE needs root or CAP_NET_ADMIN\\)\\n$`,
          ),
        );
      });
    });
  },
});
