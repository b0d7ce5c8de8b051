/**
 * ffi/tun.ts and the daemons' `--tun` start-up (docs/COMPATIBILITY.md#fragments, tun), as root in a
 * namespace the test creates: each unusable device gets 1.2.0's message with the reason and the fix,
 * exit 1 before any queue is bound; a good device is attached and a written packet is received by
 * the stack (it shows in the device's receive counter).
 */
import assert from "node:assert/strict";
import { TunError } from "../../ffi/tun.ts";
import { isRoot, withTestNet } from "../../testkit/netns.ts";
import { removeShm, tempShmName } from "../../testkit/cli.ts";

const ROOT = isRoot();
const DENO = Deno.execPath();
const CLI = new URL("../../cli.ts", import.meta.url).pathname;

/** A program that opens `--tun` in the namespace and prints the outcome (FFI runs in-process). */
const OPEN = `
import { TunDevice } from "${new URL("../../ffi/tun.ts", import.meta.url).pathname}";
try {
  const t = TunDevice.open(Deno.args[0], Number(Deno.args[1]));
  const pkt = new Uint8Array([0x45,0,0,28,0,1,0,0,64,17,0,0,10,9,9,1,10,9,9,2,0,1,0,2,0,8,0,0]);
  console.log("opened", t.mtu, t.write(pkt, pkt.length));
  t.close();
} catch (e) { console.log(String(e)); }
`;

Deno.test({
  name: "tun: missing, down, too small, tap, bad name; a good device takes a packet (needs root)",
  ignore: !ROOT,
  async fn() {
    await withTestNet(async (net) => {
      const ns = await net.addNs("tun");
      const open = async (dev: string, mtu = 1500) =>
        (await net.run(ns, [DENO, "eval", "--quiet", OPEN, dev, String(mtu)])).trim();
      assert.match(
        await open("nfqt0"),
        /^TunError: Failed to open tun device \[nfqt0\]: no such device in this network namespace; create it with `ip tuntap add nfqt0 mode tun` and `ip link set nfqt0 up`$/,
      );
      await net.run(ns, ["ip", "tuntap", "add", "nfqt0", "mode", "tun"]);
      assert.match(await open("nfqt0"), /the device is down; set it up: `ip link set nfqt0 up`$/);
      await net.run(ns, ["ip", "link", "set", "nfqt0", "up"]);
      await net.run(ns, ["ip", "link", "set", "nfqt0", "mtu", "1400"]);
      assert.equal(await open("nfqt0"), "TunError: Tun mtu too small; 1400 < 1500");
      assert.equal(await open("nfqt0", 1400), "opened 1400 28");
      const rx = await net.run(ns, ["cat", "/sys/class/net/nfqt0/statistics/rx_packets"]);
      assert.equal(rx.trim(), "1", "the written packet entered the stack through the device");
      await net.run(ns, ["ip", "tuntap", "add", "nfqtap0", "mode", "tap"]);
      await net.run(ns, ["ip", "link", "set", "nfqtap0", "up"]);
      assert.match(
        await open("nfqtap0"),
        /TUNSETIFF: Invalid argument; it is a tap device or a multi-queue tun device/,
      );
      assert.match(await open("a-name-much-too-long"), /a device name has 1 to 15 bytes/);

      // The daemons fail at start-up with the same line, exit 1, before binding a queue.
      const tshm = tempShmName("tun");
      const ftshm = tempShmName("tunft");
      try {
        await net.run(ns, [DENO, "run", "-A", CLI, "init", `--shm=${tshm}`, "--M=97", "--N=4"]);
        for (const cmd of ["lb", "flowlb"]) {
          const r = await net.exec(ns, [
            "env",
            "NFQLB_FLOW_ADDRESS=unix:nfqlb-tun-test",
            DENO,
            "run",
            "-A",
            CLI,
            cmd,
            ...(cmd === "lb" ? [`--tshm=${tshm}`] : []),
            `--ft_shm=${ftshm}`,
            "--tun=nfqt9",
            "--queue=9",
          ]);
          assert.equal(r.code, 1, `${cmd}: ${r.stdout}${r.stderr}`);
          assert.match(r.stderr, /^Failed to open tun device \[nfqt9\]: no such device/);
          assert.doesNotMatch(r.stdout, /queue_length=/);
        }
      } finally {
        removeShm(tshm);
        removeShm(ftshm);
      }
    });
  },
});

Deno.test("tun: TunError carries the device and the reason", () => {
  const e = new TunError("x0", "why");
  assert.equal(e.message, "Failed to open tun device [x0]: why");
  assert.equal(e.device, "x0");
  assert.equal(e.reason, "why");
  assert.equal(
    new TunError("x0", "mtu", "Tun mtu too small; 1 < 2").message,
    "Tun mtu too small; 1 < 2",
  );
});
