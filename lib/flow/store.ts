/**
 * The flow lists of `flowlb` (docs/COMPATIBILITY.md#flows, #trace-and-log): set/delete semantics,
 * stable priority order, SCTP-over-UDP helper flows, target reference
 * counting, trace flows, and lock-free `matches_count` counters.
 *
 * ## Snapshots
 * Every change publishes a new immutable {@link FlowSnapshot}: the flows in
 * matching order, a parallel array of counter slots and a version number
 * (incremented per change). A classifier is compiled from a snapshot off the
 * hot path and swapped in atomically; listeners registered with
 * {@link FlowList.onChange} are told about every new snapshot. Snapshots are
 * plain data (arrays, frozen objects, typed arrays), so they can be posted to
 * worker threads with `postMessage`.
 *
 * ## matches_count
 * Counters live outside the immutable flows, in a {@link MatchCounters}
 * `SharedArrayBuffer` of `lanes × capacity` u32 cells. Each packet thread owns
 * one lane and, when flow `i` of its snapshot matches, does
 * `lane[snapshot.slots[i]]++` — a single writer per cell, so no locks or
 * atomics are needed (aligned 32-bit typed-array accesses do not tear). Lanes
 * are 64-byte aligned so threads do not share cache lines. The listed
 * `matches_count` is the u32 sum over the lanes.
 *
 * Every flow definition gets its own slot: a redefinition gets a fresh,
 * zeroed slot (which is how `matches_count` is reset), a deletion retires the
 * slot. Never-used slots are handed out first; retired slots are reused
 * oldest-first, so a stale classifier would have to survive about
 * `capacity − live flows` later retirements before its increments could land
 * on a reused slot.
 *
 * ## Pending flows (docs/COMPATIBILITY.md#differences D58)
 * A flow restored from `--flow-state` whose table cannot be mapped yet (after a reboot
 * `/dev/shm` is empty) is kept *pending* instead of refused: it is listed, saved and can be
 * replaced or deleted like any flow, but it holds no target reference and matches nothing
 * (`snapshot.pending[i]` is 1; {@link matchingFlows} leaves it out). {@link FlowStore.activatePending}
 * makes it a normal flow once its table maps. A `#name` helper is pending with its flow.
 *
 * ## Atomicity (docs/COMPATIBILITY.md#differences D16)
 * `set` validates everything before changing anything; the only side effect
 * before the commit is acquiring a target, which is released again on every
 * failure path. Target names are acquired exactly once per flow binding and
 * released when the binding goes away (replacement with another target,
 * deletion).
 *
 * @example
 * ```ts
 * import { FlowStore } from "./store.ts";
 * const store = new FlowStore({ acquire: () => true, release: () => {} });
 * store.set({ name: "a", target: "lb-a", priority: "3" }); // "OK"
 * store.flows.snapshot.flows.map((f) => f.name); // ["a"]
 * store.delete("a"); // "OK"
 * ```
 * @module
 */
import {
  checkName,
  checkUdpencap,
  type FlowFields,
  HELPER_PREFIX,
  helperFlow,
  parseFlow,
  parseUdpencap,
} from "./parse.ts";
import type { FlowListEntry } from "./format.ts";
import type { Flow } from "./types.ts";

/** Reply texts of the store (docs/COMPATIBILITY.md#flows). */
export const REPLY = {
  ok: "OK",
  noName: "FAIL: no name",
  alterUdpencap: "FAIL: Alter udpencap not allowed",
  createLb: "FAIL: Couldn't create load-balancer",
  createNewLb: "FAIL: Couldn't create new load-balancer",
  /** Not in 1.2.0 (no limit there): the counter slots are exhausted. */
  tooManyFlows: "FAIL: too many flows",
} as const;

/**
 * The target tables flows refer to by shm name. `acquire` is called once per
 * flow that starts referring to `name` (map the table on the first reference;
 * `false` when it cannot be opened), `release` once when that reference
 * ends (unmap on the last one).
 */
