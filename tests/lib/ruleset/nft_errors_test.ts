/** `ruleset --style=nft` errors (lib/ruleset/nft_errors.ts): no nft queue expression is named. */
import assert from "node:assert/strict";
import { explainNftError, noNftQueue } from "../../../lib/ruleset/nft_errors.ts";

/** What nft 1.0.6 prints on a kernel without nft_queue (two of the four rules). */
const NO_QUEUE = `/dev/stdin:13:31-42: Error: Could not process rule: No such file or directory
\t\tip daddr @ipv4-vips counter queue to 0-3
\t\t                            ^^^^^^^^^^^^
/dev/stdin:14:32-43: Error: Could not process rule: No such file or directory
\t\tip6 daddr @ipv6-vips counter queue to 0-3
\t\t                             ^^^^^^^^^^^^
`;

Deno.test("nft errors: a refused queue statement says the cause and --style=iptables", () => {
  assert.ok(noNftQueue(NO_QUEUE));
  assert.equal(
    explainNftError(NO_QUEUE),
    "this kernel has no nft queue expression; use --style=iptables\n" +
      "  nft: /dev/stdin:13:31-42: Error: Could not process rule: No such file or directory\n" +
      "  nft: ip daddr @ipv4-vips counter queue to 0-3\n" +
      "  (and 1 more error(s) like it)",
  );
  const other = "/dev/stdin:3:1-4: Error: Could not process rule: No such file or directory\n" +
    "\t\tip daddr @nosuchset accept\n";
  assert.equal(noNftQueue(other), false, "another missing object is not the queue");
  assert.equal(explainNftError(other + "\n"), other.trim());
});
