/**
 * The flow control protocol between the CLI and `flowlb` (docs/COMPATIBILITY.md#control-protocol),
 * without any socket I/O: reading a request incrementally
 * ({@link RequestReader}), the request bytes each CLI command sends
 * ({@link buildRequest}), and the server's dispatch of a request to a
 * {@link FlowStore} ({@link handleRequest}) with the reply framing of 7.4.
 *
 * Request reading: lines `key:value\n`, no CR stripping, each line cut at a
 * NUL byte (as the C strings of 1.2.0) and decoded as UTF-8; a line
 * starting with `eoc:` ends the request and anything after it is ignored.
 * Resource bounds, decided here (1.2.0 splits longer lines into several):
 * a line longer than {@link MAX_LINE_BYTES} bytes (without its `\n`) is
 * rejected with the reply `FAIL: request line too long`, and a request whose
 * `eoc:` line does not end within {@link MAX_REQUEST_BYTES} bytes is
 * rejected with `FAIL: request too large`, so an endless or oversized
 * request costs bounded memory. A line without `:` and EOF before `eoc:`
 * close the connection without a reply, as in 1.2.0.
 *
 * @example
 * ```ts
 * import { buildRequest, handleRequest, RequestReader } from "./control_protocol.ts";
 * import { FlowStore } from "./store.ts";
 * const store = new FlowStore({ acquire: () => true, release: () => {} });
 * const r = new RequestReader().push(buildRequest("set", { name: "a", target: "lb" }));
 * if (r.status === "request") handleRequest(store, r.request); // "OK\0" as bytes
 * ```
 * @module
 */
import type { FlowFields } from "./parse.ts";
import { formatFlow, formatFlowList, formatNameList } from "./format.ts";
import type { Answer, FlowList, FlowStore } from "./store.ts";

/** Longest request line, in bytes without the `\n` (1.2.0 reads lines with a 1024-byte buffer). */
export const MAX_LINE_BYTES = 1023;
/** Largest request, in bytes up to and including the `eoc:` line. */
export const MAX_REQUEST_BYTES = 65536;

/** Reply to a line longer than {@link MAX_LINE_BYTES}. */
export const REPLY_LINE_TOO_LONG = "FAIL: request line too long";
/** Reply to a request longer than {@link MAX_REQUEST_BYTES}. */
export const REPLY_TOO_LARGE = "FAIL: request too large";
/** Reply to a request without `action`. */
export const REPLY_NO_ACTION = "FAIL: no action";
/** Reply to an unknown action. */
export const REPLY_UNKNOWN_ACTION = "FAIL: action unknown";

/** The actions of docs/COMPATIBILITY.md#control-protocol. */
export type Action =
  | "set"
  | "delete"
  | "list"
  | "list-names"
  | "trace-set"
  | "trace-delete"
  | "trace-list"
  | "trace-list-names";

/** A complete request: the `action` and the flow fields, all as raw strings. */
export interface ControlRequest {
  /** `undefined` when the request had no `action` line. */
  readonly action: string | undefined;
  readonly fields: FlowFields;
}

/** What the reader has after some input. */
export type ReadResult =
  /** Not complete yet: push more bytes or call `end()`. */
  | { readonly status: "more" }
  /** A complete request. */
  | {
    readonly status: "request";
    readonly request: ControlRequest;
    /** Every line read, incl. `eoc:` (for the `FlowCmd [<line>]` trace). */
    readonly lines: readonly string[];
    /** Log warnings (`readCmd; Unrecognized command [<key>]`). */
    readonly warnings: readonly string[];
  }
  /** The request is invalid: send `reply` (empty = none) and close. */
  | {
    readonly status: "rejected";
    readonly reply: Uint8Array;
    readonly lines: readonly string[];
    readonly warnings: readonly string[];
    /**
     * Debug lines (logged only at log level 7): a connection closed before it sent one byte,
     * e.g. by a client that refused the server ({@link EMPTY_CONNECTION}).
     */
    readonly debug?: readonly string[];
  };

/**
 * The debug line of a connection closed before it sent a byte (docs/COMPATIBILITY.md D63):
 * not a truncated request, so not 1.2.0's `readFlowCmd; unexpected eof` warning.
 */
export const EMPTY_CONNECTION =
  "readFlowCmd; connection closed before any request (a client that refused this server, or a probe)";

