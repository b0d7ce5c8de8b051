/**
 * errno read right after the first failed call of a fresh thread is that call's: binding a libc
 * symbol (a dlopen) must not happen between the failed call and the errno read.
 */
import assert from "node:assert/strict";

Deno.test("errno after the first failed call of a fresh process is the call's (EBADF)", async () => {
  const mod = new URL("../../ffi/libc.ts", import.meta.url).href;
  // close(-1) fails with EBADF (9); nothing of libc has been bound before it.
  const code = `const { getLibc, errno } = await import(${JSON.stringify(mod)});
    const r = getLibc().close(-1);
    console.log(r, errno());`;
  for (let i = 0; i < 3; i++) {
    const out = await new Deno.Command(Deno.execPath(), { args: ["eval", code] }).output();
    assert.equal(
      new TextDecoder().decode(out.stdout),
      "-1 9\n",
      new TextDecoder().decode(out.stderr),
    );
  }
});
