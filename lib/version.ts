/**
 * The nfqlb version this implementation is compatible with (`nfqlb version`,
 * `nfqlb_build_info`).
 *
 * @example
 * ```ts
 * import { VERSION } from "./version.ts";
 * VERSION; // "1.2.0"
 * ```
 * @module
 */

/** The version this implementation is compatible with. */
export const VERSION = "1.2.0";
