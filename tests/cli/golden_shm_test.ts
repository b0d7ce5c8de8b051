/**
 * Every golden shared-memory object written by nfqlb 1.2.0 (tests/testdata/shm,
 * MANIFEST) is reproduced byte for byte by running the same commands through
 * our CLI; fwmark answers agree with every line of golden fwmark.jsonl.
 */
import assert from "node:assert/strict";
import { readShm, removeShm, runCli, tempShmName } from "../../testkit/cli.ts";

const SHM_DIR = new URL("../testdata/shm/", import.meta.url);

function manifest(): [string, string[][]][] {
  const text = Deno.readTextFileSync(new URL("MANIFEST", SHM_DIR));
  return text.trim().split("\n").map((line) => {
    const [file, commands] = line.split(": ");
    return [file, commands.split("; ").map((c) => c.trim().split(/\s+/))];
  });
}

for (const [file, commands] of manifest()) {
  Deno.test(`golden shm ${file}: ${commands.map((c) => c.join(" ")).join("; ")}`, async () => {
    const name = tempShmName(file);
    try {
      for (const argv of commands) {
        const r = await runCli(...argv, `--shm=${name}`);
        assert.equal(r.code, 0, `${argv.join(" ")}: ${r.err}`);
        assert.equal(r.err, "");
      }
      const want = Deno.readFileSync(new URL(`${file}.shm`, SHM_DIR));
      const got = readShm(name);
      assert.equal(got.length, want.length, "size");
      const firstDiff = got.findIndex((b, i) => b !== want[i]);
      assert.equal(firstDiff, -1, `first differing byte at offset ${firstDiff}`);
    } finally {
      removeShm(name);
    }
  });
}

Deno.test("golden shm m1000-adjusted prints the M adjustment", async () => {
  const name = tempShmName("adj");
  try {
    const r = await runCli("init", `--shm=${name}`, "--M=1000", "--N=10");
    assert.deepEqual(r, { code: 0, out: "M adjusted; 1000 -> 997\n", err: "" });
  } finally {
    removeShm(name);
  }
});

interface FwmarkVector {
  proto: string | null;
  src: string;
  dst: string;
  hash_mode: number;
  answer: { hash: number; lookupindex: number; activeindex: number; fwmark: number };
}

Deno.test("golden fwmark.jsonl: every answer of 1.2.0 against default-4", async () => {
  const name = tempShmName("fw");
  try {
    Deno.writeFileSync(`/dev/shm/${name}`, Deno.readFileSync(new URL("default-4.shm", SHM_DIR)));
    const lines = Deno.readTextFileSync(new URL("../testdata/fwmark.jsonl", import.meta.url))
      .trim().split("\n");
    assert.equal(lines.length, 400);
    for (const line of lines) {
      const v: FwmarkVector = JSON.parse(line);
      const args = ["fwmark", `--shm=${name}`, `--src=${v.src}`, `--dst=${v.dst}`];
      args.push(`--hash_mode=${v.hash_mode}`);
      if (v.proto !== null) args.push(`--proto=${v.proto}`);
      const r = await runCli(...args);
      assert.equal(r.code, 0, `${line}: ${r.err}`);
      const a = v.answer;
      assert.equal(
        r.out,
        `{ "hash": ${a.hash}, "lookupindex": ${a.lookupindex}, "activeindex": ${a.activeindex}, "fwmark": ${a.fwmark} }\n`,
        line,
      );
    }
  } finally {
    removeShm(name);
  }
});
