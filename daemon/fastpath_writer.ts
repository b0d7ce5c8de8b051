/**
 * The fast path's nftables side (docs/FASTPATH.md), used by the writer thread
 * (./fastpath_worker.ts): create the owned table, add elements to the side in use in
 * per-family batches, switch sides on a change, empty the side not in use step by step
 * (or whole, where the kernel cannot remove elements by key without an error for a missing
 * one, before Linux 6.3, or where the key log overflowed), read the hit counters. Every
 * request is acknowledged; a failure is returned, never thrown.
 *
 * Sequence numbers are 32 bits on the wire: the writer keeps them wrapped ({@link nextSeq})
 * and matches the kernel's answers by that value, so it runs past 2^32 messages.
 *
 * A switch that fails (refused, or no answer) removes the table: the writer closes its socket,
 * and the kernel deletes an owned table with its hook before `close` returns, which no error
 * can prevent. So does a socket that fails (LibcError: a send refused with ENOBUFS or ENOMEM,
 * no answer within the receive timeout) in any other request, an add, a removal step or a
 * counter read: what the kernel made of the request and whether a late answer will confuse
 * the next one are unknown. Nothing is marked until {@link FastPathTableWriter.restore} has
 * created the table again, with empty maps, on a new socket.
 * @module
 */
import { type NftChannel, NftSocket } from "../ffi/nft_socket.ts";
import { LibcError } from "../ffi/libc.ts";
import { HOST_LE } from "../lib/nfqueue/codec.ts";
import { NlBuilder } from "../lib/nft/builder.ts";
import {
  batchBegin,
  batchEnd,
  beginSetElements,
  endSetElements,
  flushSet,
  getCounter,
  keyElement,
  nextSeq,
  NFT_MSG_DESTROYSETELEM,
  setElement,
} from "../lib/nft/nf_tables.ts";
import { parseCounterObject, readRuleHandles } from "../lib/nft/replies.ts";
import {
  type FastPathTable,
  HITS4,
  HITS6,
  KEY4_LEN,
  KEY6_LEN,
  MAP4,
  MAP6,
  type RuleBatch,
  setupBatch,
  type Side,
  switchBatch,
} from "../lib/fastpath/nft_table.ts";
import { KeyLog } from "../lib/fastpath/key_log.ts";
import { LogRateLimiter } from "../lib/log/rate_limit.ts";

/** Elements per family per add batch. */
export const BATCH_ELEMENTS = 256;
/** Keys per family per removal batch while a side is emptied. */
const CLEAN_STEP = 512;
/** Most keys a log keeps (per family and side): beyond, the side is flushed whole. */
const LOG_LIMIT = 1 << 18;
/** errno values the writer tells apart. */
export const ENFILE = 23, EBUSY = 16;
/** errno of a request made while the table is removed (after a failed switch). */
const ENOENT = 2;
/** Key length of family `f` (0: IPv4, 1: IPv6). */
export const keyLen = (f: number): number => f === 0 ? KEY4_LEN : KEY6_LEN;

/** A request the kernel refused: errno, and what it was. */
export interface NftProblem {
  readonly errno: number;
  readonly what: string;
}

/** What {@link FastPathTableWriter.hits} read. */
export interface Hits {
  readonly v4: number | undefined;
  readonly v6: number | undefined;
  /** The socket failed: the table is removed. */
  readonly problem?: NftProblem;
}

/** Elements waiting to be added, one family. */
export class PendingAdds {
  readonly keys = new Uint8Array(BATCH_ELEMENTS * KEY6_LEN);
  readonly marks = new Uint8Array(BATCH_ELEMENTS * 4);
  readonly #marks = new DataView(this.marks.buffer);
  count = 0;
  constructor(readonly family: number) {}

  /** Append key `src[at, at + keyLen)` with `mark`; true when the batch is full. */
  push(src: Uint8Array, at: number, mark: number): boolean {
    const len = keyLen(this.family);
    this.keys.set(src.subarray(at, at + len), this.count * KEY6_LEN);
    // `meta mark` holds the mark in host order.
    this.#marks.setUint32(this.count * 4, mark >>> 0, HOST_LE);
    return ++this.count === BATCH_ELEMENTS;
  }
}

/** The problem of a request made while the table is removed. */
function removed(what: string): NftProblem {
  return { errno: ENOENT, what: `${what}: the table is removed` };
}

/** How the writer is made; the defaults are the daemon's. */
export interface WriterOptions {
  /** The first sequence number (default 1; tests start near 2^32 to cross the wrap). */
  readonly firstSeq?: number;
  /** Opens a socket: at construction, and for each re-creation after a failed switch. */
  readonly open?: () => NftChannel;
  /**
   * A shared word (`Int32Array`, index 0) where the writer keeps the fd of its live socket, -1
   * while there is none ({@link FastPathTableWriter.fd}): the main thread reads it if the writer
   * thread dies, and closes that socket so its table goes. Whoever swaps the fd out of the word
   * (`Atomics.compareExchange` here, `Atomics.exchange` there) closes it, so it is closed once.
   */
  readonly fdWord?: Int32Array;
}

