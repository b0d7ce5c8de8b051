/**
 * A NETLINK_NETFILTER socket for nf_tables batches (lib/nft/): send one
 * batch as one datagram and collect the kernel's acknowledgements and
 * errors, with a receive timeout so a lost answer cannot hang the caller.
 * The fast-path writer owns one: the table it creates with
 * `NFT_TABLE_F_OWNER` lives as long as this socket is open.
 *
 * @example
 * ```ts ignore
 * import { NftSocket } from "./nft_socket.ts";
 * const s = NftSocket.open();
 * const failures = s.transact(bytes, length, [2, 3]); // [] when every request succeeded
 * s.close();
 * ```
 * @module
 */
import { getLibc } from "./libc.ts";
import { NETLINK_NETFILTER } from "./constants.ts";
import {
  closeFd,
  netlinkRecv,
  netlinkSend,
  openNetlinkSocket,
  setIntOption,
  setReceiveTimeout,
  SO_RCVBUF,
  SOL_SOCKET,
} from "./socket.ts";
import { readAcks } from "../lib/nft/replies.ts";

/** One request of a batch the kernel refused. */
export interface NftFailure {
  readonly seq: number;
  readonly errno: number;
}

/**
 * What the fast-path writer needs of its socket ({@link NftSocket}; tests wrap one to inject
 * failures).
 */
export interface NftChannel {
  /** The file descriptor. */
  readonly fd: number;
  /** See {@link NftSocket.transact}. */
  transact(
    bytes: Uint8Array,
    len: number,
    acked: readonly number[],
    onReply?: (reply: Uint8Array, len: number) => void,
  ): NftFailure[];
  /** See {@link NftSocket.request}. */
  request(bytes: Uint8Array, len: number): Uint8Array;
  /** See {@link NftSocket.close}. */
  close(): void;
}

/** A nf_tables netlink socket. */
export class NftSocket implements NftChannel {
  readonly #fd: number;
  readonly #rx = new Uint8Array(64 * 1024);
  #closed = false;

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /** The file descriptor (the main thread closes it if the writer thread dies). */
  get fd(): number {
    return this.#fd;
  }

  /** Open and bind the socket, with a 2 s receive timeout. Throws LibcError. */
  static open(timeoutMs = 2000): NftSocket {
    const fd = openNetlinkSocket(NETLINK_NETFILTER);
    try {
      setReceiveTimeout(fd, timeoutMs);
      setIntOption(fd, SOL_SOCKET, SO_RCVBUF, 1 << 20);
    } catch (e) {
      closeFd(fd);
      throw e;
    }
    return new NftSocket(fd);
  }

  /** Send `bytes[0, len)` (one batch) to the kernel. Throws LibcError. */
  send(bytes: Uint8Array, len: number): void {
    netlinkSend(this.#fd, bytes, len);
  }

  /**
   * Send a batch and wait for the answer of every sequence number in
   * `acked` (the requests sent with NLM_F_ACK; compared as the 32 bits a netlink header
   * carries, so 2^32 + 5 is answered as 5); every datagram received on the
   * way is also handed to `onReply` (e.g. echoed rules). Returns the requests that
   * failed (empty: the batch was applied). Throws LibcError when the socket
   * fails or the kernel does not answer within the timeout.
   */
  transact(
    bytes: Uint8Array,
    len: number,
    acked: readonly number[],
    onReply?: (reply: Uint8Array, len: number) => void,
  ): NftFailure[] {
    this.send(bytes, len);
    const waiting = new Set(acked.map((s) => s >>> 0));
    const failures: NftFailure[] = [];
    const rx = this.#rx;
    while (waiting.size > 0) {
      const r = netlinkRecv(this.#fd, rx, "recv", "recv (no answer from nf_tables)");
      onReply?.(rx, r);
      readAcks(rx, r, (seq, err) => {
        waiting.delete(seq);
        if (err !== 0) failures.push({ seq, errno: err });
      });
      // An aborted batch answers only the failed request (and the acked ones before it).
      if (failures.length > 0 && r > 0) {
        this.#drain();
        break;
      }
    }
    return failures;
  }

  /** Send a request and return the first reply datagram (e.g. GETOBJ). Throws LibcError. */
  request(bytes: Uint8Array, len: number): Uint8Array {
    this.send(bytes, len);
    const reply = this.#rx.slice(0, netlinkRecv(this.#fd, this.#rx));
    this.#drain();
    return reply;
  }

  /** Discard answers still queued (e.g. the ack after a GETOBJ reply). */
  #drain(): void {
    const l = getLibc();
    while (
      Number(l.recv(this.#fd, this.#rx, BigInt(this.#rx.length), 0x40 /* MSG_DONTWAIT */)) > 0
    );
  }

  /** Close the socket (an owned table goes with it). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeFd(this.#fd);
  }
}
