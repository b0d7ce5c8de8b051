/**
 * The Prometheus text exposition (lib/counters/metrics.ts) and the kernel's queue figures
 * (lib/nfqueue/proc.ts): exact sample lines for known inputs, HELP and TYPE before each family's
 * samples, label values escaped as the exposition format requires.
 */
import assert from "node:assert/strict";
import { escapeLabel, formatMetrics } from "../../../lib/counters/metrics.ts";
import { parseNfqueueProc } from "../../../lib/nfqueue/proc.ts";
import { initFtStats, readStats, readStatsExt } from "../../../lib/frag/stats.ts";

const QUEUE = {
  queue: 3,
  received: 10,
  accepted: 7,
  dropped: 3,
  invalid: 1,
  noTarget: 2,
  noFlow: 0,
  verdictErrors: 0,
  otherFwmarks: 0,
  tableOpenErrors: 1,
  receiveErrors: 2,
  receiveOverruns: 3,
  sendErrors: 4,
};

Deno.test("metrics: samples, labels and families", () => {
  const ft = new ArrayBuffer(108);
  initFtStats(ft, { ttlMs: 200, size: 500, mtu: 1500, buckets: 500, frags: 100 });
  new DataView(ft).setUint32(76, 4, true); // fragsDroppedTtl
  const text = formatMetrics({
    version: "1.2.0",
    deno: "2.9.6",
    queues: [QUEUE],
    fwmarks: [{ fwmark: 101, packets: 7, bytes: 420 }],
    kernel: new Map([[3, {
      portId: 1,
      waiting: 2,
      queueDropped: 5,
      userDropped: 6,
      idSequence: 11,
    }]]),
    flows: [
      { name: 'we"b', table: "tshm-web", matches: 9 },
      { name: "later", table: "tshm-later", matches: 0, pending: true },
    ],
    tables: 1,
    fragments: { ...readStats(ft), ...readStatsExt(ft) },
  });
  const lines = text.split("\n");
  for (
    const want of [
      'nfqlb_build_info{version="1.2.0",deno="2.9.6"} 1',
      'nfqlb_queue_packets_received_total{queue="3"} 10',
      'nfqlb_queue_packets_no_target_total{queue="3"} 2',
      'nfqlb_queue_table_open_errors_total{queue="3"} 1',
      'nfqlb_queue_receive_errors_total{queue="3"} 2',
      'nfqlb_queue_receive_overruns_total{queue="3"} 3',
      'nfqlb_queue_send_errors_total{queue="3"} 4',
      'nfqlb_kernel_queue_packets_total{queue="3"} 11',
      'nfqlb_kernel_queue_user_dropped_total{queue="3"} 6',
      'nfqlb_kernel_queue_waiting_packets{queue="3"} 2',
      'nfqlb_target_packets_total{fwmark="101"} 7',
      'nfqlb_target_bytes_total{fwmark="101"} 420',
      'nfqlb_flow_matches_total{flow="we\\"b",table="tshm-web"} 9',
      "nfqlb_flows 2",
      "nfqlb_flows_pending 1",
      'nfqlb_fragments_dropped_total{reason="ttl"} 4',
    ]
  ) assert.ok(lines.includes(want), want);
  // Every sample's family was announced with HELP and TYPE just before its samples.
  let family = "";
  for (const l of lines.filter((l) => l !== "")) {
    const m = /^# (HELP|TYPE) (\S+)/.exec(l);
    if (m !== null) {
      family = m[2];
      continue;
    }
    const name = /^([a-z_]+)/.exec(l)![1];
    assert.equal(name, family, l);
    if (name.endsWith("_total")) assert.ok(text.includes(`# TYPE ${name} counter`), name);
  }
  assert.equal(escapeLabel('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
});

Deno.test("metrics: without fragment counters, no fragment families; kernel figures only for our queues", () => {
  const text = formatMetrics({
    version: "1.2.0",
    deno: "x",
    queues: [QUEUE],
    fwmarks: [],
    kernel: new Map([[9, {
      portId: 1,
      waiting: 0,
      queueDropped: 0,
      userDropped: 0,
      idSequence: 1,
    }]]),
    flows: [],
    tables: 0,
  });
  assert.doesNotMatch(text, /nfqlb_fragments/);
  assert.doesNotMatch(text, /queue="9"/);
  assert.match(text, /^nfqlb_kernel_queue_figures_available 1$/m);
});

Deno.test("metrics: kernel figures unreadable (non-root): their families are left out, said by a gauge", () => {
  const text = formatMetrics({
    version: "1.2.0",
    deno: "x",
    queues: [QUEUE],
    fwmarks: [],
    kernel: undefined,
    flows: [],
    tables: 0,
  });
  assert.match(text, /^nfqlb_kernel_queue_figures_available 0$/m);
  assert.doesNotMatch(text, /nfqlb_kernel_queue_(packets|dropped|user_dropped|waiting)/);
  assert.match(text, /^nfqlb_queue_packets_received_total\{queue=/m);
});

Deno.test("parseNfqueueProc: the nine columns of each bound queue", () => {
  const text =
    "    0  -4123  12 2  1500     0     3  4567 1\n    7  12345     0 2 65535     9     0     8 1\n\n";
  const m = parseNfqueueProc(text);
  assert.equal(m.size, 1, "a negative port id is not a line of nine numbers");
  assert.deepEqual(m.get(7), {
    portId: 12345,
    waiting: 0,
    queueDropped: 9,
    userDropped: 0,
    idSequence: 8,
  });
  assert.equal(parseNfqueueProc("garbage\n").size, 0);
});