export interface TargetRegistry {
  /** Take a reference to target `name`; `false` if the table cannot be mapped. */
  acquire(name: string): boolean;
  /** Drop a reference taken by a successful {@link TargetRegistry.acquire}. */
  release(name: string): void;
  /**
   * Why the last failed {@link TargetRegistry.acquire} of `name` failed, with the fix (one line,
   * for the reply's note, D65); undefined when not known.
   */
  problem?(name: string): string | undefined;
}

/**
 * A reply (1.2.0's text) and its note: the cause and the fix of a failure, or a warning about
 * a request that did nothing; the control protocol sends the note after the reply's NUL (D65).
 */
export interface Answer {
  readonly reply: string;
  readonly note?: string;
}

/** The note of a delete that found nothing. */
function noSuchFlow(what: string, name: string): string {
  return `no ${what} named [${name}]; nothing deleted`;
}

/** No flow pending. */
const NONE_PENDING: ReadonlySet<Flow> = new Set();

/** Cells per 64-byte cache line. */
const LINE_CELLS = 16;

/**
 * Per-thread `matches_count` counters in a `SharedArrayBuffer`: `lanes`
 * regions of `capacity` u32 cells, each region 64-byte aligned. A worker
 * rebuilds the same view with `new MatchCounters(lanes, capacity, buffer)`.
 */
export class MatchCounters {
  /** The shared memory (post it to workers). */
  declare readonly buffer: SharedArrayBuffer;
  /** Number of lanes (one per packet thread). */
  declare readonly lanes: number;
  /** Slots per lane. */
  declare readonly capacity: number;
  /** Cells between the starts of two lanes (capacity rounded up to a cache line). */
  declare readonly stride: number;
  /** All cells. */
  declare readonly cells: Uint32Array;

  /** Allocate (or, with `buffer`, attach to) counters for `lanes` × `capacity` slots. */
  constructor(lanes: number, capacity: number, buffer?: SharedArrayBuffer) {
    if (!Number.isInteger(lanes) || lanes < 1 || !Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`MatchCounters: bad lanes ${lanes} / capacity ${capacity}`);
    }
    const stride = Math.ceil(capacity / LINE_CELLS) * LINE_CELLS;
    const bytes = lanes * stride * 4;
    const buf = buffer ?? new SharedArrayBuffer(bytes);
    if (buf.byteLength < bytes) throw new RangeError("MatchCounters: buffer too small");
    this.buffer = buf;
    this.lanes = lanes;
    this.capacity = capacity;
    this.stride = stride;
    this.cells = new Uint32Array(buf, 0, lanes * stride);
  }

  /** The cells of lane `i`, indexed by slot: a packet thread does `lane[slot]++`. */
  lane(i: number): Uint32Array {
    return this.cells.subarray(i * this.stride, i * this.stride + this.capacity);
  }

  /** `matches_count` of a slot: the sum over all lanes, modulo 2^32. */
  count(slot: number): number {
    let sum = 0;
    for (let l = 0; l < this.lanes; l++) sum += this.cells[l * this.stride + slot];
    return sum >>> 0;
  }

  /** Zero a slot in every lane. */
  clear(slot: number): void {
    for (let l = 0; l < this.lanes; l++) this.cells[l * this.stride + slot] = 0;
  }
}

/**
 * An immutable flow list state. `flows` are in matching (= listing) order;
 * `slots[i]` is the {@link MatchCounters} slot of `flows[i]` (never mutate
 * `slots`); `pending[i]` is 1 when `flows[i]` waits for its table (it matches nothing) and
 * `pendingCount` how many are. `version` increases by one per change, starting at 0 (empty).
 */
export interface FlowSnapshot {
  readonly version: number;
  readonly flows: readonly Flow[];
  readonly slots: Uint32Array;
  readonly pending: Uint8Array;
  readonly pendingCount: number;
}

/**
 * The flows of `s` that match packets, with their slots: `s` itself when none is pending,
 * else new arrays without the pending ones (built off the hot path, once per snapshot).
 */
