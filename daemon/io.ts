/**
 * The output sink of a command or daemon: text for stdout and stderr. The
 * CLI passes the process's streams; tests pass a recorder.
 * @module
 */

/** Where output goes. */
export interface Io {
  /** Write to stdout. */
  out(text: string): void;
  /** Write to stderr. */
  err(text: string): void;
}
