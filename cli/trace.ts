/**
 * `trace (--mask=M | --selection=LIST) [--trace_address=ADDR]` (SPEC 1.7):
 * store the trace mask in `nfqlb-trace`, attach to a daemon's trace server
 * and copy its trace stream to stdout until the daemon closes it.
 * @module
 */
import { cStrtol0 } from "../lib/ccompat/cnum.ts";
import { parseSocketAddress } from "../lib/ccompat/sockaddr.ts";
import { formatMask, selectionMask, TRACE_SELECTION } from "../lib/trace/mask.ts";
import type { Command } from "./command.ts";
import { TransportError } from "./flow_commands.ts";
import { connectSocket } from "./flow_transport.ts";
import { MASK_WORD, openTraceShm } from "../daemon/open_trace_shm.ts";

/** `trace`: set the trace mask and print a running daemon's trace output. */
export const traceCommand: Command = {
  name: "trace",
  help: "trace (--mask=M | --selection=LIST) [--trace_address=ADDR]\n" +
    "  Set the trace mask of running daemons and print their trace output until they\n" +
    `  close the stream. Selection names: ${Object.keys(TRACE_SELECTION).join(",")}.`,
  options: [
    { name: "mask", desc: "Trace mask (C strtol: decimal, 0x hex, 0 octal)" },
    { name: "selection", desc: "Comma-separated trace names" },
    { name: "trace_address", desc: "Trace server address (default unix:nfqlb-trace)" },
  ],
  async run(inv) {
    const maskText = inv.opts.get("mask");
    const selection = inv.opts.get("selection");
    if ((maskText === undefined) === (selection === undefined)) {
      // 1.2.0 prints these two without a newline.
      inv.io.err(
        maskText === undefined
          ? "Specify any of --mask or --selection"
          : "Specify any ONE of --mask or --selection",
      );
      return 1;
    }
    const mask = maskText !== undefined
      ? cStrtol0(maskText).value >>> 0
      : selectionMask(selection ?? "");
    inv.io.out(`Mask=${formatMask(mask)}\n`);
    // Stored before connecting, as 1.2.0 does (a failed attach still changes the mask).
    const m = openTraceShm();
    m.words[MASK_WORD] = mask;
    m.close();

    const text = inv.opts.get("trace_address") ?? "unix:nfqlb-trace";
    const address = parseSocketAddress(text);
    if (address === undefined) {
      inv.io.err(`Failed to parse address [${text}]`);
      return 1;
    }
    let conn: Deno.Conn;
    try {
      conn = await connectSocket(address);
    } catch (e) {
      if (!(e instanceof TransportError)) throw e;
      inv.io.err(`Trace client connect to ${text}: ${e.message}`);
      return 1;
    }
    const decoder = new TextDecoder();
    const buf = new Uint8Array(65536);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        inv.io.out(decoder.decode(buf.subarray(0, n), { stream: true }));
      }
    } catch {
      // The daemon went away: end of the stream.
    } finally {
      conn.close();
    }
    inv.io.out(decoder.decode());
    return 0;
  },
};
