/**
 * The fast-path writer thread (`--fastpath`, docs/FASTPATH.md): it owns the
 * nf_tables socket and, through it, the daemon's nftables table (created
 * with `NFT_TABLE_F_OWNER`, so the kernel removes it when this socket
 * closes, also when the process dies). It
 * - drains the queue threads' offer rings and adds the offered 5-tuples
 *   to the maps in batches (a tuple once it was offered
 *   `--fastpath-min-packets` times), with the per-element timeout;
 * - every {@link SCAN_MS} compares the tables the daemon uses with its
 *   copy of them (a write to shared memory by any program's `activate` or
 *   `deactivate`), and watches the queue threads' table and flow changes
 *   and the trace mask: on a change it first moves to a new epoch (offers
 *   decided before it are dropped) and then flushes both maps;
 * - keeps the status object (`nfqlb-fastpath.<table>`) up to date, with
 *   the kernel's hit counters read once a second.
 * Nothing here runs on the packet path.
 * @module
 */
import { NftSocket } from "../ffi/nft_socket.ts";
import { createShm, type ShmMapping, unlinkShm } from "../ffi/shm.ts";
import { LibcError, strerror } from "../ffi/libc.ts";
import { NlBuilder } from "../lib/nft/builder.ts";
import {
  batchBegin,
  batchEnd,
  beginSetElements,
  endSetElements,
  flushSet,
  getCounter,
  keyElement,
  NFT_MSG_DESTROYSETELEM,
  setElement,
} from "../lib/nft/nf_tables.ts";
import { parseCounterObject } from "../lib/nft/replies.ts";
import {
  HITS4,
  HITS6,
  KEY4_LEN,
  KEY6_LEN,
  MAP4,
  MAP6,
  setupBatch,
  type Side,
  switchBatch,
} from "../lib/fastpath/nft_table.ts";
import { KeyLog } from "../lib/fastpath/key_log.ts";
import { OfferReader } from "../lib/fastpath/offer_ring.ts";
import { Admission, ElementClock } from "../lib/fastpath/admission.ts";
import {
  F_ADD_FAILURES,
  F_ADDS,
  F_ELEMENTS,
  F_FLUSHES,
  F_HITS4,
  F_HITS6,
  F_LAST_FLUSH_US,
  F_MAP_FULL,
  F_MAX_FLUSH_US,
  F_RING_DROPS,
  F_SCANS,
  initStatus,
  STATUS_PREFIX,
  STATUS_SIZE,
  statusValues,
} from "../lib/fastpath/status.ts";
import type { FlowSnapshot } from "../lib/flow/store.ts";
import { TRACE_FLOWS, TRACE_PACKET, TRACE_SCTP } from "../lib/trace/mask.ts";
import { MASK_WORD, openTraceShm } from "./open_trace_shm.ts";
import { type OpenTable, openTable } from "./open_table.ts";
import { isTruncated } from "./table_watch.ts";
import type { FastPathConfig } from "./options.ts";
import {
  FP_EPOCH,
  FP_EVENTS,
  FP_FLOWS_FLUSHED,
  FP_TRACES_FLUSHED,
} from "../lib/fastpath/channel.ts";

/** Priority of the prerouting chain: before iptables' mangle table (-150) and nft's filter (0). */
const PRIORITY = -160;
/** How often the tables are compared, ms: with the flush, the bound on a stale mark. */
export const SCAN_MS = 5;
/** Keys per family per removal batch while a side is emptied. */
const CLEAN_STEP = 512;
/** Elements per family per batch. */
const BATCH_ELEMENTS = 256;
/** How long adds pause after the kernel said the map is full, ms. */
const FULL_BACKOFF_MS = 200;
/** How often the hit counters are read, ms. */
const HITS_MS = 1000;
/** How often the thread takes its messages (flow snapshots: the tables to compare), ms. */
const MESSAGES_MS = 20;
/** errno: the map is full. */
const ENFILE = 23;

