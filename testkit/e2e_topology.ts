/**
 * The end-to-end test topology shared by the `lb` and `flowlb` tests: a
 * client namespace, an LB namespace that forwards by fwmark (`ip rule fwmark
 * M table M`, one table per target), and four target namespaces that hold the
 * VIP on loopback and route back through the LB. Each test uses its own
 * address block so the two can never collide.
 * @module
 */
import type { TestNet } from "./netns.ts";

/** Addresses and names of one topology (block = the second IPv4 octet, e.g. 203). */
export class Addressing {
  readonly vip4: string;
  readonly vip6: string;
  /** The LB's addresses towards the client. */
  readonly lbCl4: string;
  readonly lbCl6: string;
  /** Client source addresses. */
  readonly cl4: string[];
  readonly cl6: string[];
  readonly targets = [1, 2, 3, 4];
  readonly #block: number;

  constructor(block: number, clients4 = 4, clients6 = 4) {
    this.#block = block;
    this.vip4 = `10.${block}.255.1`;
    this.vip6 = `fd00:${block}:ffff::1`;
    this.lbCl4 = `10.${block}.0.1`;
    this.lbCl6 = `fd00:${block}::1`;
    this.cl4 = Array.from({ length: clients4 }, (_, i) => `10.${block}.0.${i + 2}`);
    this.cl6 = Array.from({ length: clients6 }, (_, i) => `fd00:${block}::${i + 2}`);
  }

  /** Namespace tag of target `i`. */
  tName(i: number): string {
    return `t${i}`;
  }
  /** fwmark that routes to target `i`. */
  tMark(i: number): number {
    return 100 + i;
  }
  tAddr4(i: number): string {
    return `10.${this.#block}.${i}.2`;
  }
  tAddr6(i: number): string {
    return `fd00:${this.#block}:${i}::2`;
  }
  /** The LB's address on the link to target `i`. */
  lbAddr4(i: number): string {
    return `10.${this.#block}.${i}.1`;
  }
  lbAddr6(i: number): string {
    return `fd00:${this.#block}:${i}::1`;
  }
}

/** The namespaces of a built topology and helpers to run `ip`/`sysctl` in them. */
export interface Topology {
  readonly cl: string;
  readonly lb: string;
  /** Target number → namespace. */
  readonly targets: Map<number, string>;
  ip(ns: string, ...args: string[]): Promise<unknown>;
  sysctl(ns: string, ...kv: string[]): Promise<unknown>;
}

/** Create the namespaces, links, addresses and fwmark routing of `a` in `net`. */
export async function buildTopology(net: TestNet, a: Addressing): Promise<Topology> {
  const cl = await net.addNs("cl");
  const lb = await net.addNs("lb");
  const targets = new Map<number, string>();
  for (const i of a.targets) targets.set(i, await net.addNs(a.tName(i)));
  const all = [cl, lb, ...targets.values()];
  const sysctl = (ns: string, ...kv: string[]) =>
    net.run(ns, ["sysctl", "-q", ...kv.flatMap((x) => ["-w", x])]);
  // Before any interface exists, so every new one inherits "default".
  await Promise.all(all.map((ns) =>
    sysctl(
      ns,
      "net.ipv4.conf.all.rp_filter=0",
      "net.ipv4.conf.default.rp_filter=0",
      "net.ipv6.conf.all.accept_ra=0",
      "net.ipv6.conf.default.accept_ra=0",
      "net.ipv6.conf.all.accept_dad=0",
      "net.ipv6.conf.default.accept_dad=0",
    )
  ));
  await sysctl(lb, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1");

  const ip = (ns: string, ...args: string[]) => net.run(ns, ["ip", ...args]);
  await net.veth(cl, "veth0", lb, "vcl");
  await ip(lb, "addr", "add", `${a.lbCl4}/24`, "dev", "vcl");
  await ip(lb, "-6", "addr", "add", `${a.lbCl6}/64`, "dev", "vcl", "nodad");
  for (const c of a.cl4) await ip(cl, "addr", "add", `${c}/24`, "dev", "veth0");
  for (const c of a.cl6) await ip(cl, "-6", "addr", "add", `${c}/64`, "dev", "veth0", "nodad");
  await ip(cl, "route", "add", "default", "via", a.lbCl4);
  await ip(cl, "-6", "route", "add", "default", "via", a.lbCl6);
  for (const [i, ns] of targets) {
    const lbIf = `vt${i}`;
    await net.veth(lb, lbIf, ns, "veth0");
    await ip(lb, "addr", "add", `${a.lbAddr4(i)}/24`, "dev", lbIf);
    await ip(lb, "-6", "addr", "add", `${a.lbAddr6(i)}/64`, "dev", lbIf, "nodad");
    await ip(ns, "addr", "add", `${a.tAddr4(i)}/24`, "dev", "veth0");
    await ip(ns, "-6", "addr", "add", `${a.tAddr6(i)}/64`, "dev", "veth0", "nodad");
    await ip(ns, "addr", "add", `${a.vip4}/32`, "dev", "lo");
    await ip(ns, "-6", "addr", "add", `${a.vip6}/128`, "dev", "lo");
    await ip(ns, "route", "add", "default", "via", a.lbAddr4(i));
    await ip(ns, "-6", "route", "add", "default", "via", a.lbAddr6(i));
    const m = String(a.tMark(i));
    await ip(lb, "rule", "add", "fwmark", m, "table", m);
    await ip(lb, "-6", "rule", "add", "fwmark", m, "table", m);
    await ip(lb, "route", "add", "default", "via", a.tAddr4(i), "table", m);
    await ip(lb, "-6", "route", "add", "default", "via", a.tAddr6(i), "table", m);
  }
  return { cl, lb, targets, ip, sysctl };
}

/** One exchange reported by testkit/fixtures/e2e_client.ts. */
export interface ClientResult {
  proto: "tcp" | "udp";
  src: string;
  sport: number;
  /** Name of the target that answered, null if none did. */
  target: string | null;
  tries: number;
  error?: string;
}

/** A 5-tuple's identity in result maps: `proto/src/sport` (the VIP and port are fixed). */
export const tupleKey = (r: { proto: string; src: string; sport: number }): string =>
  `${r.proto}/${r.src}/${r.sport}`;
