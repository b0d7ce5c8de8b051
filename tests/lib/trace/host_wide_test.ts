/**
 * The host-wide notes of `loglevel` and `trace` (docs/COMPATIBILITY.md D61), and how a process's
 * `/proc/<pid>/maps` is read for the object.
 */
import assert from "node:assert/strict";
import { loglevelNote, traceNote } from "../../../lib/trace/host_wide.ts";
import { mapsPath, MAX_PIDS, traceShmUsers } from "../../../daemon/trace_shm_users.ts";

const SEP = "NFQLB_TRACE_SHM=nfqlb-trace.<suffix>, set for a daemon and its commands alike, " +
  "gives them one of their own";

Deno.test("loglevelNote: setting always says who takes the level; reading only when nobody does", () => {
  const users = [{ pid: 7, sameNetns: true }, { pid: 9, sameNetns: false }, {
    pid: 11,
    sameNetns: undefined,
  }];
  assert.equal(
    loglevelNote("nfqlb-trace", true, users),
    "nfqlb: the log level is host-wide: /dev/shm/nfqlb-trace is read by every nfqlb on this " +
      "host that maps it, in any network namespace; mapped now by pid 7 (this network " +
      "namespace), pid 9 (another network namespace), pid 11 (network namespace unknown); " + SEP,
  );
  assert.equal(loglevelNote("nfqlb-trace", false, users), undefined);
  assert.match(loglevelNote("nfqlb-trace", false, [])!, /^nfqlb: no running process maps /);
});

Deno.test("traceNote: only processes outside this network namespace are worth a note", () => {
  assert.equal(traceNote("nfqlb-trace", [{ pid: 7, sameNetns: true }]), undefined);
  assert.equal(traceNote("nfqlb-trace", []), undefined);
  assert.equal(
    traceNote("nfqlb-trace.x", [{ pid: 7, sameNetns: true }, { pid: 9, sameNetns: false }]),
    "nfqlb: the trace mask is host-wide: /dev/shm/nfqlb-trace.x is read by every nfqlb on this " +
      "host that maps it, in any network namespace; pid 9 (another network namespace) trace " +
      "with this mask too (to their own trace client, or to their stderr if none ever " +
      "attached) until this trace ends; " + SEP,
  );
});

Deno.test("mapsPath: the exact path, not a longer name nor a deleted object", () => {
  const maps = "7f00-7f01 rw-s 00000000 00:1a 123 /dev/shm/nfqlb-trace.tests\n" +
    "7f02-7f03 rw-s 00000000 00:1a 124 /dev/shm/nfqlb-trace (deleted)\n";
  assert.equal(mapsPath(maps, "/dev/shm/nfqlb-trace.tests"), true);
  assert.equal(mapsPath(maps, "/dev/shm/nfqlb-trace"), false);
  assert.equal(
    mapsPath(maps + "7f04-7f05 rw-s 0 00:1a 125 /dev/shm/nfqlb-trace", "/dev/shm/nfqlb-trace"),
    true,
  );
});

Deno.test("notes: processes whose maps could not be read are counted, not taken for none", () => {
  const why = "another user's, or not dumpable, e.g. a daemon with file capabilities";
  assert.equal(
    loglevelNote("nfqlb-trace", true, [], 3),
    "nfqlb: no process this command could inspect maps /dev/shm/nfqlb-trace, but 3 processes " +
      `could not be inspected (${why}): a daemon among them may take this level now; a daemon ` +
      "started with NFQLB_TRACE_SHM set uses that object: set the same for this command",
  );
  assert.match(
    loglevelNote("nfqlb-trace", false, [], 1)!,
    /but 1 process could not be inspected \(.*\): a daemon among them may log at this level;/,
  );
  assert.equal(
    loglevelNote("nfqlb-trace", true, [{ pid: 7, sameNetns: true }], 2),
    "nfqlb: the log level is host-wide: /dev/shm/nfqlb-trace is read by every nfqlb on this " +
      "host that maps it, in any network namespace; mapped now by pid 7 (this network " +
      `namespace); 2 processes could not be inspected (${why}); ` + SEP,
  );
  assert.match(
    traceNote("nfqlb-trace", [{ pid: 9, sameNetns: false }], 4)!,
    /until this trace ends; 4 processes could not be inspected \(/,
  );
});

Deno.test("traceShmUsers: nothing maps a fresh name; the uninspected count is bounded", () => {
  const scan = traceShmUsers(`nfqlb-trace.none-${Deno.pid}`);
  assert.deepEqual(scan.users, []);
  assert.ok(scan.uninspected >= 0);
  const pids = [...Deno.readDirSync("/proc")].filter((e) => /^\d+$/.test(e.name)).length;
  assert.ok(scan.uninspected <= pids + 16, "at most the processes there are (some may start)");
  assert.ok(MAX_PIDS >= 4096);
});