/** The start message. */
export interface FastPathStart {
  readonly config: FastPathConfig;
  /** lb: the one target table; flowlb: undefined (the flows' tables). */
  readonly tshm?: string;
  /** One offer ring per queue thread. */
  readonly rings: readonly SharedArrayBuffer[];
  /** The words of `./fastpath_channel.ts`. */
  readonly channel: SharedArrayBuffer;
  readonly stop: SharedArrayBuffer;
  /** flowlb: the queue threads' applied flow and trace-flow versions (2 × lanes words). */
  readonly applied?: SharedArrayBuffer;
  readonly lanes: number;
  /** flowlb: the flows at start. */
  readonly snapshot?: FlowSnapshot;
}

/** What the thread tells the main thread. */
export type FastPathMessage =
  | { type: "ready" }
  | { type: "error"; message: string }
  | { type: "warning"; message: string }
  | { type: "stopped" };

const scope = self as unknown as {
  postMessage(m: FastPathMessage): void;
  onmessage:
    | ((e: MessageEvent<FastPathStart | { type: "flows"; snapshot: FlowSnapshot }>) => void)
    | null;
};

/** A table the writer compares: its mapping and a copy of what decides a packet. */
class WatchedCopy {
  open: OpenTable | undefined;
  lookup = new Int32Array(0);
  active = new Int32Array(0);
  constructor(readonly name: string) {}

  /** True when the table's decisions may have changed since the last call. */
  changed(): boolean {
    let t = this.open;
    if (t !== undefined && isTruncated(t)) {
      t.close();
      this.open = t = undefined;
      this.lookup = new Int32Array(0);
      return true;
    }
    if (t === undefined) {
      try {
        t = openTable(this.name, false);
      } catch {
        return false;
      }
      this.open = t;
    }
    const { lookup, active } = t.table;
    let diff = lookup.length !== this.lookup.length || active.length !== this.active.length;
    if (!diff) {
      const a = this.lookup, b = this.active;
      for (let i = 0; i < lookup.length; i++) {
        if (lookup[i] !== a[i]) {
          diff = true;
          break;
        }
      }
      if (!diff) {
        for (let i = 0; i < active.length; i++) {
          if (active[i] !== b[i]) {
            diff = true;
            break;
          }
        }
      }
    }
    if (diff) {
      this.lookup = lookup.slice();
      this.active = active.slice();
    }
    return diff;
  }

  close(): void {
    this.open?.close();
    this.open = undefined;
  }
}

/** Failure text for errno `e` of the setup batch. */
function setupProblem(table: string, e: number): string {
  const why = strerror(e);
  if (e === 1) {
    return `fastpath: cannot create nftables table inet ${table}: ${why} (needs CAP_NET_ADMIN; ` +
      `or another running nfqlb owns a table of that name: use --fastpath-table)`;
  }
  if (e === 2 || e === 93 || e === 95) {
    return `fastpath: cannot create nftables table inet ${table}: ${why} (is nf_tables with ` +
      `maps, timeouts and concatenations in this kernel?)`;
  }
  return `fastpath: cannot create nftables table inet ${table}: ${why}`;
}