type FieldKey = keyof FlowFields;
/** Keys whose first occurrence wins. */
const FIRST_WINS: ReadonlySet<string> = new Set<FieldKey | "action">([
  "action",
  "name",
  "target",
  "protocols",
  "dsts",
  "srcs",
  "dports",
  "sports",
  "match",
]);
/** Keys whose last occurrence wins. */
const LAST_WINS: ReadonlySet<string> = new Set<FieldKey>(["priority", "udpencap"]);

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A text reply: the UTF-8 text followed by a NUL byte (docs/COMPATIBILITY.md#control-protocol). */
export function textReply(text: string, note?: string): Uint8Array {
  const b = encoder.encode(text);
  const n = note === undefined ? undefined : encoder.encode(note.replaceAll("\0", ""));
  const out = new Uint8Array(b.length + 1 + (n === undefined ? 0 : n.length + 1));
  out.set(b);
  if (n !== undefined) out.set(n, b.length + 1);
  return out;
}

/**
 * Incremental request reader for one connection. Feed received bytes to
 * {@link RequestReader.push} until the status is not `"more"`, or call
 * {@link RequestReader.end} at EOF. Memory stays bounded by one line. After a
 * final result, further calls return that same result.
 */
export class RequestReader {
  #partial = new Uint8Array(MAX_LINE_BYTES + 1);
  #partialLen = 0;
  /** Bytes consumed before the partial line. */
  #offset = 0;
  #values = new Map<string, string>();
  #lines: string[] = [];
  #warnings: string[] = [];
  #result: ReadResult | undefined;

  /** Consume `chunk`; returns the result so far. */
  push(chunk: Uint8Array): ReadResult {
    if (this.#result !== undefined) return this.#result;
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl < 0 ? chunk.length : nl;
      const n = end - start;
      if (this.#partialLen + n > MAX_LINE_BYTES) return this.#reject(REPLY_LINE_TOO_LONG);
      this.#partial.set(chunk.subarray(start, end), this.#partialLen);
      this.#partialLen += n;
      if (nl < 0) break;
      const lineEnd = this.#offset + this.#partialLen + 1;
      if (lineEnd > MAX_REQUEST_BYTES) return this.#reject(REPLY_TOO_LARGE);
      this.#offset = lineEnd;
      const r = this.#line(this.#takePartial());
      if (r !== undefined) return r;
      start = nl + 1;
    }
    if (this.#offset + this.#partialLen > MAX_REQUEST_BYTES) return this.#reject(REPLY_TOO_LARGE);
    return { status: "more" };
  }

  /** EOF: a final unterminated line is still read; no `eoc:` ⇒ rejected without reply. */
  end(): ReadResult {
    if (this.#result !== undefined) return this.#result;
    if (this.#partialLen > 0) {
      const r = this.#line(this.#takePartial());
      if (r !== undefined) return r;
    }
    if (this.#offset === 0 && this.#lines.length === 0) {
      // Not one byte: no request was cut short (a client that checked the server and left).
      return this.#result = {
        status: "rejected",
        reply: new Uint8Array(0),
        lines: [],
        warnings: [],
        debug: [EMPTY_CONNECTION],
      };
    }
    this.#warnings.push("readFlowCmd; unexpected eof");
    return this.#reject("");
  }

  #takePartial(): string {
    const bytes = this.#partial.subarray(0, this.#partialLen);
    this.#partialLen = 0;
    const nul = bytes.indexOf(0);
    return decoder.decode(nul < 0 ? bytes : bytes.subarray(0, nul));
  }

  /** Handle one line; a final result when it ends the request. */
  #line(line: string): ReadResult | undefined {
    this.#lines.push(line);
    const colon = line.indexOf(":");
    if (colon < 0) {
      this.#warnings.push(`readFlowCmd; invalid param [${line}]`);
      return this.#reject("");
    }
    const key = line.slice(0, colon);
    const value = line.slice(colon + 1);
    if (key === "eoc") {
      const v = this.#values;
      const fields: FlowFields = {
        name: v.get("name"),
        target: v.get("target"),
        priority: v.get("priority"),
        protocols: v.get("protocols"),
        dsts: v.get("dsts"),
        srcs: v.get("srcs"),
        dports: v.get("dports"),
        sports: v.get("sports"),
        match: v.get("match"),
        udpencap: v.get("udpencap"),
      };
      return this.#result = {
        status: "request",
        request: { action: v.get("action"), fields },
        lines: this.#lines,
        warnings: this.#warnings,
      };
    }
    if (FIRST_WINS.has(key)) {
      if (!this.#values.has(key)) this.#values.set(key, value);
    } else if (LAST_WINS.has(key)) {
      this.#values.set(key, value);
    } else {
      this.#warnings.push(`readCmd; Unrecognized command [${key}]`);
    }
    return undefined;
  }

  #reject(text: string): ReadResult {
    return this.#result = {
      status: "rejected",
      reply: text === "" ? new Uint8Array(0) : textReply(text),
      lines: this.#lines,
      warnings: this.#warnings,
    };
  }
}

