/**
 * Verdict coalescing for one queue (docs/COMPATIBILITY.md#nfqueue): the
 * verdicts of a batch, given in receive order, are written into a
 * {@link VerdictBuffer}; a run of consecutive packets with the same verdict
 * and mark becomes one NFQNL_MSG_VERDICT_BATCH for the run's last id (the
 * kernel applies it to every queued packet up to that id, which are exactly
 * the run's packets because all earlier ones got their verdicts in earlier
 * messages). A run of one is a plain NFQNL_MSG_VERDICT. Pure: sending the
 * buffer is the caller's `send` function, called when the buffer is full.
 *
 * @example
 * ```ts
 * import { VerdictBuffer } from "./codec.ts";
 * import { VerdictRuns } from "./verdict_runs.ts";
 * const tx = new VerdictBuffer(1024, 0);
 * const counters = { verdicts: 0, verdictMessages: 0, batchVerdicts: 0 };
 * const runs = new VerdictRuns(tx, true, counters, () => tx.clear());
 * runs.add(1, 7);
 * runs.add(2, 7);
 * runs.finish(); // tx holds one batch verdict (ACCEPT, mark 7) for ids up to 2
 * ```
 * @module
 */
import type { VerdictBuffer } from "./codec.ts";

/** Cumulative verdict counters (fields of the queue's statistics). */
export interface VerdictCounters {
  /** Packets given a verdict. */
  verdicts: number;
  /** Verdict messages written (a batch verdict covers several packets). */
  verdictMessages: number;
  /** Of those, NFQNL_MSG_VERDICT_BATCH messages. */
  batchVerdicts: number;
}

/** The pending run of equal verdicts over one verdict buffer. */
export class VerdictRuns {
  declare private readonly tx: VerdictBuffer;
  declare private readonly coalesce: boolean;
  declare private readonly counters: VerdictCounters;
  declare private readonly send: () => void;
  /** Packets in the pending run (0: none), its last id and its verdict value. */
  private length = 0;
  private lastId = 0;
  private value = 0;

  /**
   * Write into `tx`; with `coalesce` false every packet gets its own
   * message. `send()` must send and clear `tx`; it is called before a
   * message is written into a full buffer.
   */
  constructor(tx: VerdictBuffer, coalesce: boolean, counters: VerdictCounters, send: () => void) {
    this.tx = tx;
    this.coalesce = coalesce;
    this.counters = counters;
    this.send = send;
  }

  /**
   * The verdict value `v` for packet `id` (≥ 0: ACCEPT with that fwmark as
   * u32, < 0: DROP). Ids must come in receive order, every packet once.
   */
  add(id: number, v: number): void {
    const value = v < 0 ? -1 : v;
    this.counters.verdicts++;
    if (this.length > 0) {
      if (value === this.value && this.coalesce) {
        this.lastId = id;
        this.length++;
        return;
      }
      this.write();
    }
    this.lastId = id;
    this.value = value;
    this.length = 1;
  }

  /** Write the pending run into the buffer (before the buffer is sent). */
  finish(): void {
    if (this.length > 0) this.write();
  }

  private write(): void {
    if (this.tx.full) this.send();
    const batch = this.length > 1;
    this.tx.add(this.lastId, this.value, batch);
    this.length = 0;
    this.counters.verdictMessages++;
    if (batch) this.counters.batchVerdicts++;
  }
}
