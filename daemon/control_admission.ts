/**
 * Which control connections the flow server keeps open (docs/COMPATIBILITY.md#control-protocol):
 * a cap per unprivileged peer uid and a cap overall. Privileged peers (root, the daemon's uid)
 * are never refused because of other uids: when the overall cap is reached, the oldest
 * connection of an unprivileged uid is closed to make room. And what a peer may do
 * ({@link peerRights}): a peer whose uid is not known for certain is unprivileged. Pure: no
 * sockets, no clock.
 * @module
 */

/** What the control server knows of a new connection's peer. */
export interface PeerInfo {
  /**
   * The peer's uid (`SO_PEERCRED`, or a live socket's row of `/proc/net/tcp{,6}`), or undefined
   * when it is not known for certain (no credentials, the client already closed its socket).
   */
  readonly uid: number | undefined;
  /** Not checked at all: a non-loopback tcp peer admitted by `--control-unauthenticated`. */
  readonly unchecked: boolean;
  /** The peer for log lines: `uid N (pid P)` or `uid N (tcp ADDR)`. */
  readonly who: string;
}

/** What a peer may do. */
export interface PeerRights {
  /** Root or the daemon's uid, known for certain: served first, never refused for others. */
  readonly privileged: boolean;
  /** May change flows: privileged, or unchecked by the operator's choice. */
  readonly mayChange: boolean;
}

/**
 * The rights of `peer` of a daemon running as `ownUid`: privileged only when its uid is known
 * and is 0 or `ownUid`; an unknown uid fails closed (unprivileged, no changes).
 */
export function peerRights(peer: PeerInfo, ownUid: number | null): PeerRights {
  const uid = peer.uid;
  const privileged = !peer.unchecked && uid !== undefined && (uid === 0 || uid === ownUid);
  return { privileged, mayChange: privileged || peer.unchecked };
}

/** An open connection as admission sees it. */
export interface Admitted {
  /** Peer uid; undefined when unknown (TCP), counted as unprivileged. */
  readonly uid: number | undefined;
  readonly privileged: boolean;
}

/** The caps. */
export interface AdmissionLimits {
  /** Open connections per unprivileged uid. */
  readonly perUid: number;
  /** Open connections in all. */
  readonly total: number;
}

/** The outcome for a new connection. */
export type Admission =
  | {
    readonly admit: true; /** Index into `open` of a connection to close first, or −1. */
    readonly evict: number;
  }
  | { readonly admit: false; readonly reason: "uid" | "total" };

/**
 * Decide on `incoming` given the connections already `open` (oldest first).
 */
export function admit(
  open: readonly Admitted[],
  incoming: Admitted,
  limits: AdmissionLimits,
): Admission {
  if (!incoming.privileged) {
    let same = 0;
    for (const c of open) if (!c.privileged && c.uid === incoming.uid) same++;
    if (same >= limits.perUid) return { admit: false, reason: "uid" };
    if (open.length >= limits.total) return { admit: false, reason: "total" };
    return { admit: true, evict: -1 };
  }
  if (open.length < limits.total) return { admit: true, evict: -1 };
  const victim = open.findIndex((c) => !c.privileged);
  // All open connections are privileged: a privileged peer is still served (trusted), up to
  // twice the overall cap.
  if (victim < 0 && open.length >= limits.total * 2) return { admit: false, reason: "total" };
  return { admit: true, evict: victim };
}
