/** User names from /etc/passwd text (lib/hints/passwd.ts). */
import assert from "node:assert/strict";
import { userName } from "../../../lib/hints/passwd.ts";

Deno.test("userName: the first entry of the uid; none for an unknown uid or a broken line", () => {
  const passwd = "root:x:0:0:root:/root:/bin/bash\n# comment\nbroken\n" +
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nalias:x:65534:1::/:/bin/false\n";
  assert.equal(userName(passwd, 0), "root");
  assert.equal(userName(passwd, 65534), "nobody");
  assert.equal(userName(passwd, 1000), undefined);
  assert.equal(userName("", 0), undefined);
});
