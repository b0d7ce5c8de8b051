/**
 * The packaging files (packaging/): the systemd unit's command line is a valid flowlb invocation
 * for this CLI (its options parse) of the installed command (`./dev install`), it keeps only
 * CAP_NET_ADMIN, and the container recipe runs an installed tree as an unprivileged uid.
 */
import assert from "node:assert/strict";
import { daemonConfig } from "../../daemon/options.ts";

const dir = new URL("../../packaging/", import.meta.url);

Deno.test("systemd unit: flowlb options that parse, only CAP_NET_ADMIN, not root", () => {
  const unit = Deno.readTextFileSync(new URL("nfqlb-flowlb.service", dir));
  const exec = /^ExecStart=(.*)$/m.exec(unit)![1].split(" ");
  const args = exec.slice(exec.indexOf("flowlb") + 1);
  const opts = new Map(args.map((a) => {
    const m = /^--([^=]+)(?:=(.*))?$/.exec(a)!;
    return [m[1], m[2] ?? ""] as [string, string];
  }));
  const c = daemonConfig(opts);
  assert.deepEqual([c.queueFirst, c.queueLast, c.qlength, c.promiscuousPing], [0, 3, 1024, true]);
  assert.equal(c.metrics?.port, 9190, "not 9100: node_exporter's default");
  assert.equal(exec[0], "/usr/local/bin/nfqlb", "installed, by its absolute path (systemd's PATH)");
  assert.equal(exec[1], "flowlb");
  assert.match(unit, /^AmbientCapabilities=CAP_NET_ADMIN$/m);
  assert.match(unit, /^CapabilityBoundingSet=CAP_NET_ADMIN$/m);
  assert.match(unit, /^User=nfqlb$/m);
  assert.match(unit, /^ProtectSystem=strict$/m);
});

Deno.test("container recipe: an installed tree, uid 65534, no npm, a writable Deno cache", () => {
  const c = Deno.readTextFileSync(new URL("Containerfile", dir));
  assert.match(c, /\.\/dev install --prefix="\$PWD\/dist\/prefix"/, "says how to make the tree");
  assert.match(c, /^COPY dist\/prefix\/ \/usr\/local\/$/m);
  assert.match(c, /^ENTRYPOINT \["\/usr\/local\/bin\/nfqlb"\]$/m);
  assert.match(c, /^USER 65534:65534$/m);
  assert.doesNotMatch(c, /npm/, "the tree brings its own Deno");
  assert.match(c, /^ENV DENO_DIR=\/tmp\/deno/m);
});

Deno.test("systemd unit: systemd-analyze verify finds nothing (where systemd is installed)", async () => {
  let r;
  try {
    r = await new Deno.Command("systemd-analyze", {
      args: ["verify", new URL("nfqlb-flowlb.service", dir).pathname],
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch {
    console.warn("packaging_test: no systemd-analyze: unit not verified");
    return;
  }
  // The unit names /usr/local/bin/nfqlb, where ./dev install puts it; this machine may not have it.
  const text = (new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr))
    .split("\n").filter((l) =>
      l.trim() !== "" && !/\/usr\/local\/bin\/nfqlb is not executable/.test(l)
    );
  assert.deepEqual(text, [], "no other complaint");
});
