/**
 * Trace flows end to end (docs/COMPATIBILITY.md#trace-and-log, trace flows), as root, in private
 * network namespaces (the topology of testkit/e2e_topology.ts): the troubleshooting procedure of a
 * Kubernetes frontend, `nfqlb trace-flow-set --name=...` then `nfqlb trace --mask=0xffffffff`,
 * shows for each matching packet 1.2.0's lines (match, 5-tuple, target and fwmark), for IPv4 and
 * IPv6, and the packet line names the packet's addresses and ports (D60); the match is counted in `trace-flow-list`; a trace flow set with a raw 1.2.0 wire-format
 * request (the other implementation's CLI speaks the same bytes) works the same; deleted, it
 * prints nothing more.
 */
import assert from "node:assert/strict";
import { Addressing } from "../../testkit/e2e_topology.ts";
import {
  cli,
  Daemon,
  FLOW_ENV,
  predict,
  readyTopology,
  removeShmObjects,
  type Service,
  serviceOf,
} from "../../testkit/e2e_service.ts";
import { LineProcess } from "../../testkit/line_process.ts";
import { isRoot, withTestNet } from "../../testkit/netns.ts";

const ROOT = isRoot();
if (!ROOT) {
  console.warn("trace_flows_test: not running as root: trace-flow end-to-end test skipped");
}

const DENO = Deno.execPath();
const CLI = new URL("../../cli.ts", import.meta.url).pathname;
const NET = new Addressing(209, 1, 1);
const { vip4: VIP4, vip6: VIP6, cl4: [CL4], cl6: [CL6] } = NET;
const PORT = 5001;
const SVC: Service = serviceOf(NET, PORT);
const Q = 9;

const UDP_EXCHANGE = new URL("../../testkit/fixtures/udp_exchange.py", import.meta.url).pathname;

