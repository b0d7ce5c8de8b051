/** Control connection caps (daemon/control_admission.ts): per unprivileged uid, overall, and room for privileged peers. */
import assert from "node:assert/strict";
import { admit, type Admitted, peerRights } from "../../daemon/control_admission.ts";

const LIMITS = { perUid: 2, total: 4 };
const nobody: Admitted = { uid: 65534, privileged: false };
const other: Admitted = { uid: 1000, privileged: false };
const root: Admitted = { uid: 0, privileged: true };

Deno.test("admission: per-uid cap for unprivileged peers", () => {
  assert.deepEqual(admit([nobody], nobody, LIMITS), { admit: true, evict: -1 });
  assert.deepEqual(admit([nobody, nobody], nobody, LIMITS), { admit: false, reason: "uid" });
  assert.deepEqual(admit([nobody, nobody], other, LIMITS), { admit: true, evict: -1 });
});

Deno.test("admission: overall cap refuses unprivileged, evicts the oldest unprivileged for root", () => {
  const full = [root, nobody, other, nobody];
  assert.deepEqual(admit(full, { uid: 1001, privileged: false }, LIMITS), {
    admit: false,
    reason: "total",
  });
  assert.deepEqual(admit(full, root, LIMITS), { admit: true, evict: 1 });
  // Privileged peers are not capped by the per-uid limit.
  assert.deepEqual(admit([root, root], root, LIMITS), { admit: true, evict: -1 });
  // Only privileged open: still admitted up to twice the overall cap.
  assert.deepEqual(admit([root, root, root, root], root, LIMITS), { admit: true, evict: -1 });
  assert.deepEqual(admit(Array(8).fill(root), root, LIMITS), { admit: false, reason: "total" });
});

Deno.test("peer rights: privileged only with a known uid 0 or the daemon's; unknown fails closed", () => {
  const rights = (uid: number | undefined, unchecked = false) =>
    peerRights({ uid, unchecked, who: "" }, 1000);
  assert.deepEqual(rights(0), { privileged: true, mayChange: true });
  assert.deepEqual(rights(1000), { privileged: true, mayChange: true });
  assert.deepEqual(rights(65534), { privileged: false, mayChange: false });
  // No SO_PEERCRED, or a tcp client whose socket is no longer live: unprivileged.
  assert.deepEqual(rights(undefined), { privileged: false, mayChange: false });
  // --control-unauthenticated, not loopback: may change, but is not served first.
  assert.deepEqual(rights(undefined, true), { privileged: false, mayChange: true });
});
