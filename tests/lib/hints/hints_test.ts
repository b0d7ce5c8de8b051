/** The cause-and-fix texts of lib/hints/ (docs/COMPATIBILITY.md#differences D63). */
import assert from "node:assert/strict";
import { editDistance, nearestName } from "../../../lib/hints/nearest.ts";
import { statsMapHint, tableMapHint } from "../../../lib/hints/shm.ts";
import { QUEUE_ACCEPTED, queueInvalid } from "../../../lib/hints/accepted.ts";
import {
  bindInUseHint,
  connectHint,
  traceConnectHint,
  untrustedServerHint,
} from "../../../lib/hints/sockets.ts";
import { listeningUnixInodes } from "../../../lib/ccompat/proc_net_unix.ts";

const FLOWLB = ["help", "lbshm", "mtu", "promiscuous_ping", "ft_shm", "fastpath-table", "queue"];

Deno.test("nearestName: - and _ are the same, small typos forgiven, far names not suggested", () => {
  assert.equal(nearestName("promiscuous-ping", FLOWLB), "promiscuous_ping");
  assert.equal(nearestName("fastpath_table", FLOWLB), "fastpath-table");
  assert.equal(nearestName("FT-SHM", FLOWLB), "ft_shm");
  assert.equal(nearestName("qeueu", FLOWLB), "queue");
  assert.equal(nearestName("promisc", FLOWLB), "promiscuous_ping");
  assert.equal(nearestName("mtx", FLOWLB), "mtu");
  assert.equal(nearestName("bogus", FLOWLB), undefined);
  assert.equal(nearestName("x", FLOWLB), undefined);
  assert.equal(nearestName("", FLOWLB), undefined);
  assert.equal(editDistance("abc", "acb"), 1);
  assert.equal(editDistance("kitten", "sitting"), 3);
});

Deno.test("tableMapHint: errno text, then the fix for the option that named the table", () => {
  assert.equal(
    tableMapHint("t", 2, "No such file or directory", "shm"),
    "  /dev/shm/t: No such file or directory; create it with: nfqlb init --shm=t [--M=997 --N=32]",
  );
  assert.equal(
    tableMapHint("t", 13, "Permission denied", "shm"),
    "  /dev/shm/t: Permission denied; check its owner and mode (ls -l /dev/shm/t): run as root " +
      "or as its owner",
  );
  assert.equal(
    tableMapHint("t", 22, "Invalid argument", "tshm"),
    "  /dev/shm/t: Invalid argument: the object is empty (0 bytes), not initialised; initialise " +
      "it with: nfqlb init --shm=t [--M=997 --N=32], or name the table lb should use with " +
      "--tshm=NAME",
  );
  assert.match(tableMapHint("t", 2, "x", "lbshm"), /nfqlb init --shm=t --ownfw=FWMARK/);
  assert.match(statsMapHint("ftshm", 2, "No such file or directory"), /no lb or flowlb/);
  assert.match(statsMapHint("ftshm", 13, "Permission denied"), /run as root or as its owner$/);
});

Deno.test("queueInvalid: 1.2.0's line, then the accepted forms", () => {
  assert.equal(queueInvalid("a"), `queue invalid [a]\n  ${QUEUE_ACCEPTED}`);
});

Deno.test("socket hints: the address, its namespace, and who holds it", () => {
  const ctx = { text: "unix:nfqlb", fromEnv: false, netns: "lb (net:[1])" };
  assert.match(
    connectHint(ctx),
    /^ {2}no flowlb answers on unix:nfqlb, the abstract unix socket @nfqlb of network namespace lb \(net:\[1\]\); start nfqlb flowlb/,
  );
  assert.equal(
    connectHint({ ...ctx, text: "tcp:127.0.0.1:7", fromEnv: true }, false),
    "  the address: tcp:127.0.0.1:7 (NFQLB_FLOW_ADDRESS) in network namespace lb (net:[1])",
  );
  assert.match(bindInUseHint(ctx, [{ pid: 42, comm: "deno" }]), /is held by pid 42 \(deno\):/);
  assert.match(bindInUseHint(ctx, []), /find it with: ss -xlp \| grep '@nfqlb '/);
});

Deno.test("listeningUnixInodes: listening sockets on an abstract name only", () => {
  const text = "Num       RefCount Protocol Flags    Type St Inode Path\n" +
    "0000000000000000: 00000002 00000000 00010000 0001 01 11 @nfqlb\n" +
    "0000000000000000: 00000003 00000000 00000000 0001 03 12 @nfqlb\n" +
    "0000000000000000: 00000002 00000000 00010000 0001 01 13 @nfqlb-trace\n" +
    "0000000000000000: 00000002 00000000 00010000 0001 01 14 /run/nfqlb\n";
  assert.deepEqual(listeningUnixInodes(text, "nfqlb"), [11]);
  assert.deepEqual(listeningUnixInodes(text, "nfqlb-trace"), [13]);
  assert.deepEqual(listeningUnixInodes(text, "none"), []);
});

Deno.test("trace connect and an untrusted control server: the fix, in full", () => {
  assert.equal(
    traceConnectHint("unix:nfqlb-trace", "lb (net:[1])", true),
    "  no lb or flowlb serves traces on unix:nfqlb-trace, the abstract unix socket " +
      "@nfqlb-trace of network namespace lb (net:[1]); start one in this network namespace, " +
      "run the command in the daemon's (ip netns exec NS nfqlb trace ...), or give the " +
      "daemon's address with --trace_address=ADDR",
  );
  assert.equal(
    traceConnectHint("tcp:127.0.0.1:1", "net:[1]", false),
    "  the address: tcp:127.0.0.1:1 in network namespace net:[1]",
  );
  assert.equal(
    untrustedServerHint(65534, "nobody"),
    "  if it is the flowlb you meant (it runs as uid 65534 (nobody)), run the command as that " +
      "user: sudo -u nobody nfqlb ..., or setpriv --reuid=65534 nfqlb ...; if not, another " +
      "program holds the address",
  );
  assert.equal(
    untrustedServerHint(4242),
    "  if it is the flowlb you meant (it runs as uid 4242), run the command as that user: " +
      "sudo -u '#4242' nfqlb ..., or setpriv --reuid=4242 nfqlb ...; if not, another program " +
      "holds the address",
  );
});
