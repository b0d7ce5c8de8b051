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
 *   decided before it are dropped) and then switches the rules to the other
 *   side's maps, which are empty; the old side is emptied step by step
 *   (./fastpath_writer.ts does the nf_tables part). A switch that fails, or a
 *   socket that fails in any other request (an add, a removal step, a counter
 *   read), removes the table (nothing is marked), which is created again at
 *   once, then every {@link RESTORE_MS} while that fails;
 * - keeps its status values (the kernel's hit counters read once a second,
 *   whether the table is up) in a SharedArrayBuffer the metrics thread reads,
 *   copied into the status object (`nfqlb-fastpath.<netns>.<table>`) for
 *   `stats` and the table commands after each scan and each round;
 * - sleeps while no element can be live in the maps in use (none added for the element timeout,
 *   or none since the last switch): a change of a table, the flows or the trace mask can then
 *   leave no stale mark, so there is nothing to scan for. Asleep it adds nothing; woken by the
 *   first offer or decision change (the doorbell protocol of lib/fastpath/channel.ts), it scans
 *   before it adds, so an offer decided before a change made meanwhile is dropped by the new
 *   epoch. The table commands do not wait for a sleeping writer (the sleep word of its status
 *   object, daemon/fastpath_wait.ts). Asleep it still scans every {@link SLEEP_SCAN_MS} (a
 *   write nobody announced is switched, though nothing could be stale); awake, every
 *   {@link SCAN_MS} as before: the staleness bound of docs/FASTPATH.md is unchanged.
 * Nothing here runs on the packet path.
 * @module
 */
import { createStatusObject, fastPathStatusName } from "./fastpath_wait.ts";
import { type ShmMapping, unlinkShmIfSame } from "../ffi/shm.ts";
import { LibcError, strerror } from "../ffi/libc.ts";
import { KEY4_LEN, KEY6_LEN, type Side } from "../lib/fastpath/nft_table.ts";
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
  F_MAP_FULL_SKIPS,
  F_MAX_FLUSH_US,
  F_RING_DROPS,
  F_SCANS,
  F_UP,
  statusSleepWord,
  statusValues,
} from "../lib/fastpath/status.ts";
import { type FlowSnapshot, matchingFlows } from "../lib/flow/store.ts";
import { TRACE_FLOWS, TRACE_PACKET, TRACE_SCTP } from "../lib/trace/mask.ts";
import { MASK_WORD, openTraceShm, type TraceShm } from "./open_trace_shm.ts";
import { DaemonError } from "./errors.ts";
import { type OpenTable, openTable } from "./open_table.ts";
import { isTruncated } from "./table_watch.ts";
import type { FastPathConfig } from "./options.ts";
import {
  FP_EPOCH,
  FP_EVENTS,
  FP_FLOWS_FLUSHED,
  FP_SLEEP,
  FP_TRACES_FLUSHED,
} from "../lib/fastpath/channel.ts";
import {
  BATCH_ELEMENTS,
  EBUSY,
  ENFILE,
  FastPathTableWriter,
  keyLen,
  type NftProblem,
  PendingAdds,
  Restorer,
} from "./fastpath_writer.ts";

/** Priority of the prerouting chain: before iptables' mangle table (-150) and nft's filter (0). */
const PRIORITY = -160;
/** How often the tables are compared, ms: with the flush, the bound on a stale mark. */
export const SCAN_MS = 5;
/** How long adds pause after the kernel said the map is full, ms. */
const FULL_BACKOFF_MS = 200;
/** How often the hit counters are read, ms. */
const HITS_MS = 1000;
/** How often the element count and ring drops are updated in the status object, ms. */
const COUNT_MS = 100;
/** How often the table is created again while that fails (after a failed switch), ms. */
export const RESTORE_MS = 1000;
/**
 * Asleep, how often the writer looks at the stop flag and the flow version, ms (it is woken at
 * once by offers and by the queue threads' decision changes, lib/fastpath/channel.ts).
 */
