/**
 * What a value must look like, said after 1.2.0's error line that names the option (`queue
 * invalid [a]`, `Invalid protocols`, ...): the bad value and the accepted forms, as the lines
 * that follow (docs/COMPATIBILITY.md#command-line, #flows).
 *
 * @example
 * ```ts
 * import { queueInvalid } from "./accepted.ts";
 * queueInvalid("a");
 * // "queue invalid [a]\n  expected N or FIRST:LAST (0..65535, FIRST <= LAST), e.g. 2 or 0:3"
 * ```
 * @module
 */

/** The accepted forms of `--queue`. */
export const QUEUE_ACCEPTED = "expected N or FIRST:LAST (0..65535, FIRST <= LAST), e.g. 2 or 0:3";

/** 1.2.0's `queue invalid [<q>]`, then the accepted forms on the next line. */
export function queueInvalid(value: string): string {
  return `queue invalid [${value}]\n  ${QUEUE_ACCEPTED}`;
}

/** The accepted values of a flow's `protocols`. */
export const PROTOCOLS_ACCEPTED = "accepted: tcp, udp, sctp (any case), separated by ',' or ' '";

/** The accepted values of a flow's `dports` / `sports`. */
export const PORTS_ACCEPTED = "accepted: PORT or FIRST-LAST (1..65535, FIRST <= LAST), " +
  "separated by ',' or ' ', e.g. 80,8080-8090";

/** The accepted values of a flow's `dsts` / `srcs`. */
export const CIDRS_ACCEPTED = "accepted: up to 32 ADDRESS/PREFIX (IPv4 /0..32, IPv6 /0..128), " +
  "separated by ',' or ' ', e.g. 10.0.0.0/24,1000::/64";

/** `[<value>]: <accepted>`, the note after a field error of a flow. */
export function badValue(value: string, accepted: string): string {
  return `[${value}]: ${accepted}`;
}

/** The accepted forms of `fwmark --src` / `--dst`. */
export const ENDPOINT_ACCEPTED =
  "expected ADDR:PORT (10.0.0.1:80) or [IPv6]:PORT ([1000::2]:80), " +
  "PORT 0..65535 (empty: 0)";

/** The accepted values of `fwmark --proto`. */
export const FWMARK_PROTO_ACCEPTED = "accepted: tcp, udp, sctp (any case); without --proto only " +
  "the addresses are hashed";
