/**
 * Start-up failures of `lb` and `flowlb` that happen before any NFQUEUE is
 * opened (so no root is needed): the daemon layer's typed errors reach
 * stderr as 1.2.0's one-line messages, exit 1.
 */
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
    [["--queue=3:2"], "queue invalid [3:2]\n"],
    [["--queue=x"], "queue invalid [x]\n"],
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
  const failed = (name: string) => ({ code: 1, out: "", err: `FAILED mapSharedData: ${name}\n` });
  try {
    assert.deepEqual(await runCli("lb", `--tshm=${missing}`, `--lbshm=${tshm}`), failed(missing));
    assert.equal((await runCli("init", `--shm=${tshm}`, "--M=7", "--N=1")).code, 0);
    assert.deepEqual(await runCli("lb", `--tshm=${tshm}`, `--lbshm=${missing}`), failed(missing));
    assert.deepEqual(await runCli("flowlb", `--lbshm=${missing}`), failed(missing));
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

Deno.test("flowlb: control address in use: the worker's failure as 'Flow server bind: ...'", async () => {
  const name = `nfqlb-test-${Deno.pid}-busy`;
  const ftShm = tempShmName("ft");
  const busy = Deno.listen({ transport: "unix", path: `\0${name}` });
  try {
    const r = await withFlowAddress(`unix:${name}`, () => runCli("flowlb", `--ft_shm=${ftShm}`));
    assert.deepEqual(r, {
      code: 1,
      out: "FragTable; size=500, buckets=500, frag=0, mtu=1500, ttl=200\n",
      err: "Flow server bind: Address already in use\n",
    });
  } finally {
    busy.close();
    removeShm(ftShm);
  }
});