export const SLEEP_POLL_MS = 200;
/**
 * Asleep, how often the writer still scans, ms: a table write that nobody announces is seen
 * and switched (nothing can be stale then, so this bounds nothing; it keeps the flush count and
 * the copies of the tables current).
 */
export const SLEEP_SCAN_MS = 1000;
/**
 * Added to an element's timeout before the writer counts it gone: the kernel's clock starts at
 * the add (before its answer, after which the writer takes the time) and counts in jiffies.
 */
const EXPIRY_MARGIN_MS = 50;

/** The start message. */
export interface FastPathStart {
  readonly config: FastPathConfig;
  /** lb: the one target table; flowlb: undefined (the flows' tables). */
  readonly tshm?: string;
  /** The daemon's `--ft_shm` (recorded in the status object: `stats` shows its own fast path). */
  readonly ftShm: string;
  /** One offer ring per queue thread. */
  readonly rings: readonly SharedArrayBuffer[];
  /** The words of lib/fastpath/channel.ts. */
  readonly channel: SharedArrayBuffer;
  /**
   * Int32 [0]: the fd of the writer's live nf_tables socket, -1 while there is none (the
   * writer keeps it, `Atomics`; the main thread closes that socket if this thread dies).
   */
  readonly fd: SharedArrayBuffer;
  /** The status values (`F_*`, `VALUES_BYTES` of lib/fastpath/status.ts): kept here, read by the metrics thread. */
  readonly values: SharedArrayBuffer;
  /** flowlb: the flow version word the main thread stores after posting a snapshot. */
  readonly version?: SharedArrayBuffer;
  readonly stop: SharedArrayBuffer;
  /** flowlb: the queue threads' applied flow and trace-flow versions (2 × lanes words). */
  readonly applied?: SharedArrayBuffer;
  readonly lanes: number;
  /** flowlb: the flows at start. */
  readonly snapshot?: FlowSnapshot;
}