/** Read a whole request (all bytes up to EOF). */
export function parseRequest(bytes: Uint8Array): ReadResult {
  const reader = new RequestReader();
  const r = reader.push(bytes);
  return r.status === "more" ? reader.end() : r;
}

/** The keys each CLI request carries, in the order of docs/COMPATIBILITY.md#control-protocol (each only if given). */
export const REQUEST_KEYS: Readonly<Record<Action, readonly FieldKey[]>> = {
  "set": [
    "name",
    "target",
    "priority",
    "protocols",
    "dsts",
    "srcs",
    "dports",
    "sports",
    "match",
    "udpencap",
  ],
  "delete": ["name"],
  "list": ["name"],
  "list-names": [],
  "trace-set": ["name", "protocols", "dsts", "srcs", "dports", "sports", "match"],
  "trace-delete": ["name"],
  "trace-list": ["name"],
  "trace-list-names": [],
};

/**
 * The request a CLI command sends: `action:<action>`, then `key:value` for
 * each given field of {@link REQUEST_KEYS} in order, then `eoc:`. Values are
 * sent raw (the CLI rejects values containing a newline before calling this).
 */
export function buildRequest(action: Action, fields: FlowFields): Uint8Array {
  let text = `action:${action}\n`;
  for (const key of REQUEST_KEYS[action]) {
    const v = fields[key];
    if (v !== undefined) text += `${key}:${v}\n`;
  }
  return encoder.encode(text + "eoc:\n");
}

function listReply(list: FlowList, name: string | undefined, kind: "flow" | "trace"): Uint8Array {
  if (name === undefined) return encoder.encode(formatFlowList(list.entries(), kind));
  const e = list.get(name);
  return encoder.encode(e === undefined ? "" : formatFlow(e.flow, e.matchesCount, kind, e.pending));
}

/**
 * Serve one request (docs/COMPATIBILITY.md#control-protocol): text replies (`set`, `delete`, `trace-set`,
 * `trace-delete`, errors) end with a NUL byte; list replies are JSON without
 * NUL (a `list` of an unknown name is empty).
 */
export function handleRequest(store: FlowStore, request: ControlRequest): Uint8Array {
  const f = request.fields;
  switch (request.action) {
    case undefined:
      return textReply(REPLY_NO_ACTION);
    case "set":
      return answerReply(store.setAnswer(f));
    case "delete":
      return answerReply(store.deleteAnswer(f.name));
    case "list":
      return listReply(store.flows, f.name, "flow");
    case "list-names":
      return encoder.encode(formatNameList(store.flows.names()));
    case "trace-set":
      return answerReply(store.traceSetAnswer(f));
    case "trace-delete":
      return answerReply(store.traceDeleteAnswer(f.name));
    case "trace-list":
      return listReply(store.traces, f.name, "trace");
    case "trace-list-names":
      return encoder.encode(formatNameList(store.traces.names()));
    default:
      return textReply(REPLY_UNKNOWN_ACTION);
  }
}

/** The text reply of a store's {@link Answer}: the reply, NUL, and its note with a NUL (D65). */
export function answerReply(a: Answer): Uint8Array {
  return textReply(a.reply, a.note);
}

/** A reply as the CLI reads it. */
export interface DecodedReply {
  /** The text before the first NUL, or the whole reply when it has none (JSON, nothing). */
  readonly text: string;
  /** There was a NUL: a text reply. */
  readonly terminated: boolean;
  /** The note after the NUL up to the next NUL (D65), when there is one; 1.2.0 sends none. */
  readonly note?: string;
}

/**
 * How the CLI reads a reply: a text reply is the text before the first NUL
 * (`terminated: true`), followed by an optional note (D65: what 1.2.0's client, which prints up to
 * the NUL, never shows); a reply without NUL (JSON, or nothing) is returned whole.
 */
export function decodeReply(reply: Uint8Array): DecodedReply {
  const nul = reply.indexOf(0);
  if (nul < 0) return { text: decoder.decode(reply), terminated: false };
  const text = decoder.decode(reply.subarray(0, nul));
  const rest = reply.subarray(nul + 1);
  if (rest.length === 0) return { text, terminated: true };
  const end = rest.indexOf(0);
  return { text, terminated: true, note: decoder.decode(end < 0 ? rest : rest.subarray(0, end)) };
}