/** The daemon's table, through its socket. */
export class FastPathTableWriter {
  readonly #open: () => NftChannel;
  readonly #fdWord: Int32Array | undefined;
  /** The socket; undefined while the table is removed (after a failed switch). */
  #nl: NftChannel | undefined;
  readonly #t: FastPathTable;
  readonly #b = new NlBuilder(128 * 1024);
  /** The next sequence number, always in [0, 2^32). */
  #seq: number;
  /** The side the rules use. */
  side: Side = 0;
  /** Per side and family: the keys added since the side was last emptied. */
  readonly #logs: KeyLog[][];
  /** The kernel removes elements by key without an error for missing ones (Linux >= 6.3). */
  #destroy = true;
  /** Handles of the IPv4 and the IPv6 rule. */
  #handles: [number, number] = [-1, -1];

  /** Open the socket (throws LibcError); {@link setup} creates the table. */
  constructor(t: FastPathTable, opts: WriterOptions = {}) {
    this.#open = opts.open ?? (() => NftSocket.open());
    this.#t = t;
    this.#seq = (opts.firstSeq ?? 1) >>> 0;
    const cap = Math.min(t.size, LOG_LIMIT);
    this.#logs = [0, 1].map(() => [new KeyLog(KEY4_LEN, cap), new KeyLog(KEY6_LEN, cap)]);
    this.#fdWord = opts.fdWord;
    this.#nl = this.#open();
    this.#publish(this.#nl);
  }

  /** Store the live socket's fd in the shared word. */
  #publish(nl: NftChannel): void {
    if (this.#fdWord !== undefined) Atomics.store(this.#fdWord, 0, nl.fd);
  }

  /** The socket's file descriptor, -1 while the table is removed. */
  get fd(): number {
    return this.#nl?.fd ?? -1;
  }

  /** Whether the table exists (false from a failed switch until {@link restore} succeeds). */
  get up(): boolean {
    return this.#nl !== undefined;
  }

  /** The next sequence number (wrapped: below 2^32). */
  get nextSeq(): number {
    return this.#seq;
  }

