/**
 * Test helper: private network namespaces, veth pairs between them and
 * commands run inside them (`ip netns exec`). Everything a {@link TestNet}
 * creates is named `nfqlbt-<pid>-<token>-...` and removed by
 * {@link TestNet.cleanup} (also namespaces with that prefix it did not record,
 * e.g. after a half-failed command). Leftovers of earlier runs whose process
 * no longer exists are removed when a new TestNet is created.
 *
 * Nothing is created in the host namespace: veth pairs are created inside a
 * test namespace with the peer placed directly in the other one.
 *
 * @example
 * ```ts
 * await withTestNet(async (net) => {
 *   const a = await net.addNs("a");
 *   const b = await net.addNs("b");
 *   await net.veth(a, "veth0", b, "veth0");
 *   await net.run(a, ["ip", "addr", "add", "10.9.0.1/24", "dev", "veth0"]);
 * });
 * ```
 * @module
 */
import "./trace_shm.ts"; // the namespaces' daemons get a trace object of their own
import { type CommandResult, exec } from "../cli/exec.ts";

/** Run a command to completion and capture its output (never throws on exit status). */
export { type CommandResult, exec };

/** Prefix of every namespace made by this helper. */
export const NETNS_PREFIX = "nfqlbt-";

/** Whether the test process runs as root (needed for namespaces and NFQUEUE). */
export function isRoot(): boolean {
  return Deno.uid() === 0;
}

/** Whether `cmd` is found on PATH (checked with `command -v` in sh). */
export async function hasCommand(cmd: string): Promise<boolean> {
  const r = await new Deno.Command("sh", {
    args: ["-c", `command -v ${cmd}`],
    stdout: "null",
    stderr: "null",
  }).output();
  return r.success;
}

/** Run a command; throw with its stderr if it fails. Returns stdout. */
export async function run(cmd: string[]): Promise<string> {
  const r = await exec(cmd);
  if (r.code !== 0) {
    throw new Error(`${cmd.join(" ")} failed (${r.code}): ${r.stderr.trim()}`);
  }
  return r.stdout;
}

/** Names of all network namespaces (`ip netns list`). */
export async function listNetns(): Promise<string[]> {
  const out = await run(["ip", "netns", "list"]);
  return out.split("\n").map((l) => l.trim().split(/\s+/)[0]).filter((n) => n !== "");
}

function processAlive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/**
 * Delete namespaces left behind by earlier test runs: those named
 * `nfqlbt-<pid>-...` whose process `<pid>` no longer exists. Returns their names.
 */
export async function removeStaleNetns(): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await listNetns()) {
    const m = /^nfqlbt-(\d+)-/.exec(name);
    if (m === null || processAlive(Number(m[1]))) continue;
    await exec(["ip", "netns", "del", name]);
    removed.push(name);
  }
  return removed;
}

/** A set of test namespaces with a unique name prefix. */
export class TestNet {
  /** Unique prefix of this instance's namespaces: `nfqlbt-<pid>-<token>-`. */
  readonly prefix: string;
  private readonly namespaces: string[] = [];
  private readonly children = new Set<Deno.ChildProcess>();

  private constructor(prefix: string) {
    this.prefix = prefix;
  }

  /** Remove stale leftovers, then return a new, empty TestNet. */
  static async create(): Promise<TestNet> {
    await removeStaleNetns();
    const token = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
    return new TestNet(`${NETNS_PREFIX}${Deno.pid}-${token}-`);
  }

  /** Create namespace `<prefix><short>` with loopback up; returns its full name. */
  async addNs(short: string): Promise<string> {
    const name = this.prefix + short;
    this.namespaces.push(name);
    await run(["ip", "netns", "add", name]);
    await run(["ip", "-n", name, "link", "set", "lo", "up"]);
    return name;
  }

  /**
   * Create a veth pair `ifA` (in `nsA`) <-> `ifB` (in `nsB`), both up. The
   * pair is created inside `nsA`, so nothing appears in the host namespace.
   */
  async veth(nsA: string, ifA: string, nsB: string, ifB: string): Promise<void> {
    await run([
      "ip",
      "-n",
      nsA,
      "link",
      "add",
      ifA,
      "type",
      "veth",
      "peer",
      "name",
      ifB,
      "netns",
      nsB,
    ]);
    await run(["ip", "-n", nsA, "link", "set", ifA, "up"]);
    await run(["ip", "-n", nsB, "link", "set", ifB, "up"]);
  }

  /** Run `cmd` inside `ns` to completion (never throws on exit status). */
  exec(ns: string, cmd: string[], stdin?: string): Promise<CommandResult> {
    return exec(["ip", "netns", "exec", ns, ...cmd], stdin);
  }

  /** Run `cmd` inside `ns`; throw if it fails. Returns stdout. */
  run(ns: string, cmd: string[]): Promise<string> {
    return run(["ip", "netns", "exec", ns, ...cmd]);
  }

  /**
   * Start `cmd` inside `ns` with piped stdin/stdout/stderr. The process is
   * killed by {@link TestNet.cleanup} if it is still running then.
   */
  spawn(ns: string, cmd: string[]): Deno.ChildProcess {
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", ns, ...cmd],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.children.add(child);
    child.status.finally(() => this.children.delete(child));
    return child;
  }

  /**
   * Kill the processes started with {@link TestNet.spawn} that are still
   * running and delete every namespace with this prefix. Safe to call twice.
   */
  async cleanup(): Promise<void> {
    for (const child of [...this.children]) {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
      await child.status.catch(() => undefined);
      await Promise.allSettled([
        child.stdout.cancel().catch(() => undefined),
        child.stderr.cancel().catch(() => undefined),
        child.stdin.close().catch(() => undefined),
      ]);
    }
    this.children.clear();
    const names = new Set(this.namespaces);
    for (const n of await listNetns().catch(() => [])) {
      if (n.startsWith(this.prefix)) names.add(n);
    }
    for (const n of names) await exec(["ip", "netns", "del", n]);
    this.namespaces.length = 0;
  }
}

/** Create a {@link TestNet}, run `fn` with it, and clean up in `finally`. */
export async function withTestNet<T>(fn: (net: TestNet) => Promise<T>): Promise<T> {
  const net = await TestNet.create();
  try {
    return await fn(net);
  } finally {
    await net.cleanup();
  }
}
