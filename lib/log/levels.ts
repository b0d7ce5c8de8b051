/**
 * Log levels of the daemons (docs/COMPATIBILITY.md#trace-and-log: the level in
 * `nfqlb-trace` filters them, default 5) and the one form of a log line:
 * `<level>: <text>`, one line per event, on stderr (and in the trace stream
 * with trace bit `log`). The messages themselves are 1.2.0's.
 *
 * @example
 * ```ts
 * import { LOG_INFO, logLine } from "./levels.ts";
 * logLine(LOG_INFO, "Failed flowLookup"); // "info: Failed flowLookup"
 * ```
 * @module
 */

/** Something went wrong; the daemon goes on. */
export const LOG_WARNING = 4;
/** Normal but significant (the default level shows it). */
export const LOG_NOTICE = 5;
/** Per-event detail, e.g. each packet no flow matched. */
export const LOG_INFO = 6;
/** Debugging detail. */
export const LOG_DEBUG = 7;

const NAMES: Readonly<Record<number, string>> = {
  [LOG_WARNING]: "warning",
  [LOG_NOTICE]: "notice",
  [LOG_INFO]: "info",
  [LOG_DEBUG]: "debug",
};

/** `text` as a log line of `level` (levels below warning print as `error`). */
export function logLine(level: number, text: string): string {
  return `${NAMES[level] ?? (level < LOG_WARNING ? "error" : "debug")}: ${text}`;
}