export function matchingFlows(
  s: FlowSnapshot,
): { readonly flows: readonly Flow[]; readonly slots: Uint32Array } {
  if (s.pendingCount === 0) return s;
  const keep = s.flows.flatMap((_, i) => s.pending[i] === 0 ? [i] : []);
  return { flows: keep.map((i) => s.flows[i]), slots: Uint32Array.from(keep, (i) => s.slots[i]) };
}

/** Hands out counter slots: never-used ones first, then retired ones oldest-first. */
class SlotAllocator {
  #next = 0;
  #retired: number[] = [];
  #head = 0;
  declare readonly capacity: number;
  declare readonly counters: MatchCounters;

  constructor(counters: MatchCounters) {
    this.counters = counters;
    this.capacity = counters.capacity;
  }

  /** Slots that {@link SlotAllocator.take} can hand out now. */
  available(): number {
    return this.capacity - this.#next + this.#retired.length - this.#head;
  }

  /** A zeroed slot; call only when {@link SlotAllocator.available} > 0. */
  take(): number {
    if (this.#next < this.capacity) return this.#next++;
    const slot = this.#retired[this.#head++];
    if (this.#head > 1024 && this.#head * 2 > this.#retired.length) {
      this.#retired = this.#retired.slice(this.#head);
      this.#head = 0;
    }
    this.counters.clear(slot);
    return slot;
  }

  /** Give a slot back (it is reused last). */
  retire(slot: number): void {
    this.#retired.push(slot);
  }
}

/** Descending priority, proper comparison (docs/COMPATIBILITY.md#differences D17). */
function byPriorityDesc(a: Flow, b: Flow): number {
  return a.priority > b.priority ? -1 : a.priority < b.priority ? 1 : 0;
}

/**
 * One ordered flow list (normal flows or trace flows) with its counters and
 * snapshots. Changes go through {@link FlowList.apply}; {@link FlowStore}
 * adds the set/delete rules on top.
 */
export class FlowList {
  /** The `matches_count` counters of this list. */
  declare readonly counters: MatchCounters;
  #alloc: SlotAllocator;
  #snapshot: FlowSnapshot;
  /** Name → position in the current snapshot, built on first lookup after a change. */
  #byName: Map<string, number> | undefined;
  #listeners = new Set<(snapshot: FlowSnapshot) => void>();

