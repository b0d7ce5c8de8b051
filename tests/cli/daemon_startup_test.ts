/**
 * Start-up failures of `lb` and `flowlb` that happen before any NFQUEUE is
 * opened (so no root is needed): the daemon layer's typed errors reach
 * stderr as 1.2.0's one-line messages, exit 1.
 */
import { currentNetns } from "../../daemon/socket_holder.ts";
import { QUEUE_ACCEPTED } from "../../lib/hints/accepted.ts";
import assert from "node:assert/strict";
import { removeShm, runCli, tempShmName } from "../../testkit/cli.ts";

const FLOW_ADDRESS_ENV = "NFQLB_FLOW_ADDRESS";

/** Run `fn` with `NFQLB_FLOW_ADDRESS` set to `value`, then restore it. */
async function withFlowAddress<T>(value: string, fn: () => Promise<T>): Promise<T> {
  const saved = Deno.env.get(FLOW_ADDRESS_ENV);
  Deno.env.set(FLOW_ADDRESS_ENV, value);
  try {
    return await fn();
  } finally {
    if (saved === undefined) Deno.env.delete(FLOW_ADDRESS_ENV);
    else Deno.env.set(FLOW_ADDRESS_ENV, saved);
  }
}

Deno.test("lb/flowlb: option errors are 1.2.0's messages, exit 1, nothing on stdout", async () => {
  const cases: [string[], string][] = [
    [["--mtu=575"], "Invalid MTU; 575\n"],
    [["--mtu=abc"], "Invalid --mtu=abc; expected an integer in -2147483648..2147483647\n"],
    [["--mtu=65536"], "Invalid MTU; 65536 (at most 65535)\n"],
    [["--queue=3:2"], `queue invalid [3:2]\n  ${QUEUE_ACCEPTED}\n`],
    [["--queue=x"], `queue invalid [x]\n  ${QUEUE_ACCEPTED}\n`],
    [["--trace_address=udp:x"], "Failed to parse address [udp:x]\n"],
    [["--ft_size=0"], "Invalid --ft_size=0; expected an integer in 1..10000000\n"],
  ];
  for (const cmd of ["lb", "flowlb"]) {
    for (const [args, err] of cases) {
      const r = await runCli(cmd, ...args);
      assert.deepEqual(r, { code: 1, out: "", err }, `${cmd} ${args.join(" ")}`);
    }
  }
});

Deno.test("lb/flowlb: missing tables (--tshm, then --lbshm), an --ft_shm that cannot be created", async () => {
  const missing = tempShmName("missing");
  const tshm = tempShmName("tshm");
  // 1.2.0's line, then the errno text and the init that creates the table the option names.
  const failed = (name: string, fix: string) => ({
    code: 1,
    out: "",
    err: `FAILED mapSharedData: ${name}\n  /dev/shm/${name}: No such file or directory; ` +
      `create it with: nfqlb init --shm=${name} ${fix}\n`,
  });
  const tshmFix = "[--M=997 --N=32], or name the table lb should use with --tshm=NAME";
  const lbshmFix = "--ownfw=FWMARK [--M=997 --N=32]";
  try {
    assert.deepEqual(
      await runCli("lb", `--tshm=${missing}`, `--lbshm=${tshm}`),
      failed(missing, tshmFix),
    );
    assert.equal((await runCli("init", `--shm=${tshm}`, "--M=7", "--N=1")).code, 0);
    assert.deepEqual(
      await runCli("lb", `--tshm=${tshm}`, `--lbshm=${missing}`),
      failed(missing, lbshmFix),
    );
    assert.deepEqual(await runCli("flowlb", `--lbshm=${missing}`), failed(missing, lbshmFix));
    const createFailed = { code: 1, out: "", err: "createSharedData: Invalid argument\n" };
    assert.deepEqual(await runCli("lb", `--tshm=${tshm}`, "--ft_shm=a/b"), createFailed);
    assert.deepEqual(await runCli("flowlb", "--ft_shm=a/b"), createFailed);
  } finally {
    removeShm(tshm);
  }
});

Deno.test("flowlb: an invalid NFQLB_FLOW_ADDRESS, with a newline", async () => {
  const r = await withFlowAddress("udp:x", () => runCli("flowlb"));
  assert.deepEqual(r, { code: 1, out: "", err: "Failed to parse address [udp:x]\n" });
});

Deno.test("flowlb: control address in use: 'Flow server bind: ...', then who holds it", async () => {
  const name = `nfqlb-test-${Deno.pid}-busy`;
  const ftShm = tempShmName("ft");
  const busy = Deno.listen({ transport: "unix", path: `\0${name}` });
  try {
    const r = await withFlowAddress(`unix:${name}`, () => runCli("flowlb", `--ft_shm=${ftShm}`));
    assert.equal(r.code, 1);
    assert.equal(r.out, "FragTable; size=500, buckets=500, frag=0, mtu=1500, ttl=200\n");
    const netns = currentNetns(); // `net:[<inode>]`, with its ip netns names if it has some
    assert.match(netns, /net:\[[0-9]+\]/);
    const comm = Deno.readTextFileSync("/proc/self/comm").trim();
    // This process holds it (found through /proc/net/unix and /proc/<pid>/fd).
    assert.equal(
      r.err,
      "Flow server bind: Address already in use\n" +
        `  unix:${name} (NFQLB_FLOW_ADDRESS), the abstract unix socket @${name} of network ` +
        `namespace ${netns} is held by pid ${Deno.pid} (${comm}): another flowlb already runs ` +
        "in this network namespace; stop it, or give this one another address with " +
        "NFQLB_FLOW_ADDRESS (and its clients the same)\n",
    );
    assert.equal(r.err.split("\n").length, 3, r.err);
  } finally {
    busy.close();
    removeShm(ftShm);
  }
});

Deno.test("doctor, ruleset: 1.2.0's `queue invalid [<q>]`, then the accepted forms", async () => {
  for (const args of [["doctor", "--queue=a"], ["ruleset", "--vip=10.0.0.1", "--queue=3:1"]]) {
    const q = args[args.length - 1].slice("--queue=".length);
    assert.deepEqual(
      await runCli(...args),
      { code: 1, out: "", err: `queue invalid [${q}]\n  ${QUEUE_ACCEPTED}\n` },
      args.join(" "),
    );
  }
});
