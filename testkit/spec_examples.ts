/**
 * Worked examples of 1.2.0's formats (the flow `f2` of docs/COMPATIBILITY.md#flows, the
 * default `stats` object), shared by the tests that check them.
 * @module
 */
import type { FlowFields } from "../lib/flow/parse.ts";

/** The request of the f2 example (docs/COMPATIBILITY.md#flows: `flow-set --name=f2 --target=lb-a --prio=10 ...`). */
export const F2_FIELDS: FlowFields = {
  name: "f2",
  target: "lb-a",
  priority: "10",
  protocols: "udp,TCP,tcp",
  dsts: "10.0.0.0/24,1000::/64",
  dports: "80,22,23,100-200,150-300,1000",
  srcs: "192.168.1.1/32",
  sports: "1024-65535",
  match: "tcp[2:2]=5001, udp[0:4] & 0xffff0000 = 0x13890000",
};

/** The same request as `flow-set` options (`priority` is `--prio`). */
export const F2_ARGS: string[] = Object.entries(F2_FIELDS).map(([k, v]) =>
  `--${k === "priority" ? "prio" : k}=${v}`
);

/** The f2 flow object printed by `flow-list` (docs/COMPATIBILITY.md#flows), without a trailing newline. */
export const F2_JSON = `{
  "name": "f2",
  "priority": 10,
  "protocols": [ "tcp", "udp" ],
  "dests": [
    "::ffff:10.0.0.0/120",
    "1000::/64"
  ],
  "dports": [
    "22-23",
    "80",
    "100-300",
    "1000"
  ],
  "srcs": [
    "::ffff:192.168.1.1/128"
  ],
  "sports": [
    "1024-65535"
  ],
  "match": [
    "tcp[2:2]=0x1389",
    "udp[0:4]&0xffff0000=0x13890000"
  ],
  "matches_count": 0,
  "user_ref": "lb-a"
}`;

/** The corrected `stats` output for the default daemon options (docs/COMPATIBILITY.md#command-line). */
export const DEFAULT_STATS = `{
  "hsize":            500,
  "ttlMillis":        200,
  "collisions":       0,
  "inserts":          0,
  "rejected":         0,
  "lookups":          0,
  "objGC":            0,
  "mtu":              1500,
  "bucketsMax":       500,
  "bucketsAllocated": 0,
  "bucketsUsed":      0,
  "fragsMax":         0,
  "fragsAllocated":   0,
  "fragsDiscarded":   0,
  "reAssembled":      0
}
`;
