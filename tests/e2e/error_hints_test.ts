/**
 * The errors of a control session say the cause and the fix after 1.2.0's line (issue 19,
 * docs/COMPATIBILITY.md D63, D65), as root with a real `flowlb` in a private network namespace:
 * a flow-set whose table is missing (stdout 1.2.0's `FAIL: Couldn't create load-balancer`,
 * stderr the table, errno and `nfqlb init`, and the daemon logs it), a malformed port range and
 * protocol (refused with the bad value), a flow-delete of nothing (`OK`, exit 0, a warning), a
 * client in a namespace without flowlb (`Connect failed. Connection refused` and where it
 * tried), and a second flowlb in the same namespace (`Flow server bind: Address already in
 * use` and the pid that holds the address).
 */
import assert from "node:assert/strict";
import { removeShm, tempShmName } from "../../testkit/cli.ts";
import { isRoot, withTestNet } from "../../testkit/netns.ts";
import { flowlbIn, nfqlbIn } from "../../testkit/control_load.ts";
import { PORTS_ACCEPTED, PROTOCOLS_ACCEPTED } from "../../lib/hints/accepted.ts";

const ROOT = isRoot();
if (!ROOT) console.warn("error_hints_test: not running as root: test skipped");

/** This file's fragment statistics objects (not the default `ftshm`), removed at exit. */
const FTSHM = tempShmName("hint-ft");
const FTSHM2 = tempShmName("hint-ft2");
globalThis.addEventListener("unload", () => [FTSHM, FTSHM2].forEach(removeShm));

Deno.test({
  name:
    "control errors: 1.2.0's line, then the cause and the fix; flowlb logs a missing table (root)",
  ignore: !ROOT,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const shm = tempShmName("hint-t");
    const missing = tempShmName("hint-missing");
    await withTestNet(async (net) => {
      const ns = await net.addNs("hint");
      const empty = await net.addNs("hint-empty");
      const init = await nfqlbIn(net, ns, "init", `--shm=${shm}`, "--M=997", "--N=8");
      assert.equal(init.code, 0, init.stderr);
      const lb = flowlbIn(net, ns, [`--ft_shm=${FTSHM}`]);
      let stopped = false;
      try {
        await lb.waitLine(/^queue_length=/);

        const noTable = await nfqlbIn(net, ns, "flow-set", "--name=f", `--target=${missing}`);
        const cause = `table [${missing}]: /dev/shm/${missing}: No such file or directory; ` +
          `create it with: nfqlb init --shm=${missing} [--M=997 --N=32]`;
        assert.deepEqual(noTable, {
          code: 255,
          stdout: "FAIL: Couldn't create load-balancer\n",
          stderr: `flow-set: ${cause}\n`,
        });

        const badPorts = await nfqlbIn(
          net,
          ns,
          "flow-set",
          "--name=f",
          `--target=${shm}`,
          "--protocols=tcp",
          "--dports=80-",
        );
        assert.deepEqual(badPorts, {
          code: 255,
          stdout: "Invalid dports\n",
          stderr: `flow-set: dports [80-]: ${PORTS_ACCEPTED}\n`,
        });
        const badProto = await nfqlbIn(
          net,
          ns,
          "flow-set",
          "--name=f",
          `--target=${shm}`,
          "--protocols=tcpp",
        );
        assert.deepEqual(badProto, {
          code: 255,
          stdout: "Invalid protocols\n",
          stderr: `flow-set: protocols [tcpp]: ${PROTOCOLS_ACCEPTED}\n`,
        });

        // A flow that exists is deleted silently; one that does not: OK, exit 0, a warning.
        const set = await nfqlbIn(net, ns, "flow-set", "--name=f", `--target=${shm}`);
        assert.deepEqual(set, { code: 0, stdout: "OK\n", stderr: "" });
        const del = await nfqlbIn(net, ns, "flow-delete", "--name=f");
        assert.deepEqual(del, { code: 0, stdout: "OK\n", stderr: "" });
        const again = await nfqlbIn(net, ns, "flow-delete", "--name=f");
        assert.deepEqual(again, {
          code: 0,
          stdout: "OK\n",
          stderr: "flow-delete: no flow named [f]; nothing deleted\n",
        });

        // No flowlb in this namespace: where the client tried, and what to do.
        const none = await nfqlbIn(net, empty, "flow-list");
        assert.equal(none.code, 1);
        assert.equal(none.stdout, "");
        const [first, hint, ...rest] = none.stderr.split("\n");
        assert.equal(first, "Connect failed. Connection refused");
        assert.match(
          hint,
          new RegExp(
            `^ {2}no flowlb answers on unix:nfqlb \\(NFQLB_FLOW_ADDRESS\\), the abstract unix ` +
              `socket @nfqlb of network namespace ${empty} \\(net:\\[[0-9]+\\]\\); start nfqlb ` +
              "flowlb in this network namespace",
          ),
        );
        assert.deepEqual(rest, [""]);

        // A second flowlb here: the address in use, and the pid of the first one.
        const second = flowlbIn(net, ns, [`--ft_shm=${FTSHM2}`, "--queue=1"]);
        const end2 = await second.finish();
        assert.equal(end2.code, 1, end2.stderr);
        const lines = end2.stderr.split("\n");
        const at = lines.indexOf("Flow server bind: Address already in use");
        assert.ok(at >= 0, end2.stderr);
        assert.match(
          lines[at + 1],
          new RegExp(
            `^ {2}unix:nfqlb \\(NFQLB_FLOW_ADDRESS\\), the abstract unix socket @nfqlb of ` +
              `network namespace ${ns} \\(net:\\[[0-9]+\\]\\) is held by pid ${lb.pid} \\(`,
          ),
        );

        Deno.kill(lb.pid, "SIGTERM");
        stopped = true;
        const end = await lb.finish();
        assert.equal(end.code, 0, end.stderr);
        // The daemon said it too (rate-limited log, level warning).
        assert.ok(end.stderr.includes(`flowlb: control: flow-set: ${cause}`), end.stderr);
      } finally {
        if (!stopped) {
          Deno.kill(lb.pid, "SIGTERM");
          await lb.finish();
        }
        removeShm(shm);
      }
    });
  },
});
