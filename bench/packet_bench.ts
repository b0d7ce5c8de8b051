/**
 * Benchmarks for the per-packet hot path: parseKeyInto + hashKey over every
 * distinct golden packet, the whole `lb` decision (parse + hash + Maglev
 * lookup, tracing off) over the same packets, djb2 over one 40-byte key, and the queue's
 * receive + verdicts + send of one batch over a socketpair.
 *
 * Run: `deno bench --allow-all bench/packet_bench.ts`. The "x N packets"
 * benches process all N distinct golden packets per iteration: divide the
 * reported time by N for the cost of one packet.
 */

import {
  countersSize,
  QueueCounters,
  writeCountersHeader,
} from "../lib/counters/queue_counters.ts";
import { djb2, hashKey } from "../lib/packet/hash.ts";
import { KEY_LEN } from "../lib/packet/key.ts";
import { FragTable } from "../lib/frag/table.ts";
import { LbDecider } from "../lib/decide/lb.ts";
import { MaglevTable } from "../lib/maglev/table.ts";
import { ETH_P_IP, ETH_P_IPV6, KeyParse, parseKeyInto } from "../lib/packet/parse.ts";
import { goldenRows, unhex } from "../testkit/golden_packets.ts";
import { Offload } from "../lib/fastpath/offload.ts";
import { OfferReader, OfferRing } from "../lib/fastpath/offer_ring.ts";
import { CHANNEL_BYTES } from "../lib/fastpath/channel.ts";
import { getLibc } from "../ffi/libc.ts";
import { attach, packets } from "../testkit/fake_kernel.ts";

interface Sample {
  pkt: Uint8Array;
  l3: number;
  udpencap: number;
}

const seen = new Set<string>();
const samples: Sample[] = [];
for (const r of goldenRows) {
  const id = `${r.udpencap}/${r.packet}`;
  if (seen.has(id)) continue;
  seen.add(id);
  const pkt = unhex(r.packet);
  const v = pkt.length > 0 ? pkt[0] >> 4 : 0;
  samples.push({ pkt, l3: v === 6 ? ETH_P_IPV6 : ETH_P_IP, udpencap: r.udpencap });
}
const N = samples.length;
const valid = samples.filter((s) => {
  const kp = new KeyParse();
  return parseKeyInto(kp, s.pkt, s.pkt.length, s.l3, s.udpencap) >= 0;
});

// Packets copied into one reused MTU-sized buffer, as a NFQUEUE reader would hand them over.
const buf = new Uint8Array(2048);
const kp = new KeyParse();
let sink = 0;

Deno.bench(
  `parseKeyInto+hashKey x ${N} packets (all golden)`,
  { group: "parse", baseline: true },
  () => {
    for (let i = 0; i < N; i++) {
      const s = samples[i];
      if (parseKeyInto(kp, s.pkt, s.pkt.length, s.l3, s.udpencap) >= 0) sink ^= hashKey(kp.key, 1);
    }
  },
);

Deno.bench(
  `parseKeyInto+hashKey x ${valid.length} packets (valid only)`,
  { group: "parse" },
  () => {
    for (let i = 0; i < valid.length; i++) {
      const s = valid[i];
      parseKeyInto(kp, s.pkt, s.pkt.length, s.l3, s.udpencap);
      sink ^= hashKey(kp.key, 1);
    }
  },
);

Deno.bench(`copy to reused buffer+parseKeyInto+hashKey x ${N} packets`, { group: "parse" }, () => {
  for (let i = 0; i < N; i++) {
    const s = samples[i];
    buf.set(s.pkt);
    if (parseKeyInto(kp, buf, s.pkt.length, s.l3, s.udpencap) >= 0) sink ^= hashKey(kp.key, 1);
  }
});

