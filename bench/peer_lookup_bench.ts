/**
 * Who owns the other end of a loopback TCP connection (daemon/peer_identity.ts): one exact
 * NETLINK_SOCK_DIAG lookup against a read and scan of /proc/net/tcp, the way the control and
 * trace servers did it before. Run as root; `--tw=N` first leaves N time-wait sockets on
 * loopback (what any local user can do for free), which the /proc scan walks and sock_diag
 * does not:
 *
 *   ./dev deno bench --allow-all bench/peer_lookup_bench.ts -- --tw=20000
 */
import { SockDiag } from "../ffi/sock_diag.ts";
import { liveOwner } from "../lib/ccompat/inet_diag.ts";
import { procNetTcpUid } from "../lib/ccompat/proc_net_tcp.ts";

const tw = Number(Deno.args.find((a) => a.startsWith("--tw="))?.slice(5) ?? 0);
const LO = new Uint8Array([127, 0, 0, 1]);
const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const port = (l.addr as Deno.NetAddr).port;
// Time-wait sockets: the client closes first, so its end waits (60 s) after the connection.
for (let i = 0; i < tw; i++) {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  const s = await l.accept();
  c.close();
  s.close();
}
const client = await Deno.connect({ hostname: "127.0.0.1", port });
const server = await l.accept();
const peer = { addr: LO, port: (client.localAddr as Deno.NetAddr).port };
const us = { addr: LO, port };
const diag = SockDiag.open();

Deno.bench(
  `sock_diag exact lookup (${tw} time-wait sockets)`,
  { group: "peer", baseline: true },
  () => {
    if (liveOwner(diag.lookup(peer, us), peer, us) !== 0) throw new Error("not found");
  },
);
Deno.bench(`/proc/net/tcp read and scan (${tw} time-wait sockets)`, { group: "peer" }, () => {
  if (procNetTcpUid(Deno.readTextFileSync("/proc/net/tcp"), peer, us) !== 0) {
    throw new Error("not found");
  }
});

globalThis.addEventListener("unload", () => {
  diag.close();
  client.close();
  server.close();
  l.close();
});
