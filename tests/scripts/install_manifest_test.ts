/**
 * The install manifest (scripts/install_manifest.ts): what uninstall removes is read back as
 * written, and a line that could point outside the prefix is refused, never acted on.
 */
import assert from "node:assert/strict";
import { formatManifest, parseManifest } from "../../scripts/install_manifest.ts";

Deno.test("install manifest: entries round-trip, duplicates once, comments skipped", () => {
  const entries = [
    { kind: "dir", path: "." },
    { kind: "dir", path: "lib/nfqlb" },
    { kind: "file", path: "lib/nfqlb/deno" },
    { kind: "dir", path: "lib/nfqlb" },
    { kind: "link", path: "bin/nfqlb" },
  ] as const;
  const text = formatManifest(entries);
  assert.match(text, /^# /);
  assert.deepEqual(parseManifest(text), [entries[0], entries[1], entries[2], entries[4]]);
});

Deno.test("install manifest: paths outside the prefix are refused", () => {
  for (
    const line of [
      "file /etc/passwd",
      "file ../x",
      "file lib/../../x",
      "link .",
      "file lib//x",
      "dir ",
      "remove bin/nfqlb",
      // Inside the prefix but not nfqlb's: a stale or edited manifest must not remove them.
      "file bin/ip",
      "link bin/deno",
      "file etc/passwd",
      "file lib/libc.so.6",
      "file lib/nfqlb/sub/x",
    ]
  ) {
    assert.throws(() => parseManifest(`link bin/nfqlb\n${line}\n`), /line 2 is not an entry/, line);
  }
});

Deno.test("install manifest: nfqlb's own files and links are entries", () => {
  const text = "link bin/nfqlb\nfile lib/nfqlb/nfqlb\nfile share/doc/nfqlb/README.md\ndir bin\n";
  assert.equal(parseManifest(text).length, 4);
});