/** A raw 1.2.0 wire-format request to the abstract socket @nfqlb; prints the reply text. */
const RAW_REQUEST = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect("\\0nfqlb")
s.sendall(sys.argv[1].encode().replace(b"|", b"\\n"))
print(s.recv(4096).split(b"\\0")[0].decode())
`;

Deno.test({
  name: "trace flows: trace-flow-set + trace --mask show each matching packet's lines (needs root)",
  ignore: !ROOT,
  async fn(t) {
    const token = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
    const tshm = `nfqlbtf-${Deno.pid}-${token}-t`;
    const ftshm = `nfqlbtf-${Deno.pid}-${token}-ft`;
    let daemon: Daemon | null = null;
    try {
      await withTestNet(async (net) => {
        const { cl, lb, servers } = await readyTopology(net, NET, SVC, Q, tshm);
        daemon = new Daemon(net, lb, "flowlb", [`--queue=${Q}`, `--ft_shm=${ftshm}`]);
        await daemon.ready();
        const nfqlb = async (...args: string[]) => {
          const r = await net.exec(lb, [...FLOW_ENV, DENO, "run", "-A", CLI, ...args]);
          assert.equal(r.code, 0, `nfqlb ${args.join(" ")}: ${r.stdout}${r.stderr}`);
          return r.stdout;
        };
        const flow = `--name=udp --target=${tshm} --protocols=udp --dports=${PORT}`;
        assert.equal(await nfqlb("flow-set", ...flow.split(" ")), "OK\n");
        assert.equal(
          await nfqlb(
            "trace-flow-set",
            "--name=tr",
            "--protocols=udp",
            `--dsts=${VIP4}/32,${VIP6}/128`,
          ),
          "OK\n",
        );

        const trace = new LineProcess(net, lb, [
          DENO,
          "run",
          "-A",
          CLI,
          "trace",
          "--mask=0xffffffff",
        ], "trace");
        const send = (src: string, dst: string, ports: number[]) =>
          net.run(cl, [
            "/usr/bin/python3",
            UDP_EXCHANGE,
            src,
            dst,
            String(PORT),
            ...ports.map(String),
          ]);
        /** The lines printed for a UDP packet src:sport -> dst:PORT of 5 bytes. */
        const expected = async (src: string, dst: string, sport: number, flowName: string) => {
          const target = await predict(SVC, tshm, src, sport);
          const fw = NET.tMark(Number(target!.slice(1)));
          const v6 = src.includes(":");
          const len = (v6 ? 40 : 20) + 8 + 5;
          const a = (x: string) => v6 ? x : `::ffff:${x}`;
          const ep = (x: string, port: number) => v6 ? `[${x}]:${port}` : `${x}:${port}`;
          return [
            "",
            `Match for trace-flow: ${flowName}`,
            `proto=udp, len=${len}, ${a(src)} ${sport} -> ${a(dst)} ${PORT}`,
            `target=${tshm}, fwmark=${fw}`,
            `Using LB; ${tshm}`,
            // 1.2.0's packet line, then the packet's addresses and ports (D60).
            `Packet; proto=17, len=${len}, fwmark=${fw}, ${ep(src, sport)} -> ${ep(dst, PORT)}`,
          ];
        };
        /**
         * The packets' lines: from the first packet's on (the control thread's lines for the
         * requests before, which its ring delivers first, are left out), trace server lines aside.
         */
        const packetLines = (lines: string[]) => {
          const i = lines.findIndex((l, k) =>
            (l === "" && lines[k + 1]?.startsWith("Match for trace-flow")) ||
            l.startsWith("Using LB;")
          );
          return (i < 0 ? [] : lines.slice(i)).filter((l) => !/^(warning: )?Trace/.test(l));
        };
        /** The trace lines after `from` up to the packet line of the `n`-th matching packet. */
        const blocks = async (from: number, n: number) => {
          await trace.waitLines(/^Packet; /, n, 10_000, from);
          return trace.lines.slice(from);
        };
        try {
          await trace.waitLines(/^Trace active, mask=0xffffffff$/);
          await t.step(
            "IPv4 and IPv6 packets print the match, the 5-tuple, the target and fwmark",
            async () => {
              const from = trace.lines.length;
              await send(CL4, VIP4, [40001, 40002, 40003]);
              await send(CL6, VIP6, [40004]);
              const got = await blocks(from, 4);
              const want = [
                ...await expected(CL4, VIP4, 40001, "tr"),
                ...await expected(CL4, VIP4, 40002, "tr"),
                ...await expected(CL4, VIP4, 40003, "tr"),
                ...await expected(CL6, VIP6, 40004, "tr"),
              ];
              // Only these packets pass the queue now; the log lines of the trace server aside.
              assert.deepEqual(packetLines(got).slice(0, want.length), want);
              const list = JSON.parse(await nfqlb("trace-flow-list"));
              assert.equal(list[0].name, "tr");
              assert.equal(list[0].matches_count, 4);
            },
          );

          await t.step("a trace flow set with 1.2.0's wire format works the same", async () => {
            const req = `action:trace-set|name:raw|protocols:udp|sports:40010|priority:7|eoc:|`;
            const r = await net.run(lb, ["/usr/bin/python3", "-c", RAW_REQUEST, req]);
            assert.equal(r.trim(), "OK");
            assert.deepEqual(JSON.parse(await nfqlb("trace-flow-list-names")), ["raw", "tr"]);
            const from = trace.lines.length;
            await send(CL4, VIP4, [40010]);
            const got = await blocks(from, 1);
            // Priority 7 beats "tr" (priority 0): the first matching trace flow prints.
            assert.deepEqual(
              packetLines(got),
              await expected(CL4, VIP4, 40010, "raw"),
            );
          });

          await t.step("trace-flow-delete: no more trace-flow lines for that flow", async () => {
            assert.equal(await nfqlb("trace-flow-delete", "--name=raw"), "OK\n");
            assert.equal(await nfqlb("trace-flow-delete", "--name=tr"), "OK\n");
            const from = trace.lines.length;
            await send(CL4, VIP4, [40011]);
            const got = await blocks(from, 1);
            assert.deepEqual(
              packetLines(got),
              (await expected(CL4, VIP4, 40011, "x")).slice(4),
            );
            assert.deepEqual(JSON.parse(await nfqlb("trace-flow-list-names")), []);
          });

          await t.step(
            "bits flow-conf and target: request and reply lines, tables taken and given back",
            async () => {
              await cli("init", `--shm=${tshm}-2`, "--M=97", "--N=4");
              const from = trace.lines.length;
              const f2 = `--name=udp2 --target=${tshm}-2 --protocols=udp --dports=6000`;
              assert.equal(await nfqlb("flow-set", ...f2.split(" ")), "OK\n");
              const f3 = `--name=udp3 --target=${tshm}-2 --protocols=udp --dports=6001`;
              assert.equal(await nfqlb("flow-set", ...f3.split(" ")), "OK\n");
              assert.equal(await nfqlb("flow-delete", "--name=udp3"), "OK\n");
              assert.equal(await nfqlb("flow-delete", "--name=udp2"), "OK\n");
              await trace.waitLines(/^writeReply \[OK\]$/, 4, 10_000, from);
              // Lines of the requests before this step may still be arriving: start at this one's.
              const all = trace.lines.slice(from);
              const got = all.slice(all.indexOf("FlowCmd [action:set]"));
              // The request's lines (in the CLI's field order), then the target, then the reply.
              const created = got.indexOf(`Creating LB; ${tshm}-2`);
              assert.equal(got[0], "FlowCmd [action:set]");
              for (
                const l of [
                  "FlowCmd [name:udp2]",
                  "FlowCmd [protocols:udp]",
                  "FlowCmd [dports:6000]",
                  `FlowCmd [target:${tshm}-2]`,
                  "FlowCmd [eoc:]",
                ]
              ) assert.ok(got.slice(0, created).includes(l), `${l} before the table is taken`);
              const events = got.filter((l) => /LB;|load-balancer|writeReply/.test(l));
              assert.deepEqual(events, [
                `Creating LB; ${tshm}-2`,
                "writeReply [OK]",
                `Found LB; ${tshm}-2 (2)`,
                "writeReply [OK]",
                "writeReply [OK]",
                `Delete load-balancer; ${tshm}-2`,
                "writeReply [OK]",
              ]);
            },
          );
        } finally {
          Deno.kill(trace.pid, "SIGTERM");
          await trace.finish();
          try {
            Deno.removeSync(`/dev/shm/${tshm}-2`);
          } catch {
            // not made
          }
        }
        const r = await daemon.stop();
        daemon = null;
        assert.equal(r.code, 0, r.stderr);
        for (const s of servers) await s.finish();
      });
    } finally {
      await (daemon as Daemon | null)?.kill();
      removeShmObjects(tshm, ftshm);
    }
  },
});