  /** Take the next sequence number. */
  #take(): number {
    const s = this.#seq;
    this.#seq = nextSeq(s);
    return s;
  }

  /**
   * Send the batch in the builder, begun with sequence number `first`; the requests between
   * its first and last are acknowledged. `rules`: the batch's rule requests, whose echoes give
   * the new handles.
   */
  #commit(nl: NftChannel, first: number, what: string, rules?: RuleBatch): NftProblem | undefined {
    const acks: number[] = [];
    const n = (this.#seq - first) >>> 0; // messages in the batch, its begin and end included
    for (let i = 1; i < n - 1; i++) acks.push((first + i) >>> 0);
    if (acks.length === 0) return undefined;
    const handles: [number, number] = [-1, -1];
    const onReply = rules === undefined
      ? undefined
      : (reply: Uint8Array, len: number) =>
        readRuleHandles(reply, len, (seq, handle) => {
          const i = rules.rules.indexOf(seq);
          if (i >= 0) handles[i] = handle;
        });
    const failed = nl.transact(this.#b.bytes, this.#b.length, acks, onReply);
    if (failed.length > 0) return { errno: failed[0].errno, what };
    if (rules !== undefined) {
      if (handles[0] < 0 || handles[1] < 0) {
        return { errno: 71, /* EPROTO */ what: `${what}: no rule handle` };
      }
      this.#handles = handles;
    }
    return undefined;
  }

  /** Create the table (replacing a stale one), then find out how sides can be emptied. */
  setup(): NftProblem | undefined {
    const nl = this.#nl;
    if (nl === undefined) return removed("create the table");
    const b = this.#b;
    b.reset();
    const first = this.#seq;
    const rules = setupBatch(b, this.#t, first);
    this.#seq = rules.next;
    const p = this.#commit(nl, first, "create the table", rules);
    if (p !== undefined) return p;
    // Remove a key that is not there: an error before Linux 6.3, where the message is unknown.
    b.reset();
    const f2 = this.#seq;
    batchBegin(b, this.#take());
    beginSetElements(b, this.#take(), this.#t.table, MAP4[1], NFT_MSG_DESTROYSETELEM);
    keyElement(b, new Uint8Array(KEY4_LEN), 0, KEY4_LEN);
    endSetElements(b);
    batchEnd(b, this.#take());
    this.#destroy = this.#commit(nl, f2, "probe") === undefined;
    return undefined;
  }

  /** Whether sides are emptied by key (Linux >= 6.3) rather than flushed whole. */
  get removesByKey(): boolean {
    return this.#destroy;
  }

  /**
   * A socket failure `e` (anything else is rethrown) of request `what`: the table is removed
   * (the socket closed), {@link up} turns false.
   */
  #lost(e: unknown, what: string): NftProblem {
    if (!(e instanceof LibcError)) throw e;
    this.#drop();
    return { errno: e.errno, what: `${what}: ${e.call}` };
  }

  /**
   * Add `p`'s elements to the side in use (one batch); the problem, if the kernel refused, or
   * if the socket failed (the table is then removed: {@link up} is false).
   */
  add(p: PendingAdds): NftProblem | undefined {
    try {
      return this.#add(p);
    } catch (e) {
      return this.#lost(e, "add elements");
    }
  }

  #add(p: PendingAdds): NftProblem | undefined {
    const nl = this.#nl;
    if (nl === undefined) return removed("add elements");
    const b = this.#b;
    const f = p.family;
    b.reset();
    const first = this.#seq;
    batchBegin(b, this.#take());
    beginSetElements(b, this.#take(), this.#t.table, this.#map(this.side, f));
    for (let i = 0; i < p.count; i++) {
      setElement(b, p.keys, i * KEY6_LEN, keyLen(f), p.marks.subarray(i * 4), this.#t.timeoutMs);
    }
    endSetElements(b);
    batchEnd(b, this.#take());
    const problem = this.#commit(nl, first, "add elements");
    if (problem === undefined) {
      const log = this.#logs[this.side][f];
      for (let i = 0; i < p.count; i++) log.add(p.keys, i * KEY6_LEN);
    }
    return problem;
  }

  #map(s: Side, f: number): string {
    return f === 0 ? MAP4[s] : MAP6[s];
  }

  /** Whether side `s`'s maps may hold elements. */
  dirty(s: Side): boolean {
    return this.#logs[s].some((l) => l.pending > 0 || l.overflowed);
  }

  /**
   * One step of emptying the side not in use: up to {@link CLEAN_STEP} logged keys per
   * family removed, or both maps flushed whole (no removal by key, or an overflowed log). A
   * socket failure removes the table ({@link up} false) and is returned.
   */
  cleanStep(): NftProblem | undefined {
    try {
      return this.#cleanStep();
    } catch (e) {
      return this.#lost(e, "empty a map");
    }
  }

  #cleanStep(): NftProblem | undefined {
    const nl = this.#nl;
    if (nl === undefined) return removed("empty a map");
    const other = (1 - this.side) as Side;
    const logs = this.#logs[other];
    const b = this.#b;
    b.reset();
    const first = this.#seq;
    batchBegin(b, this.#take());
    const whole = !this.#destroy || logs.some((l) => l.overflowed);
    for (let f = 0; f < 2; f++) {
      if (whole) {
        flushSet(b, this.#take(), this.#t.table, this.#map(other, f));
        continue;
      }
      const log = logs[f];
      const k = log.take(CLEAN_STEP);
      if (k === 0) continue;
      beginSetElements(b, this.#take(), this.#t.table, this.#map(other, f), NFT_MSG_DESTROYSETELEM);
      for (let i = 0; i < k; i++) keyElement(b, log.bytes, (log.from + i) * log.keyLen, log.keyLen);
      endSetElements(b);
    }
    batchEnd(b, this.#take());
    const problem = this.#commit(nl, first, "empty a map");
    if (problem !== undefined) {
      // Keys taken out of the log may still be in the map: flush that side whole later.
      for (const l of logs) l.overflowed = true;
    } else if (whole) {
      for (const l of logs) l.clear();
    }
    return problem;
  }

  /**
   * Make the rules use the other side (emptied first if need be). On any failure (a request
   * refused, or a socket error such as no answer) the table is removed ({@link up} turns
   * false): the old side's marks can no longer be used, and {@link restore} creates the table
   * again. Without a table (up false) there is nothing to switch: returns undefined.
   */
  switchSides(): NftProblem | undefined {
    const nl = this.#nl;
    if (nl === undefined) return undefined;
    let p: NftProblem | undefined;
    try {
      p = this.#switch(nl);
    } catch (e) {
      if (!(e instanceof LibcError)) throw e;
      p = { errno: e.errno, what: `switch maps: ${e.call}` };
    }
    if (p !== undefined) this.#drop();
    return p;
  }

  #switch(nl: NftChannel): NftProblem | undefined {
    const to = (1 - this.side) as Side;
    // Two changes closer than the emptying of a side: finish it now.
    while (this.dirty(to)) {
      const p = this.cleanStep();
      if (p !== undefined) return p;
    }
    const b = this.#b;
    b.reset();
    const first = this.#seq;
    const rules = switchBatch(b, this.#t.table, to, this.#handles, first);
    this.#seq = rules.next;
    const p = this.#commit(nl, first, "switch maps", rules);
    if (p === undefined) this.side = to;
    return p;
  }

  /**
   * Remove the table: close the socket (the kernel deletes the owned table, its maps and its
   * hook before `close` returns, and cannot fail to). What the logs held went with it.
   */
  #drop(): void {
    const nl = this.#nl;
    const w = this.#fdWord;
    // Not if the main thread took the fd from the word (this thread was given up for dead).
    if (
      nl !== undefined && (w === undefined || Atomics.compareExchange(w, 0, nl.fd, -1) === nl.fd)
    ) {
      nl.close();
    }
    this.#nl = undefined;
    this.side = 0;
    this.#handles = [-1, -1];
    for (const side of this.#logs) for (const l of side) l.clear();
  }

  /**
   * After a failed switch: open a new socket and create the table again (empty maps, rules on
   * side A). Returns the problem, and leaves the table removed, if that failed; undefined when
   * the table exists (also when it was never removed).
   */
  restore(): NftProblem | undefined {
    if (this.#nl !== undefined) return undefined;
    try {
      this.#nl = this.#open();
    } catch (e) {
      if (!(e instanceof LibcError)) throw e;
      return { errno: e.errno, what: "re-create the table" };
    }
    this.#publish(this.#nl);
    let p: NftProblem | undefined;
    try {
      p = this.setup();
    } catch (e) {
      if (!(e instanceof LibcError)) throw e;
      p = { errno: e.errno, what: "re-create the table" };
    }
    if (p === undefined) return undefined;
    this.#drop();
    return { errno: p.errno, what: "re-create the table" };
  }

  /** Close the socket (the kernel removes the table). */
  close(): void {
    this.#drop();
  }

  /**
   * Packets of the hit counters (`v4`, `v6`: undefined for one that could not be read). A
   * socket failure removes the table ({@link up} false) and is returned as `problem`.
   */
  hits(): Hits {
    const out: [number | undefined, number | undefined] = [undefined, undefined];
    const nl = this.#nl;
    if (nl === undefined) return { v4: undefined, v6: undefined };
    try {
      for (const [i, name] of [HITS4, HITS6].entries()) {
        this.#b.reset();
        getCounter(this.#b, this.#take(), this.#t.table, name);
        const reply = nl.request(this.#b.bytes, this.#b.length);
        out[i] = parseCounterObject(reply, reply.length)?.packets;
      }
    } catch (e) {
      return { v4: undefined, v6: undefined, problem: this.#lost(e, "read the hit counters") };
    }
    return { v4: out[0], v6: out[1] };
  }
}

/**
 * Creates the table again after it was removed (a failed switch, a socket failure): at once,
 * then every `everyMs` while that fails. Its notice, `fastpath: table inet NAME created again`,
 * is rate-limited (3 a minute, then one `... repeated N times` summary): a switch that fails every
 * time must not flood the log.
 */
export class Restorer {
  #next = 0;
  readonly #notices = new LogRateLimiter({ burst: 3, intervalMs: 60_000 });
  constructor(
    readonly writer: FastPathTableWriter,
    readonly table: string,
    readonly everyMs: number,
  ) {}

  /** When the table was last created again (ms), -Infinity before. */
  #restoredAt = -Infinity;

  /**
   * The table was just removed at `now`: the next {@link step} tries at once, unless the table
   * was created again less than `everyMs` ago (a socket that keeps failing must not make the
   * table be created and removed at the rate of the adds): then it waits out the interval.
   */
  removed(now: number): void {
    this.#next = now - this.#restoredAt < this.everyMs ? this.#restoredAt + this.everyMs : 0;
  }

  /**
   * At `now` (ms): if the table is removed and a try is due, create it again. Returns the problem
   * of a try that failed (undefined otherwise), and hands `log` the notices to write.
   */
  step(now: number, log: (notice: string) => void): NftProblem | undefined {
    if (this.writer.up || now < this.#next) return undefined;
    const p = this.writer.restore();
    if (p !== undefined) {
      this.#next = now + this.everyMs;
      return p;
    }
    this.#restoredAt = now;
    for (
      const l of this.#notices.offer(
        "restore",
        `fastpath: table inet ${this.table} created again`,
        now,
      )
    ) {
      log(l);
    }
    return undefined;
  }

  /** Hand `log` the summaries of minutes that ended with notices held back (call now and then). */
  flush(now: number, log: (notice: string) => void): void {
    for (const l of this.#notices.flush(now)) log(l);
  }
}