/** What the thread tells the main thread. */
export type FastPathMessage =
  | { type: "ready"; removesByKey: boolean }
  | { type: "error"; message: string }
  | { type: "warning"; message: string }
  | { type: "notice"; message: string }
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
  const flowsVersion = start.version === undefined ? undefined : new Int32Array(start.version);
  let w: FastPathTableWriter | undefined;
  let status: ShmMapping | undefined;
  const name = fastPathStatusName(c.table);
  const watched = new Map<string, WatchedCopy>();
  let trace: TraceShm | undefined;
  try {
    const traceShm = trace = openTraceShm();
    const writer = w = new FastPathTableWriter({
      table: c.table,
      size: c.size,
      timeoutMs: c.timeoutMs,
      priority: PRIORITY,
    }, { fdWord: new Int32Array(start.fd) });
    const problem = writer.setup();
    if (problem !== undefined) {
      scope.postMessage({ type: "error", message: setupProblem(c.table, problem.errno) });
      return;
    }
    status = createStatusObject(name, Deno.pid, start.ftShm);
    const v = new Float64Array(start.values);
    const shown = statusValues(status.buffer);
    const asleep = statusSleepWord(status.buffer);
    /** Copy the values into the status object (`stats`, the table commands' wait). */
    const publish = () => {
      v[F_UP] = writer.up ? 1 : 0;
      shown.set(v);
    };
    publish();
    const names = (s?: FlowSnapshot) =>
      start.tshm !== undefined
        ? [start.tshm]
        : [...new Set(s ? matchingFlows(s).flows.flatMap((f) => f.target ?? []) : [])];
    const watch = (list: string[]) => {
      for (const [n, t] of watched) {
        if (!list.includes(n)) {
          t.close();
          watched.delete(n);
        }
      }
      for (const n of list) if (!watched.has(n)) watched.set(n, new WatchedCopy(n));
    };
    watch(names(start.snapshot));
    for (const t of watched.values()) t.changed(); // the copies to compare with
    /** Version of the flow snapshot whose tables are watched. */
    let watchedVersion = start.snapshot?.version ?? 0;
    let newestFlows: FlowSnapshot | undefined;
    scope.onmessage = (e) => {
      const m = e.data;
      if ("type" in m && m.type === "flows") {
        if (newestFlows === undefined || m.snapshot.version > newestFlows.version) {
          newestFlows = m.snapshot;
        }
      }
    };
    scope.postMessage({ type: "ready", removesByKey: writer.removesByKey });

    const readers = start.rings.map((r) => new OfferReader(r));
    const admission = new Admission(1 << 16, c.minPackets, c.timeoutMs);
    const elements = new ElementClock(c.timeoutMs);
    const pending = [new PendingAdds(0), new PendingAdds(1)];
    const applied = start.applied === undefined ? undefined : new Int32Array(start.applied);
    const relevantMask = TRACE_PACKET | TRACE_SCTP | TRACE_FLOWS;
    let mask = traceShm.words[MASK_WORD] & relevantMask;
    let events = Atomics.load(ch, FP_EVENTS);
    let epoch = Atomics.load(ch, FP_EPOCH);
    let nextScan = 0;
    let nextHits = 0;
    let nextCount = 0;
    /** Until when an element added may be live in the maps in use (0: none since the switch). */
    let liveUntil = 0;
    /** The hit counters were read after the last element expired: they stay as they are. */
    let hitsFinal = false;
    const fullUntil = [0, 0];
    const warned = new Map<string, number>();
    /** Creates the table again after a failure removed it. */
    const restorer = new Restorer(writer, c.table, RESTORE_MS);
    const notice = (message: string) => scope.postMessage({ type: "notice", message });
    /** A warning, at most once a minute per kind. */
    const warn = (p: NftProblem) => {
      const now = performance.now();
      if (now - (warned.get(p.what) ?? -Infinity) < 60_000) return;
      warned.set(p.what, now);
      scope.postMessage({ type: "warning", message: `fastpath: ${p.what}: ${strerror(p.errno)}` });
    };
    /** Problem `p` made the writer remove the table: say so; it is created again (below). */
    const tableRemoved = (p: NftProblem) => {
      warn({
        errno: p.errno,
        what: `${p.what}; the table is removed (no packet is marked) and created again`,
      });
      restorer.removed(performance.now());
    };
    const minApplied = (from: number) => {
      if (applied === undefined) return 0;
      let m = Atomics.load(applied, from);
      for (let i = 1; i < start.lanes; i++) m = Math.min(m, Atomics.load(applied, from + i));
      return m;
    };

    /**
     * A decision may have changed: the flow versions in use now, then a new epoch (older
     * offers are dropped), then the rules move to the other side, whose maps are empty. If
     * that fails, the writer has removed the table: nothing is marked until it is created
     * again (below), so either way no packet keeps an old mark after this.
     */
    const flush = (since: number) => {
      const flows = Math.min(minApplied(0), watchedVersion);
      const traces = minApplied(start.lanes);
      epoch = (epoch + 1) | 0;
      Atomics.store(ch, FP_EPOCH, epoch);
      const p = writer.switchSides();
      if (p !== undefined) tableRemoved(p);
      elements.clear();
      liveUntil = 0;
      pending[0].count = pending[1].count = 0;
      const us = Math.round((performance.now() - since) * 1000);
      v[F_FLUSHES]++;
      v[F_LAST_FLUSH_US] = us;
      if (us > v[F_MAX_FLUSH_US]) v[F_MAX_FLUSH_US] = us;
      Atomics.store(ch, FP_FLOWS_FLUSHED, flows);
      Atomics.store(ch, FP_TRACES_FLUSHED, traces);
      Atomics.notify(ch, FP_FLOWS_FLUSHED);
      Atomics.notify(ch, FP_TRACES_FLUSHED);
    };
    /**
     * The socket failed outside a switch (problem `p`): the writer has removed the table. Offers
     * of the epoch (and the admission's memory of what was added) are void, the maps are empty.
     */
    const lost = (p: NftProblem) => {
      epoch = (epoch + 1) | 0;
      Atomics.store(ch, FP_EPOCH, epoch);
      elements.clear();
      liveUntil = 0;
      pending[0].count = pending[1].count = 0;
      tableRemoved(p);
    };
    const scan = () => {
      const since = performance.now();
      if (newestFlows !== undefined) {
        watch(names(newestFlows));
        watchedVersion = newestFlows.version;
        newestFlows = undefined;
      }
      let changed = false;
      for (const t of watched.values()) if (t.changed()) changed = true;
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
      if (changed) flush(since);
      // A scan counts (the table commands wait for two) once the maps in use are right: switched,
      // or none (the table removed after a failed switch).
      v[F_SCANS]++;
    };
    const send = (f: number, now: number) => {
      const p = pending[f];
      if (p.count === 0) return;
      const problem = writer.add(p);
      // Answered (or failed): the kernel's timeout of these elements started before this.
      liveUntil = performance.now() + c.timeoutMs + EXPIRY_MARGIN_MS;
      hitsFinal = false;
      if (problem === undefined) {
        v[F_ADDS] += p.count;
        elements.added(p.count, now);
      } else if (!writer.up) {
        v[F_ADD_FAILURES] += p.count;
        lost(problem); // empties `pending`
      } else {
        v[F_ADD_FAILURES] += p.count;
        for (let i = 0; i < p.count; i++) admission.forget(p.keys, i * KEY6_LEN, keyLen(f));
        if (problem.errno === ENFILE) {
          v[F_MAP_FULL]++;
          fullUntil[f] = now + FULL_BACKOFF_MS;
        } else if (problem.errno !== EBUSY) {
          // EBUSY: a tuple re-added with another mark while a table change awaits its scan.
          warn(problem);
        }
      }
      p.count = 0;
    };
    const readHits = () => {
      if (performance.now() >= liveUntil) hitsFinal = true;
      const h = writer.hits();
      if (h.v4 !== undefined) v[F_HITS4] = h.v4;
      if (h.v6 !== undefined) v[F_HITS6] = h.v6;
      if (h.problem !== undefined) lost(h.problem);
    };

    /** Whether something waits: offers, a decision change, a flow snapshot not taken, stop. */
    const work = () =>
      Atomics.load(stop, 0) !== 0 || Atomics.load(ch, FP_EVENTS) !== events ||
      (flowsVersion !== undefined && Atomics.load(flowsVersion, 0) > watchedVersion) ||
      readers.some((r) => r.waiting());
    /**
     * Sleep while nothing can be stale (see the module doc and lib/fastpath/channel.ts) until
     * woken or stopped. Returns at once when the writer may not sleep now.
     */
    const sleep = (now: number) => {
      if (!writer.up || writer.dirty((1 - writer.side) as Side) || now < liveUntil) return;
      if (newestFlows !== undefined || work()) return;
      if (!hitsFinal) {
        readHits(); // the last values: no element is left to hit
        if (!writer.up) return;
      }
      v[F_ELEMENTS] = 0;
      publish();
      // Status word first (the table commands stop waiting), then the doorbell word; then one
      // more look (the queue threads publish, then read the doorbell word).
      Atomics.store(asleep, 0, 1);
      Atomics.store(ch, FP_SLEEP, 1);
      const until = now + SLEEP_SCAN_MS;
      while (!work()) {
        Atomics.wait(ch, FP_SLEEP, 1, SLEEP_POLL_MS);
        if (Atomics.load(ch, FP_SLEEP) !== 1) break; // rung
        const t = performance.now();
        if (t >= until) break; // the scan of a sleeping writer
        restorer.flush(t, notice);
      }
      Atomics.store(ch, FP_SLEEP, 0);
      // A full fence before the scan reads the tables: a table command that saw 1 did not wait,
      // so this scan must see its write (daemon/fastpath_wait.ts).
      Atomics.exchange(asleep, 0, 0);
      nextScan = 0; // scan before any add
    };

    const idle = new Int32Array(new SharedArrayBuffer(4));
    while (Atomics.load(stop, 0) === 0) {
      // flowlb: a new flow snapshot is posted before its version is stored: take it first.
      while (
        flowsVersion !== undefined && Atomics.load(flowsVersion, 0) > watchedVersion &&
        (newestFlows?.version ?? -1) < Atomics.load(flowsVersion, 0) && Atomics.load(stop, 0) === 0
      ) {
        await new Promise((r) => setTimeout(r, 0));
      }
      let now = performance.now();
      if (now >= nextScan) {
        scan();
        publish(); // the table commands wait for the scans
        nextScan = now + SCAN_MS;
      }
      if (now >= nextHits) {
        if (!hitsFinal) readHits(); // final once no element can be live: nothing left to hit
        restorer.flush(now, notice); // "... repeated N times" of a minute that ended
        nextHits = now + HITS_MS;
      }
      if (!writer.up) {
        const p = restorer.step(now, notice); // after a failure removed the table
        if (p !== undefined) warn(p);
      }
      let offered = 0;
      for (const r of readers) {
        while (r.next()) {
          offered++;
          if (r.epoch !== (epoch >>> 0)) continue; // decided before the last change
          if (!writer.up) continue; // no table: every packet takes the queue path
          const f = r.keyLen === KEY4_LEN ? 0 : 1;
          if (now < fullUntil[f]) {
            v[F_MAP_FULL_SKIPS]++;
            continue;
          }
          if (!admission.admit(r.bytes, r.keyAt, r.keyLen, epoch, now)) continue;
          if (pending[f].push(r.bytes, r.keyAt, r.mark)) {
            send(f, now);
            now = performance.now();
            if (now >= nextScan) break; // scans first: they bound how stale a mark can be
          }
        }
        r.release();
        if (now >= nextScan) break;
      }
      send(0, now);
      send(1, now);
      // Empty the side not in use, a step at a time between scans and adds.
      if (writer.up && writer.dirty((1 - writer.side) as Side)) {
        const p = writer.cleanStep();
        if (p !== undefined && writer.up) warn(p);
        else if (p !== undefined) lost(p);
      }
      if (now >= nextCount) {
        let drops = 0;
        for (const r of readers) drops += r.dropped;
        v[F_RING_DROPS] = drops;
        v[F_ELEMENTS] = elements.count(now);
        nextCount = now + COUNT_MS;
      }
      publish();
      // Sleep 1 ms unless there is a backlog: offers wait in the rings (4096 slots per queue
      // thread last 1 ms up to 4M offers/s), and a trickle of new flows does not keep this
      // thread spinning.
      if (offered === 0) sleep(now);
      if (offered < BATCH_ELEMENTS && nextScan !== 0) Atomics.wait(idle, 0, 0, 1);
    }
  } catch (e) {
    const message = e instanceof LibcError || e instanceof DaemonError
      ? `fastpath: ${e.message}`
      : String(e);
    scope.postMessage({ type: "error", message });
  } finally {
    new Float64Array(start.values)[F_UP] = 0; // for the metrics thread: no table from now on
    for (const t of watched.values()) t.close();
    trace?.close();
    if (status !== undefined) {
      // Only if the name still is our object: after it was removed by hand, another daemon with
      // this table may have made its own (while our table was down after a failed switch).
      try {
        unlinkShmIfSame(status);
      } catch {
        // removed by hand: nothing left to do
      }
      status.close();
    }
    w?.close(); // the kernel removes the owned table with the socket
    // Nobody waits for a switch that will not come.
    Atomics.store(ch, FP_FLOWS_FLUSHED, 0x7fffffff);
    Atomics.store(ch, FP_TRACES_FLUSHED, 0x7fffffff);
    Atomics.notify(ch, FP_FLOWS_FLUSHED);
    Atomics.notify(ch, FP_TRACES_FLUSHED);
  }
  scope.postMessage({ type: "stopped" });
}

scope.onmessage = (e) => {
  const m = e.data;
  if ("config" in m) void run(m);
};