// The golden 1.2.0 table (M=997, N=4 targets) and a fragment table as `lb` has by default.
const table = MaglevTable.view(
  Deno.readFileSync(new URL("../tests/testdata/shm/default-4.shm", import.meta.url)).buffer,
);
const fragments = new FragTable({
  size: 500,
  buckets: 500,
  frags: 0,
  mtu: 1500,
  ttlMs: 200,
  reassembler: 0,
  stats: new ArrayBuffer(72),
});
const lb = new LbDecider({ table, fragments });
let now = 0;
Deno.bench(`LbDecider.decide (parse+hash+lookup) x ${N} packets`, {
  group: "decide",
  baseline: true,
}, () => {
  now += 1e6;
  for (let i = 0; i < N; i++) {
    const s = samples[i];
    sink ^= lb.decide(s.pkt, 0, s.pkt.length, s.l3, now);
  }
});

// The same with the per-queue counters the daemon keeps (lib/counters/queue_counters.ts): the
// decider's drop reasons and the packet loop's per-fwmark count, in an ftshm-sized buffer.
const countersShm = new ArrayBuffer(countersSize(1));
writeCountersHeader(countersShm, 0, 1);
const counters = new QueueCounters(countersShm, 0);
const counted = new LbDecider({ table, fragments, counts: counters.counts });
Deno.bench(
  `LbDecider.decide + QueueCounters.packet x ${N} packets (counters on)`,
  { group: "decide" },
  () => {
    now += 1e6;
    for (let i = 0; i < N; i++) {
      const s = samples[i];
      const v = counted.decide(s.pkt, 0, s.pkt.length, s.l3, now);
      counters.packet(v, s.pkt.length);
      sink ^= v;
    }
  },
);

// --fastpath: after each decision the queue thread offers it (lib/fastpath/offload.ts) when it
// depends on the 5-tuple alone; the ring is drained once per iteration, as the writer would.
const ring = OfferRing.create(4096);
const offered = new LbDecider({ table, fragments });
const offload = new Offload(ring, new SharedArrayBuffer(CHANNEL_BYTES), offered);
const reader = new OfferReader(ring);
Deno.bench(
  `LbDecider.decide + Offload.packet x ${N} packets (--fastpath on)`,
  { group: "decide" },
  () => {
    now += 1e6;
    offload.begin();
    for (let i = 0; i < N; i++) {
      const s = samples[i];
      const v = offered.decide(s.pkt, 0, s.pkt.length, s.l3, now);
      offload.packet(v, s.l3);
      sink ^= v;
    }
    offload.end();
    while (reader.next()) sink ^= reader.mark;
  },
);

// The queue's own work per batch (ffi/nfqueue.ts): one recvmmsg of a datagram of 32 packets,
// 32 verdicts, one sendmsg, over a unix socketpair whose other end plays the kernel
// (testkit/fake_kernel.ts); the "kernel" side (one send, one recv) is in the time too.
const fake = await attach();
const nfq = fake.q!;
const batch32 = packets(...Array.from({ length: 32 }, (_, i) => i + 1));
const batch32Len = BigInt(batch32.length);
const drain = new Uint8Array(65536);
const drainLen = BigInt(drain.length);
const libc = getLibc();
Deno.bench("NfQueue receiveBatch + 32 verdicts + flush (socketpair)", { group: "queue" }, () => {
  libc.send(fake.k.fd, batch32, batch32Len, 0);
  const n = nfq.receiveBatch();
  for (let i = 0; i < n; i++) nfq.verdict(i, 101);
  nfq.flush();
  libc.recv(fake.k.fd, drain, drainLen, 0);
  sink ^= n;
});

const key = new Uint8Array(KEY_LEN);
for (let i = 0; i < KEY_LEN; i++) key[i] = (i * 37) & 0xff;
Deno.bench("djb2 over a 40-byte key", { group: "hash" }, () => {
  sink ^= djb2(key, 0, KEY_LEN);
});

globalThis.addEventListener("unload", () => {
  nfq.close();
  fake.k.close();
  if (sink === 0.5) console.log(sink); // keep `sink` observable
});