async function run(start: FastPathStart): Promise<void> {
  const c = start.config;
  const stop = new Int32Array(start.stop);
  const ch = new Int32Array(start.channel);
  let nl: NftSocket | undefined;
  let status: ShmMapping | undefined;
  const watched = new Map<string, WatchedCopy>();
  const traceShm = openTraceShm();
  try {
    const sock = NftSocket.open();
    nl = sock;
    const b = new NlBuilder(128 * 1024);
    let seq = 1;
    const first = seq;
    const shape = { table: c.table, size: c.size, timeoutMs: c.timeoutMs, priority: PRIORITY };
    seq = setupBatch(b, shape, seq);
    const acked: number[] = [];
    for (let s = first + 1; s < seq - 1; s++) acked.push(s);
    const failed = sock.transact(b.bytes, b.length, acked);
    if (failed.length > 0) {
      scope.postMessage({ type: "error", message: setupProblem(c.table, failed[0].errno) });
      return;
    }
    status = createShm(STATUS_PREFIX + c.table, STATUS_SIZE);
    initStatus(status.buffer, Deno.pid);
    const v = statusValues(status.buffer);
    const names = (s?: FlowSnapshot) =>
      start.tshm !== undefined
        ? [start.tshm]
        : [...new Set(s?.flows.flatMap((f) => f.target ?? []) ?? [])];
    const watch = (list: string[]) => {
      for (const [n, w] of watched) {
        if (!list.includes(n)) {
          w.close();
          watched.delete(n);
        }
      }
      for (const n of list) if (!watched.has(n)) watched.set(n, new WatchedCopy(n));
    };
    watch(names(start.snapshot));
    for (const w of watched.values()) w.changed(); // the copies to compare with
    let newestFlows: FlowSnapshot | undefined;
    scope.onmessage = (e) => {
      const m = e.data;
      if ("type" in m && m.type === "flows") {
        if (newestFlows === undefined || m.snapshot.version > newestFlows.version) {
          newestFlows = m.snapshot;
        }
      }
    };
    scope.postMessage({ type: "ready" });

    const readers = start.rings.map((r) => new OfferReader(r));
    const admission = new Admission(1 << 16, c.minPackets, c.timeoutMs);
    const elements = new ElementClock(c.timeoutMs);
    const keys = [new Uint8Array(BATCH_ELEMENTS * 44), new Uint8Array(BATCH_ELEMENTS * 44)];
    const marks = [new Uint8Array(BATCH_ELEMENTS * 4), new Uint8Array(BATCH_ELEMENTS * 4)];
    const counts = [0, 0];
    const markView = marks.map((m) => new DataView(m.buffer));
    const applied = start.applied === undefined ? undefined : new Int32Array(start.applied);
    const relevantMask = TRACE_PACKET | TRACE_SCTP | TRACE_FLOWS;
    let mask = traceShm.words[MASK_WORD] & relevantMask;
    let events = Atomics.load(ch, FP_EVENTS);
    let epoch = Atomics.load(ch, FP_EPOCH);
    let nextScan = 0;
    let nextHits = 0;
    let nextMessages = 0;
    let fullUntil = 0;
    let warned = 0;
    const warn = (message: string) => {
      const now = performance.now();
      if (now - warned < 60_000) return;
      warned = now;
      scope.postMessage({ type: "warning", message });
    };

    const minApplied = (from: number) => {
      if (applied === undefined) return 0;
      let m = Atomics.load(applied, from);
      for (let i = 1; i < start.lanes; i++) m = Math.min(m, Atomics.load(applied, from + i));
      return m;
    };
    /** Side in use, and per side and family the keys added since that side was emptied. */
    let side: Side = 0;
    const logs = [0, 1].map(() => [new KeyLog(KEY4_LEN, c.size), new KeyLog(KEY6_LEN, c.size)]);
    const mapName = (s: Side, f: number) => f === 0 ? MAP4[s] : MAP6[s];
    /** Remove up to `n` logged keys of the side not in use, in one batch; false on failure. */
    const cleanStep = (n: number): boolean => {
      const other = (1 - side) as Side;
      b.reset();
      batchBegin(b, seq++);
      const acks: number[] = [];
      if (logs[other][0].overflowed || logs[other][1].overflowed) {
        // More adds than the log holds (re-adds after timeouts): flush both maps whole.
        for (let f = 0; f < 2; f++) {
          const s = seq++;
          acks.push(s);
          flushSet(b, s, c.table, mapName(other, f));
        }
        batchEnd(b, seq++);
        const failed = sock.transact(b.bytes, b.length, acks);
        if (failed.length > 0) {
          warn(`fastpath: emptying a map failed: ${strerror(failed[0].errno)}`);
          return false;
        }
        logs[other][0].clear();
        logs[other][1].clear();
        return true;
      }
      for (let f = 0; f < 2; f++) {
        const log = logs[other][f];
        const k = log.take(n);
        if (k === 0) continue;
        const s = seq++;
        acks.push(s);
        beginSetElements(b, s, c.table, mapName(other, f), NFT_MSG_DESTROYSETELEM);
        for (let i = 0; i < k; i++) {
          keyElement(b, log.bytes, (log.from + i) * log.keyLen, log.keyLen);
        }
        endSetElements(b);
      }
      batchEnd(b, seq++);
      if (acks.length === 0) return true;
      const failed = sock.transact(b.bytes, b.length, acks);
      if (failed.length > 0) warn(`fastpath: emptying a map failed: ${strerror(failed[0].errno)}`);
      return failed.length === 0;
    };
    const dirty = (s: Side) =>
      logs[s][0].pending + logs[s][1].pending > 0 || logs[s][0].overflowed || logs[s][1].overflowed;
    /**
     * A decision may have changed: new epoch first (older offers are dropped), then the rules
     * move to the other side's maps, which are empty; the old side is emptied step by step.
     */
    const flush = (since: number) => {
      epoch = (epoch + 1) | 0;
      Atomics.store(ch, FP_EPOCH, epoch);
      const flows = minApplied(0);
      const traces = minApplied(start.lanes);
      const to = (1 - side) as Side;
      // Two changes closer than the emptying of a side: finish it now.
      while (dirty(to)) if (!cleanStep(CLEAN_STEP)) return false;
      b.reset();
      const first = seq;
      seq = switchBatch(b, c.table, side, to, seq);
      const failed = sock.transact(b.bytes, b.length, [first + 1, first + 2]);
      if (failed.length > 0) {
        // The old marks may still be in use: try again at the next scan.
        warn(`fastpath: switching maps failed: ${strerror(failed[0].errno)}`);
        return false;
      }
      side = to;
      elements.clear();
      const us = Math.round((performance.now() - since) * 1000);
      v[F_FLUSHES]++;
      v[F_LAST_FLUSH_US] = us;
      if (us > v[F_MAX_FLUSH_US]) v[F_MAX_FLUSH_US] = us;
      Atomics.store(ch, FP_FLOWS_FLUSHED, flows);
      Atomics.store(ch, FP_TRACES_FLUSHED, traces);
      Atomics.notify(ch, FP_FLOWS_FLUSHED);
      Atomics.notify(ch, FP_TRACES_FLUSHED);
      return true;
    };
    let flushPending = false;
    const scan = () => {
      const since = performance.now();
      if (newestFlows !== undefined) {
        watch(names(newestFlows));
        newestFlows = undefined;
      }
      let changed = false;
      for (const w of watched.values()) if (w.changed()) changed = true;
      const e = Atomics.load(ch, FP_EVENTS);
      if (e !== events) {
        events = e;
        changed = true;
      }
      const m = traceShm.words[MASK_WORD] & relevantMask;
      if (m !== mask) {
        mask = m;
        changed = true;
      }
      if (changed || flushPending) flushPending = !flush(since);
      v[F_SCANS]++;
    };
    const send = (now: number) => {
      b.reset();
      batchBegin(b, seq++);
      const acks: number[] = [];
      for (let f = 0; f < 2; f++) {
        const n = counts[f];
        if (n === 0) continue;
        const s = seq++;
        acks.push(s);
        beginSetElements(b, s, c.table, mapName(side, f));
        const len = f === 0 ? KEY4_LEN : 44;
        for (let i = 0; i < n; i++) {
          setElement(b, keys[f], i * 44, len, marks[f].subarray(i * 4), c.timeoutMs);
        }
        endSetElements(b);
      }
      batchEnd(b, seq++);
      const total = counts[0] + counts[1];
      const failed = sock.transact(b.bytes, b.length, acks);
      if (failed.length === 0) {
        v[F_ADDS] += total;
        elements.added(total, now);
        for (let f = 0; f < 2; f++) {
          for (let i = 0; i < counts[f]; i++) logs[side][f].add(keys[f], i * 44);
        }
      } else {
        v[F_ADD_FAILURES] += total;
        for (let f = 0; f < 2; f++) {
          for (let i = 0; i < counts[f]; i++) {
            admission.forget(keys[f], i * 44, f === 0 ? KEY4_LEN : 44);
          }
        }
        if (failed[0].errno === ENFILE) {
          v[F_MAP_FULL]++;
          fullUntil = now + FULL_BACKOFF_MS;
        } else {
          warn(`fastpath: adding elements failed: ${strerror(failed[0].errno)}`);
        }
      }
      counts[0] = counts[1] = 0;
    };
    const hits = () => {
      for (const [name, at] of [[HITS4, F_HITS4], [HITS6, F_HITS6]] as const) {
        b.reset();
        getCounter(b, seq++, c.table, name);
        const r = parseCounterObject(sock.request(b.bytes, b.length), Infinity);
        if (r !== undefined) v[at] = r.packets;
      }
    };

    const idle = new Int32Array(new SharedArrayBuffer(4));
    while (Atomics.load(stop, 0) === 0) {
      let now = performance.now();
      if (now >= nextScan) {
        scan();
        nextScan = now + SCAN_MS;
      }
      if (now >= nextHits) {
        hits();
        nextHits = now + HITS_MS;
      }
      let offered = 0;
      for (const r of readers) {
        while (r.next()) {
          offered++;
          if (r.epoch !== (epoch >>> 0)) continue; // decided before the last flush
          if (now < fullUntil) {
            v[F_ADD_FAILURES]++;
            continue;
          }
          if (!admission.admit(r.bytes, r.keyAt, r.keyLen, epoch, now)) continue;
          const f = r.keyLen === KEY4_LEN ? 0 : 1;
          const i = counts[f]++;
          keys[f].set(r.bytes.subarray(r.keyAt, r.keyAt + r.keyLen), i * 44);
          markView[f].setUint32(i * 4, r.mark, true);
          if (counts[f] === BATCH_ELEMENTS) {
            send(now);
            now = performance.now();
            if (now >= nextScan) break; // scans first: they bound how stale a mark can be
          }
        }
        r.release();
        if (now >= nextScan) break;
      }
      if (counts[0] + counts[1] > 0) send(now);
      // Empty the side not in use, a step at a time between scans and adds.
      if (dirty((1 - side) as Side)) cleanStep(CLEAN_STEP);
      let drops = 0;
      for (const r of readers) drops += r.dropped;
      v[F_RING_DROPS] = drops;
      v[F_ELEMENTS] = elements.count(now);
      if (offered === 0) Atomics.wait(idle, 0, 0, 1);
      // Let flow snapshot messages in now and then.
      if (now >= nextMessages) {
        await new Promise((r) => setTimeout(r, 0));
        nextMessages = now + MESSAGES_MS;
      }
    }
  } catch (e) {
    const message = e instanceof LibcError ? `fastpath: ${e.message}` : String(e);
    scope.postMessage({ type: "error", message });
  } finally {
    for (const w of watched.values()) w.close();
    traceShm.close();
    nl?.close(); // the kernel removes the owned table with the socket
    // Nobody waits for a flush that will not come.
    Atomics.store(ch, FP_FLOWS_FLUSHED, 0x7fffffff);
    Atomics.store(ch, FP_TRACES_FLUSHED, 0x7fffffff);
    Atomics.notify(ch, FP_FLOWS_FLUSHED);
    Atomics.notify(ch, FP_TRACES_FLUSHED);
    if (status !== undefined) {
      status.close();
      unlinkShm(STATUS_PREFIX + c.table);
    }
  }
  scope.postMessage({ type: "stopped" });
}

scope.onmessage = (e) => {
  const m = e.data;
  if ("config" in m) void run(m);
};
