/**
 * Trace mask names (SPEC 1.7), the trace ring between threads, and the
 * `trace` command's option errors.
 */
import assert from "node:assert/strict";
import { formatMask, selectionMask, TRACE_SELECTION } from "../../../lib/trace/mask.ts";
import { TraceRing } from "../../../lib/trace/ring.ts";
import { runCli } from "../../../testkit/cli.ts";

Deno.test("selection names OR their bits; unknown names add nothing (SPEC 1.7)", () => {
  assert.deepEqual(TRACE_SELECTION, {
    log: 0x01,
    packet: 0x02,
    frag: 0x04,
    "flow-conf": 0x08,
    sctp: 0x10,
    target: 0x20,
    flows: 0x40,
  });
  assert.equal(selectionMask("packet,frag,flows"), 0x46);
  assert.equal(selectionMask("log,bogus,,target"), 0x21);
  assert.equal(selectionMask("Packet"), 0, "names are case-sensitive");
  assert.equal(formatMask(0x46), "0x00000046");
  assert.equal(formatMask(0xffffffff), "0xffffffff");
});

function drainText(r: TraceRing): string {
  let s = "";
  r.drain((b) => s += new TextDecoder().decode(b));
  return s;
}

Deno.test("TraceRing: whole lines in order across the wrap-around, through two views of one buffer", () => {
  const buf = TraceRing.create(64);
  const producer = new TraceRing(buf);
  const consumer = new TraceRing(buf);
  assert.equal(producer.capacity, 64);
  let want = "";
  let got = "";
  for (let i = 0; i < 100; i++) {
    const line = `line ${i} ${"x".repeat(i % 17)}`;
    assert.ok(producer.write(line), `line ${i} fits in an emptied ring`);
    want += line + "\n";
    if (i % 2 === 1) got += drainText(consumer);
  }
  got += drainText(consumer);
  assert.equal(got, want);
  assert.equal(consumer.dropped, 0);
});

Deno.test("TraceRing: a line that does not fit is dropped whole and counted", () => {
  const r = new TraceRing(TraceRing.create(64));
  assert.ok(r.write("a".repeat(40)));
  assert.equal(r.write("b".repeat(30)), false, "41 + 31 > 64");
  assert.equal(r.write("c".repeat(80)), false, "longer than the ring");
  assert.ok(r.write("d".repeat(10)));
  assert.equal(r.dropped, 2);
  assert.equal(drainText(r), "a".repeat(40) + "\n" + "d".repeat(10) + "\n");
  assert.equal(drainText(r), "", "nothing twice");
});

Deno.test("TraceRing: a producer in another thread, lines never torn", async () => {
  const buf = TraceRing.create(1024);
  const src = `
    import { TraceRing } from "${new URL("../../../lib/trace/ring.ts", import.meta.url).href}";
    self.onmessage = (e) => {
      const r = new TraceRing(e.data);
      let sent = 0;
      while (sent < 2000) if (r.write("packet " + sent)) sent++;
      self.postMessage("done");
    };`;
  const w = new Worker(URL.createObjectURL(new Blob([src], { type: "text/javascript" })), {
    type: "module",
  });
  const done = new Promise((r) => w.onmessage = r);
  w.postMessage(buf);
  const consumer = new TraceRing(buf);
  let text = "";
  let finished = false;
  done.then(() => finished = true);
  while (!finished) {
    text += drainText(consumer);
    await new Promise((r) => setTimeout(r, 1));
  }
  text += drainText(consumer);
  w.terminate();
  const lines = text.split("\n").slice(0, -1);
  assert.equal(lines.length, 2000);
  lines.forEach((l, i) => assert.equal(l, `packet ${i}`));
});

Deno.test("trace: option errors are 1.2.0's, without a newline, and exit 1", async () => {
  assert.deepEqual(await runCli("trace"), {
    code: 1,
    out: "",
    err: "Specify any of --mask or --selection",
  });
  assert.deepEqual(await runCli("trace", "--mask=1", "--selection=log"), {
    code: 1,
    out: "",
    err: "Specify any ONE of --mask or --selection",
  });
});