  /** An empty list whose counters have `lanes` lanes and `capacity` slots. */
  constructor(lanes: number, capacity: number) {
    this.counters = new MatchCounters(lanes, capacity);
    this.#alloc = new SlotAllocator(this.counters);
    this.#snapshot = Object.freeze({
      version: 0,
      flows: Object.freeze([]),
      slots: new Uint32Array(0),
      pending: new Uint8Array(0),
      pendingCount: 0,
    });
  }

  /** The current snapshot. */
  get snapshot(): FlowSnapshot {
    return this.#snapshot;
  }

  /** Position of the flow named `name` (exact comparison), or -1. */
  indexOf(name: string): number {
    if (this.#byName === undefined) {
      const m = new Map<string, number>();
      this.#snapshot.flows.forEach((f, i) => m.set(f.name, i));
      this.#byName = m;
    }
    return this.#byName.get(name) ?? -1;
  }

  /** Counter slots that {@link FlowList.apply} can still hand out. */
  available(): number {
    return this.#alloc.available();
  }

  /** The flow named `name` with its count, if any. */
  get(name: string): FlowListEntry | undefined {
    const i = this.indexOf(name);
    if (i < 0) return undefined;
    return this.#entry(i);
  }

  /** All flows in order with their counts. */
  entries(): FlowListEntry[] {
    return this.#snapshot.flows.map((_, i) => this.#entry(i));
  }

  /** Whether the flow named `name` exists and is pending. */
  isPending(name: string): boolean {
    const i = this.indexOf(name);
    return i >= 0 && this.#snapshot.pending[i] !== 0;
  }

  #entry(i: number): FlowListEntry {
    const s = this.#snapshot;
    const e = { flow: s.flows[i], matchesCount: this.#count(i) };
    return s.pending[i] === 0 ? e : { ...e, pending: true };
  }

  /** All names in order. */
  names(): string[] {
    return this.#snapshot.flows.map((f) => f.name);
  }

  #count(i: number): number {
    return this.counters.count(this.#snapshot.slots[i]);
  }

  /**
   * Register a listener for new snapshots (called synchronously after each
   * change; a throwing listener does not undo the change, its error is
   * rethrown asynchronously). Returns the unsubscribe function.
   */
  onChange(listener: (snapshot: FlowSnapshot) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * One atomic change: each flow of `put` replaces the flow of the same name
   * in place (with a fresh counter) or is appended, in `put` order, pending when it is in
   * `pending`; flows named in `remove` are removed; then the list is stably sorted by
   * descending priority and published. Returns `false` (and changes
   * nothing) when there are not enough counter slots.
   */
  apply(
    put: readonly Flow[],
    remove: readonly string[] = [],
    pending: ReadonlySet<Flow> = NONE_PENDING,
  ): boolean {
    if (this.#alloc.available() < put.length) return false;
    const old = this.#snapshot;
    const flows = old.flows.slice();
    const slots = Array.from(old.slots);
    const pend = Array.from(old.pending);
    const retired: number[] = [];
    // Positions by name: the snapshot's own index plus the flows appended here (one lookup per
    // put, so a bulk load stays linear).
    const appended = new Map<string, number>();
    for (const f of put) {
      const i = appended.get(f.name) ?? this.indexOf(f.name);
      const slot = this.#alloc.take();
      const p = pending.has(f) ? 1 : 0;
      if (i >= 0) {
        retired.push(slots[i]);
        flows[i] = f;
        slots[i] = slot;
        pend[i] = p;
      } else {
        appended.set(f.name, flows.length);
        flows.push(f);
        slots.push(slot);
        pend.push(p);
      }
    }
    for (const name of remove) {
      const i = flows.findIndex((g) => g.name === name);
      if (i < 0) continue;
      retired.push(slots[i]);
      flows.splice(i, 1);
      slots.splice(i, 1);
      pend.splice(i, 1);
    }
    const order = flows.map((_, i) => i).sort((a, b) => byPriorityDesc(flows[a], flows[b]));
    this.#publish(
      order.map((i) => flows[i]),
      Uint32Array.from(order, (i) => slots[i]),
      Uint8Array.from(order, (i) => pend[i]),
    );
    for (const s of retired) this.#alloc.retire(s);
    return true;
  }

  /**
   * Make the pending flows named in `names` match (same positions, same counters) and
   * publish; returns `false` (nothing published) when none of them is pending.
   */
  activate(names: ReadonlySet<string>): boolean {
    const old = this.#snapshot;
    const pend = old.pending.slice();
    let changed = false;
    old.flows.forEach((f, i) => {
      if (pend[i] !== 0 && names.has(f.name)) {
        pend[i] = 0;
        changed = true;
      }
    });
    if (changed) this.#publish(old.flows, old.slots, pend);
    return changed;
  }

  /** Publish a new snapshot (next version) and tell the listeners. */
  #publish(flows: readonly Flow[], slots: Uint32Array, pending: Uint8Array): void {
    let pendingCount = 0;
    for (const p of pending) pendingCount += p;
    this.#snapshot = Object.freeze({
      version: this.#snapshot.version + 1,
      flows: Object.isFrozen(flows) ? flows : Object.freeze(flows),
      slots,
      pending,
      pendingCount,
    });
    this.#byName = undefined;
    for (const l of this.#listeners) {
      try {
        l(this.#snapshot);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }
}

/**
 * A validated `set` whose target is acquired (or, `pending`, could not be and the flows wait
 * for it): apply `put`, then `commit` (or `fail`).
 */
interface PreparedSet {
  readonly existing: Flow | undefined;
  readonly put: Flow[];
  /** The flows of `put` wait for their table (no target reference is held). */
  readonly pending: boolean;
  /** Release what was acquired and return `error` with its `note`. */
  readonly fail: (error: string, note?: string) => Answer;
  /** Release the replaced flow's target. */
  readonly commit: () => void;
}

/** Sizes of a {@link FlowStore}. */
export interface FlowStoreOptions {
  /** Counter lanes, one per packet thread (default 1). */
  readonly lanes?: number;
  /** Counter slots of the flow list (default 65536); bounds live + recently deleted flows. */
  readonly capacity?: number;
  /** Counter slots of the trace-flow list (default 4096). */
  readonly traceCapacity?: number;
}

/** A pending flow that {@link FlowStore.activatePending} made a normal flow. */
export interface ActivatedFlow {
  readonly name: string;
  readonly target: string;
}

/**
 * The flows and trace flows of one `flowlb`, with the exact set/delete
 * replies of docs/COMPATIBILITY.md#flows, #trace-and-log. Every method returns the reply text (without
 * the NUL terminator).
 */
export class FlowStore {
  /** The normal flows (each with a target, or a `#name` helper). */
  declare readonly flows: FlowList;
  /** The trace flows (no targets). */
  declare readonly traces: FlowList;
  #targets: TargetRegistry;

  /** An empty store using `targets` for target tables. */
  constructor(targets: TargetRegistry, options: FlowStoreOptions = {}) {
    const lanes = options.lanes ?? 1;
    this.flows = new FlowList(lanes, options.capacity ?? 65536);
    this.traces = new FlowList(lanes, options.traceCapacity ?? 4096);
    this.#targets = targets;
  }

  /**
   * `set` (docs/COMPATIBILITY.md#flows): replies `OK` or the first error of: `Name too long` /
   * `Invalid name`; `FAIL: Alter udpencap not allowed`; `FAIL: Couldn't
   * create new load-balancer` (redefinition with another target) or `FAIL:
   * Couldn't create load-balancer`; `FAIL: only sctp for updencap`; the
   * field errors of `parseFlow`; `FAIL: too many flows`. On failure nothing
   * changes and any target acquired on the way is released.
   */
  set(fields: FlowFields): string {
    return this.setAnswer(fields).reply;
  }

  /** {@link FlowStore.set} with the note of a failure (the bad value, the table's problem). */
  setAnswer(fields: FlowFields): Answer {
    const p = this.#prepareSet(fields, false);
    if (!("put" in p)) return p;
    if (!this.flows.apply(p.put, [], p.pending ? new Set(p.put) : NONE_PENDING)) {
      return p.fail(REPLY.tooManyFlows);
    }
    p.commit();
    return { reply: REPLY.ok };
  }

  /**
   * The `set` of each of `list` in order, as one bulk load (the `--flow-state` restore): the
   * resulting listing, order and replies are exactly those of calling {@link FlowStore.set} for
   * each entry, but flows with new names are published together, so loading n flows is linear
   * (a replacement of an existing or earlier entry is applied on its own, in sequence). Fewer
   * snapshots are published (the version grows by less than one per flow).
   *
   * With `keepMissing` (the restore) a flow whose target cannot be acquired is not refused:
   * it is kept pending (see the module comment) and its reply is `OK`.
   */
  setMany(list: readonly FlowFields[], keepMissing = false): string[] {
    const replies: string[] = [];
    let batch: Flow[] = [];
    const batchNames = new Set<string>();
    const waiting = new Set<Flow>();
    const flush = () => {
      if (batch.length === 0) return;
      this.flows.apply(batch, [], waiting); // capacity was checked per entry
      batch = [];
      batchNames.clear();
      waiting.clear();
    };
    for (const fields of list) {
      if (fields.name !== undefined && batchNames.has(fields.name)) flush();
      const p = this.#prepareSet(fields, keepMissing);
      if (!("put" in p)) {
        replies.push(p.reply);
        continue;
      }
      const replaces = p.existing !== undefined ||
        p.put.some((f) => batchNames.has(f.name) || this.flows.indexOf(f.name) >= 0);
      if (replaces) {
        flush();
        if (!this.flows.apply(p.put, [], p.pending ? new Set(p.put) : NONE_PENDING)) {
          replies.push(p.fail(REPLY.tooManyFlows).reply);
          continue;
        }
      } else {
        if (this.flows.available() - batch.length < p.put.length) {
          replies.push(p.fail(REPLY.tooManyFlows).reply);
          continue;
        }
        for (const f of p.put) {
          batch.push(f);
          batchNames.add(f.name);
          if (p.pending) waiting.add(f);
        }
      }
      p.commit();
      replies.push(REPLY.ok);
    }
    flush();
    return replies;
  }

  /**
   * Everything of `set` up to the commit: an error reply, or the flows to put. A target that
   * cannot be acquired is refused, except that the flows are pending instead when
   * `keepMissing` is set, or when they replace a pending flow with the same target.
   */
  #prepareSet(fields: FlowFields, keepMissing: boolean): Answer | PreparedSet {
    const nameError = checkName(fields.name);
    if (nameError !== undefined) return { reply: nameError };
    const name = fields.name!;
    const udpencap = parseUdpencap(fields.udpencap);
    const existing = this.flows.get(name)?.flow;
    const existingPending = existing !== undefined && this.flows.isPending(name);
    const target = fields.target;
    let acquired: string | undefined;
    let pending = false;
    if (existing !== undefined) {
      if (existing.udpencap !== udpencap) {
        return {
          reply: REPLY.alterUdpencap,
          note: `flow [${name}] has udpencap ${existing.udpencap}: delete it first ` +
            `(nfqlb flow-delete --name=${name}) to change it`,
        };
      }
      if (target !== existing.target || existingPending) {
        if (target !== undefined && this.#targets.acquire(target)) acquired = target;
        else if (target !== undefined && (keepMissing || target === existing.target)) {
          pending = true;
        } else return this.#targetFailure(REPLY.createNewLb, target);
      }
    } else {
      if (target !== undefined && this.#targets.acquire(target)) acquired = target;
      else if (target !== undefined && keepMissing) pending = true;
      else return this.#targetFailure(REPLY.createLb, target);
    }
    const fail = (error: string, note?: string): Answer => {
      if (acquired !== undefined) this.#targets.release(acquired);
      return { reply: error, note };
    };
    const encapError = checkUdpencap(udpencap, fields.protocols);
    if (encapError !== undefined) {
      const given = fields.protocols === undefined ? "none" : `[${fields.protocols}]`;
      return fail(encapError, `udpencap ${udpencap} needs protocols=sctp alone, got ${given}`);
    }
    const parsed = parseFlow(fields);
    if (!parsed.ok) return fail(parsed.error, parsed.detail);
    const flow = parsed.flow;
    const put = flow.udpencap !== 0 ? [helperFlow(flow), flow] : [flow];
    const commit = () => {
      // A pending flow holds no reference; a replacement keeps the one it had unless it took
      // a new one.
      if (
        (acquired !== undefined || pending) && existing?.target !== undefined && !existingPending
      ) {
        this.#targets.release(existing.target);
      }
    };
    return { existing, put, pending, fail, commit };
  }

  /** The reply `reply` to a set whose `target` cannot be used, with the registry's reason. */
  #targetFailure(reply: string, target: string | undefined): Answer {
    const note = target === undefined
      ? "the request has no target (nfqlb flow-set --target=SHM)"
      : this.#targets.problem?.(target);
    return { reply, note };
  }

  /**
   * Make pending flows whose table maps now normal flows: `ready(target)` is asked once per
   * target of a pending flow (a cheap probe, untraced), then each flow on a ready target
   * takes its reference as a `set` does. Publishes one snapshot; returns the flows activated.
   */
  activatePending(ready: (target: string) => boolean): ActivatedFlow[] {
    const s = this.flows.snapshot;
    if (s.pendingCount === 0) return [];
    const probed = new Map<string, boolean>();
    const names = new Set<string>();
    const out: ActivatedFlow[] = [];
    s.flows.forEach((f, i) => {
      const target = f.target;
      if (s.pending[i] === 0 || target === undefined) return;
      let ok = probed.get(target);
      if (ok === undefined) probed.set(target, ok = ready(target));
      if (!ok || !this.#targets.acquire(target)) return;
      names.add(f.name);
      names.add(HELPER_PREFIX + f.name);
      out.push({ name: f.name, target });
    });
    if (names.size > 0) this.flows.activate(names);
    return out;
  }

  /**
   * `delete` (docs/COMPATIBILITY.md#flows): `FAIL: no name` without a name, else `OK` whether or
   * not the flow existed; also removes its `#name` helper and releases its
   * target. Helper flows cannot be deleted on their own (a `#…` name is
   * ignored) so that a flow with udpencap always has its helper.
   */
  delete(name: string | undefined): string {
    return this.deleteAnswer(name).reply;
  }

  /**
   * {@link FlowStore.delete} with a note when nothing was deleted (the reply stays `OK`:
   * deletes are idempotent for 1.2.0's clients).
   */
  deleteAnswer(name: string | undefined): Answer {
    if (name === undefined) return { reply: REPLY.noName };
    if (name.startsWith(HELPER_PREFIX)) {
      return {
        reply: REPLY.ok,
        note: `[${name}] is a helper flow; nothing deleted (it goes with flow ` +
          `[${name.slice(HELPER_PREFIX.length)}])`,
      };
    }
    const existing = this.flows.get(name)?.flow;
    if (existing === undefined) return { reply: REPLY.ok, note: noSuchFlow("flow", name) };
    const held = !this.flows.isPending(name);
    this.flows.apply([], [name, HELPER_PREFIX + name]);
    if (existing.target !== undefined && held) this.#targets.release(existing.target);
    return { reply: REPLY.ok };
  }

  /**
   * `trace-set` (docs/COMPATIBILITY.md#trace-and-log): same parsing and name rule as `set`, priority
   * from a raw `priority` field, no target, udpencap ignored; replies `OK`
   * (docs/COMPATIBILITY.md#differences D5) or the first error.
   */
  traceSet(fields: FlowFields): string {
    return this.traceSetAnswer(fields).reply;
  }

  /** {@link FlowStore.traceSet} with the note of a failure (the bad value). */
  traceSetAnswer(fields: FlowFields): Answer {
    const parsed = parseFlow({ ...fields, target: undefined, udpencap: undefined });
    if (!parsed.ok) return { reply: parsed.error, note: parsed.detail };
    return { reply: this.traces.apply([parsed.flow]) ? REPLY.ok : REPLY.tooManyFlows };
  }

  /**
   * The `traceSet` of each of `list` in order, as one bulk load: same listing, order and
   * replies as sequential {@link FlowStore.traceSet} calls (see {@link FlowStore.setMany}).
   */
  traceSetMany(list: readonly FlowFields[]): string[] {
    const replies: string[] = [];
    let pending: Flow[] = [];
    const pendingNames = new Set<string>();
    const flush = () => {
      if (pending.length > 0) this.traces.apply(pending);
      pending = [];
      pendingNames.clear();
    };
    for (const fields of list) {
      const parsed = parseFlow({ ...fields, target: undefined, udpencap: undefined });
      if (!parsed.ok) {
        replies.push(parsed.error);
        continue;
      }
      const name = parsed.flow.name;
      if (pendingNames.has(name) || this.traces.indexOf(name) >= 0) {
        flush();
        replies.push(this.traces.apply([parsed.flow]) ? REPLY.ok : REPLY.tooManyFlows);
      } else if (this.traces.available() - pending.length < 1) {
        replies.push(REPLY.tooManyFlows);
      } else {
        pending.push(parsed.flow);
        pendingNames.add(name);
        replies.push(REPLY.ok);
      }
    }
    flush();
    return replies;
  }

  /** `trace-delete`: `FAIL: no name` without a name, else `OK`. */
  traceDelete(name: string | undefined): string {
    return this.traceDeleteAnswer(name).reply;
  }

  /** {@link FlowStore.traceDelete} with a note when nothing was deleted. */
  traceDeleteAnswer(name: string | undefined): Answer {
    if (name === undefined) return { reply: REPLY.noName };
    if (this.traces.indexOf(name) < 0) {
      return { reply: REPLY.ok, note: noSuchFlow("trace flow", name) };
    }
    this.traces.apply([], [name]);
    return { reply: REPLY.ok };
  }
}
