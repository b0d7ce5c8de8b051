/**
 * `trace (--mask=M | --selection=LIST) [--trace_address=ADDR]` (docs/COMPATIBILITY.md#trace-and-log):
 * store the trace mask in `nfqlb-trace`, attach to a daemon's trace server
 * and copy its trace stream to stdout until the daemon closes it.
 *
 * Unlike 1.2.0 (`docs/COMPATIBILITY.md#differences`): every error message
 * ends with a newline, and when the address is invalid or the connect fails
 * the mask in `nfqlb-trace` is left as it was (1.2.0 leaves the new one); when the server
 * refuses this user (`Trace refused: ...`, a uid other than root or the daemon's) that line
 * goes to stderr, the mask is put back and the exit status is 1. Once attached, when processes in
 * other network namespaces map the same trace object, one stderr note says they trace too (D61).
 * @module
 */
import { traceConnectFailedHint } from "./address_hints.ts";
import { cStrtol0 } from "../lib/ccompat/cnum.ts";
import { parseSocketAddress } from "../lib/ccompat/sockaddr.ts";
import { formatMask, selectionMask } from "../lib/trace/mask.ts";
import { type Command, die } from "./command.ts";
import { TRACE_SPEC } from "./specs.ts";
import { TransportError } from "./flow_commands.ts";
import { connectSocket } from "./flow_transport.ts";
import { MASK_WORD, openTraceShm, traceShmName } from "../daemon/open_trace_shm.ts";
import { traceShmUsers } from "../daemon/trace_shm_users.ts";
import { traceNote } from "../lib/trace/host_wide.ts";

/** First line of the trace server's refusal of a peer that is not root or the daemon's uid. */
const REFUSED = "Trace refused:";

/** `trace`: set the trace mask and print a running daemon's trace output. */
export const traceCommand: Command = {
  ...TRACE_SPEC,
  async run(inv) {
    const maskText = inv.opts.get("mask");
    const selection = inv.opts.get("selection");
    if (maskText === undefined && selection === undefined) {
      die("Specify any of --mask or --selection");
    }
    if (maskText !== undefined && selection !== undefined) {
      die("Specify any ONE of --mask or --selection");
    }
    const mask = maskText !== undefined
      ? cStrtol0(maskText).value >>> 0
      : selectionMask(selection ?? "");
    inv.io.out(`Mask=${formatMask(mask)}\n`);
    const text = inv.opts.get("trace_address") ?? "unix:nfqlb-trace";
    // Same order of checks as 1.2.0 (map, address, connect); the mask is stored
    // before connecting, so a daemon that accepts sees it, and put back on failure.
    const shm = openTraceShm();
    let conn: Deno.Conn;
    let previous = 0;
    const putBack = () => Atomics.compareExchange(shm.words, MASK_WORD, mask | 0, previous);
    try {
      const address = parseSocketAddress(text);
      if (address === undefined) die(`Failed to parse address [${text}]`);
      previous = Atomics.exchange(shm.words, MASK_WORD, mask | 0);
      try {
        conn = await connectSocket(address);
      } catch (e) {
        // Unless something changed it meanwhile, restore the mask this command replaced.
        putBack();
        if (e instanceof TransportError) {
          die(
            `Trace client connect to ${text}: ${e.message}\n` +
              traceConnectFailedHint(text, e.message),
          );
        }
        throw e;
      }
    } catch (e) {
      shm.close();
      throw e;
    }
    const decoder = new TextDecoder();
    const buf = new Uint8Array(65536);
    let first = true;
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        const chunk = decoder.decode(buf.subarray(0, n), { stream: true });
        if (first) {
          first = false;
          const refused = chunk.startsWith(REFUSED);
          // The server does not serve this user: put the mask back and say why.
          if (refused) putBack();
          shm.close();
          if (refused) {
            inv.io.err(chunk.endsWith("\n") ? chunk : chunk + "\n");
            return 1;
          }
          // Attached: daemons in other network namespaces trace with this mask too.
          const name = traceShmName();
          const scan = traceShmUsers(name);
          const note = traceNote(name, scan.users, scan.uninspected);
          if (note !== undefined) inv.io.err(note + "\n");
        }
        inv.io.out(chunk);
      }
    } catch {
      // The daemon went away: end of the stream.
    } finally {
      if (first) shm.close();
      conn.close();
    }
    inv.io.out(decoder.decode());
    return 0;
  },
};
