/**
 * `nfqlb ruleset --apply/--delete` as a plan: the rules in place (as `iptables-save` lists them,
 * or `nft -j list table inet nfqlb`) and a request in, the changes and one report line per VIP
 * (and per chain or table added or removed) out. Pure: reading the rules and running the changes
 * is the command's part (`cli/ruleset.ts`).
 *
 * The semantics (docs/COMPATIBILITY.md, D55):
 * - `--apply` adds the VIPs that are missing (and any of their rules that is missing) and keeps
 *   those in place; it never removes a VIP it was not given.
 * - All nfqlb rules of a namespace queue to one queue range with one `--fastpath` setting (one
 *   daemon's queues; the nft style has one queue rule per family anyway). A request whose range or
 *   fastpath setting differs from the rules in place is refused, naming the VIPs in place, unless
 *   `--replace`; so is a VIP that overlaps a different VIP in place.
 * - `--apply --replace` makes the rules exactly the request: listed VIPs added or changed to its
 *   queues, VIPs in place but not listed removed, each reported.
 * - `--delete` removes the listed VIPs only, whatever their queues; an absent VIP is reported and
 *   changes nothing (a delete of absent VIPs only plans no change at all, not even of chains or a
 *   table left without VIPs).
 * - A family's iptables chains go when this command removes its last VIP (or `--replace` leaves it
 *   none), except a chain holding rules nfqlb does not write: it is kept with its jump.
 * - The nft table goes when this command removes its last VIP and it holds nothing nfqlb does not
 *   write (set elements, chains, rules, sets, ...; a rule of nfqlb's chains is nfqlb's only when it
 *   is exactly one nfqlb writes, counters aside); otherwise only the elements go and the table is
 *   reported kept, naming what it holds. A rewrite of the table (`--replace` to other queues or to
 *   repair it; other queues for a table without VIPs) that would remove chains, rules or other
 *   objects nfqlb does not write is refused, naming them; set elements it removes are reported.
 *
 * @example
 * ```ts
 * import { parseIptablesSave, planIptables } from "./plan.ts";
 * import { parseVip, type Vip } from "./vip.ts";
 * const vips = [parseVip("10.0.0.2") as Vip];
 * const plan = planIptables(new Map(), {
 *   vips,
 *   spec: { first: 0, last: 3, fastpath: false },
 *   mode: "apply",
 *   replace: false,
 * });
 * plan.lines[0]; // "added vip 10.0.0.2 queue 0:3"
 * parseIptablesSave("*raw\n-A x -d 1.2.3.4/32 -j NOTRACK\nCOMMIT\n").get("x"); // ["-d 1.2.3.4/32 -j NOTRACK"]
 * ```
 * @module
 */
import { IPTABLES_CHAINS, iptablesRule, nftRuleset } from "./ruleset.ts";
import { parseVip, type Vip, vipsOverlap } from "./vip.ts";

/** The queue options all of nfqlb's rules in a namespace share. */
export interface QueueSpec {
  readonly first: number;
  readonly last: number;
  /** Queue only unmarked packets (`--fastpath`). */
  readonly fastpath: boolean;
}

/** `0:3`, `2`, with ` fastpath` when set: how report lines and refusals name a spec. */
export function specText(s: QueueSpec): string {
  return (s.first === s.last ? `${s.first}` : `${s.first}:${s.last}`) +
    (s.fastpath ? " fastpath" : "");
}

const sameSpec = (a: QueueSpec, b: QueueSpec) =>
  a.first === b.first && a.last === b.last && a.fastpath === b.fastpath;

/** What `--apply` or `--delete` was asked to do. */
export interface Request {
  /** The VIPs of `--vip`, canonical, no duplicates, none overlapping another. */
  readonly vips: readonly Vip[];
  readonly spec: QueueSpec;
  readonly mode: "apply" | "delete";
  /** `--replace` (with `apply`): the rules become exactly the request. */
  readonly replace: boolean;
}

/** A plan: refused (nothing to do), or the steps to run and the lines that report them. */
export interface Plan<Step> {
  /** Why the request is refused, one line each; when non-empty there are no steps. */
  readonly refusals: readonly string[];
  /** What the steps do (or, when there are none, what is already so), one line each. */
  readonly lines: readonly string[];
  readonly steps: readonly Step[];
}

// ---------------------------------------------------------------------------------------------
// iptables style

/** The iptables commands of the two families. */
export type IptablesCmd = "iptables" | "ip6tables";

/** The tables nfqlb's chains live in. */
export const IPTABLES_TABLES: readonly string[] = ["mangle", "raw"];

/**
 * One table as `iptables-save -t TABLE` lists it: each chain (declared or with rules) and its rules
 * in order, each the text after `-A CHAIN `.
 */
export type SavedTable = Map<string, string[]>;

/** Parse `iptables-save` output (one table or several; the chains of all of them, merged). */
export function parseIptablesSave(text: string): SavedTable {
  const out: SavedTable = new Map();
  for (const line of text.split("\n")) {
    const decl = /^:(\S+) /.exec(line);
    if (decl !== null && !out.has(decl[1])) out.set(decl[1], []);
    const rule = /^-A (\S+) (.*)$/.exec(line);
    if (rule === null) continue;
    if (!out.has(rule[1])) out.set(rule[1], []);
    out.get(rule[1])!.push(rule[2]);
  }
  return out;
}

/** The rules in place: `"iptables mangle"` → that table as saved (absent: no rules). */
export type IptablesState = ReadonlyMap<string, SavedTable>;

/** A rule of nfqlb's chains understood as nfqlb's: its VIP and, in a queue chain, its queues. */
export interface OwnRule {
  readonly vip: Vip;
  readonly spec?: QueueSpec;
}

const QUEUE_TARGET = "-j NFQUEUE (?:--queue-num (\\d+)|--queue-balance (\\d+):(\\d+))";

/**
 * Read a rule of nfqlb's `chain` as `iptables-save` prints it (`-d 10.0.0.1/32 -j NOTRACK`,
 * `-d ... -m mark --mark 0x0 -j NFQUEUE --queue-balance 0:3`); undefined when nfqlb does not write
 * rules like it.
 */
export function parseOwnRule(chain: string, rule: string, v6: boolean): OwnRule | undefined {
  let m: RegExpExecArray | null;
  let fastpath = false;
  let q: string[] | undefined;
  if (chain === "nfqlb") {
    m = new RegExp(`^-d (\\S+) (-m mark --mark 0x0 )?${QUEUE_TARGET}$`).exec(rule);
    if (m === null) return undefined;
    fastpath = m[2] !== undefined;
    q = m.slice(3);
  } else if (chain === "nfqlb-local") {
    const p = v6 ? "ipv6-icmp" : "icmp";
    m = new RegExp(`^-d (\\S+) -p ${p} ${QUEUE_TARGET}$`).exec(rule);
    if (m === null) return undefined;
    q = m.slice(2);
  } else {
    m = /^-d (\S+) -j (?:NOTRACK|CT --notrack)$/.exec(rule);
    if (m === null) return undefined;
  }
  const vip = parseVip(m[1]);
  if (typeof vip === "string" || vip.v6 !== v6) return undefined;
  if (q === undefined) return { vip };
  const [num, a, b] = q;
  const spec = num !== undefined
    ? { first: Number(num), last: Number(num), fastpath }
    : { first: Number(a), last: Number(b), fastpath };
  return { vip, spec };
}

/** One `iptables-restore --noflush` transaction: one table of one family, all or nothing. */
export interface IptablesStep {
  readonly cmd: IptablesCmd;
  readonly table: string;
  /** Command lines (`-A ...`, `-D ...`, `-N ...`), without `*table` and `COMMIT`. */
  readonly ops: readonly string[];
  /** The lines that undo `ops` after they were committed (in the state they left). */
  readonly undo: readonly string[];
}

/** The `iptables-restore --noflush` input of `lines` for `table`. */
export function restoreInput(table: string, lines: readonly string[]): string {
  return `*${table}\n${lines.join("\n")}\nCOMMIT\n`;
}

/** A rule of one of nfqlb's chains in place, at its position (1-based). */
interface Placed {
  readonly chain: string;
  readonly index: number;
  readonly text: string;
  readonly own: OwnRule;
}

/** One family's rules in nfqlb's chains, as found. */
interface FamilyState {
  readonly cmd: IptablesCmd;
  readonly v6: boolean;
  /** VIP text → its rules, in the order VIPs first appear. */
  readonly vips: Map<string, { vip: Vip; rules: Placed[] }>;
  /** Chain → rules nfqlb does not write, with positions. */
  readonly foreign: Map<string, number>;
  readonly tables: ReadonlyMap<string, SavedTable>;
}

function familyState(state: IptablesState, cmd: IptablesCmd): FamilyState {
  const v6 = cmd === "ip6tables";
  const vips = new Map<string, { vip: Vip; rules: Placed[] }>();
  const foreign = new Map<string, number>();
  const tables = new Map<string, SavedTable>(
    IPTABLES_TABLES.map((t) => [t, state.get(`${cmd} ${t}`) ?? new Map<string, string[]>()]),
  );
  for (const [table, chain] of IPTABLES_CHAINS) {
    (tables.get(table)!.get(chain) ?? []).forEach((text, i) => {
      const own = parseOwnRule(chain, text, v6);
      if (own === undefined) {
        foreign.set(chain, (foreign.get(chain) ?? 0) + 1);
        return;
      }
      const e = vips.get(own.vip.text) ?? { vip: own.vip, rules: [] };
      e.rules.push({ chain, index: i + 1, text, own });
      vips.set(own.vip.text, e);
    });
  }
  return { cmd, v6, vips, foreign, tables };
}

/**
 * Whether a rule in place is the one nfqlb writes for `s`: same queues, and in the prerouting
 * chain the same fastpath mark test (the local chain's ICMP rules have none).
 */
function fits(r: Placed, s: QueueSpec): boolean {
  const q = r.own.spec;
  return q === undefined ||
    q.first === s.first && q.last === s.last && (r.chain !== "nfqlb" || q.fastpath === s.fastpath);
}

/** The queues a VIP's rules in place name, for report lines (the prerouting rules', if any). */
function placedSpecs(rules: readonly Placed[]): QueueSpec[] {
  const pre = rules.filter((r) => r.chain === "nfqlb");
  return dedupeSpecs((pre.length > 0 ? pre : rules).flatMap((r) => r.own.spec ?? []));
}

const vipLine = (verb: string, vip: string, s: QueueSpec | undefined, tail = "") =>
  `${verb} vip ${vip}${s === undefined ? "" : ` queue ${specText(s)}`}${tail}`;

/**
 * What `--apply` would refuse: VIPs in place whose queues differ from the request's (listed
 * once, with the fix), and requested VIPs overlapping a different VIP in place.
 */
function refusals(
  found: readonly { vip: Vip; differs: boolean; specs: readonly QueueSpec[] }[],
  req: Request,
  where: string,
): string[] {
  if (req.mode !== "apply" || req.replace) return [];
  const out: string[] = [];
  const differ = found.filter((f) => f.differs);
  if (differ.length > 0) {
    out.push(
      `the ${where} in place queue differently from the request (queue ${specText(req.spec)}): ` +
        differ.map((f) => `${f.vip.text} queue ${f.specs.map(specText).join(", ")}`).join("; "),
      `  all of nfqlb's VIPs in a namespace queue to one range: give the same --queue` +
        " (and --fastpath), or --replace to make the rules exactly this request" +
        " (VIPs not listed are removed)",
    );
  }
  for (const v of req.vips) {
    for (const f of found) {
      if (f.vip.text !== v.text && vipsOverlap(v, f.vip)) {
        out.push(`vip ${v.text} overlaps vip ${f.vip.text} in place: delete one of them first`);
      }
    }
  }
  return out;
}

/**
 * Plan `--apply` or `--delete` in the iptables style: one {@link IptablesStep} per table of each
 * family that changes (mangle before raw, IPv4 before IPv6).
 */
export function planIptables(state: IptablesState, req: Request): Plan<IptablesStep> {
  const fams = (["iptables", "ip6tables"] as const).map((c) => familyState(state, c));
  const found = fams.flatMap((f) =>
    [...f.vips.values()].map((e) => ({
      vip: e.vip,
      differs: e.rules.some((r) => !fits(r, req.spec)),
      specs: placedSpecs(e.rules),
    }))
  );
  const refused = refusals(found, req, "rules");
  if (refused.length > 0) return { refusals: refused, lines: [], steps: [] };

  const vipLines = new Map<string, string>();
  const tailLines: string[] = [];
  const chainLines: string[] = [];
  const steps: IptablesStep[] = [];
  const requested = new Set(req.vips.map((v) => v.text));
  for (const f of fams) {
    const mine = req.vips.filter((v) => v.v6 === f.v6);
    // Rules to delete (per chain, positions) and to add (per chain, texts).
    const del = new Map<string, Placed[]>();
    const add = new Map<string, string[]>();
    const push = <T>(m: Map<string, T[]>, k: string, v: T) => m.set(k, [...(m.get(k) ?? []), v]);
    for (const [text, e] of f.vips) {
      const drop = req.mode === "delete"
        ? requested.has(text)
        : req.replace && !requested.has(text);
      if (drop) {
        for (const r of e.rules) push(del, r.chain, r);
        const line = vipLine("removed", text, placedSpecs(e.rules)[0]);
        if (requested.has(text)) vipLines.set(text, line);
        else tailLines.push(line);
      }
    }
    if (req.mode === "apply") {
      for (const v of mine) {
        const e = f.vips.get(v.text);
        let added = 0;
        let replaced: QueueSpec | undefined;
        for (const [, chain] of IPTABLES_CHAINS) {
          const rules = (e?.rules ?? []).filter((r) => r.chain === chain);
          for (const r of rules.filter((r) => !fits(r, req.spec))) {
            push(del, chain, r);
            replaced ??= r.own.spec;
          }
          if (!rules.some((r) => fits(r, req.spec))) {
            push(add, chain, iptablesRule(chain, v.text, req.spec));
            added++;
          }
        }
        vipLines.set(
          v.text,
          e === undefined
            ? vipLine("added", v.text, req.spec)
            : replaced !== undefined
            ? vipLine("replaced", v.text, req.spec, ` (was queue ${specText(replaced)})`)
            : added > 0
            ? vipLine("repaired", v.text, req.spec, ` (${added} of 4 rules were missing)`)
            : vipLine("kept", v.text, req.spec),
        );
      }
    } else {
      for (const v of mine) if (!f.vips.has(v.text)) vipLines.set(v.text, `absent vip ${v.text}`);
    }

    // The family's chains: in place while it has VIPs, removed with its last (delete, replace).
    const deleted = new Set([...del.values()].flat());
    const remaining = [...f.vips.values()].some((e) => e.rules.some((r) => !deleted.has(r))) ||
      add.size > 0;
    const ensure = remaining && req.mode === "apply";
    // Chains go with the family's last VIP when this command removes it (a delete of absent VIPs
    // changes nothing), or when --replace leaves the family none.
    const mayRemove = req.replace ||
      req.mode === "delete" && mine.some((v) => f.vips.has(v.text));
    for (const table of IPTABLES_TABLES) {
      const saved = f.tables.get(table)!;
      const ops: string[] = [];
      const undo: string[] = [];
      const op = (line: string, inverse: string) => {
        ops.push(line);
        undo.unshift(inverse);
      };
      const chains = IPTABLES_CHAINS.filter(([t]) => t === table);
      const where = (chain: string) => `${f.cmd} ${table} ${chain}`;
      for (const [, chain, hook] of chains) {
        if (ensure && !saved.has(chain)) {
          op(`-N ${chain}`, `-X ${chain}`);
          chainLines.push(`added chain ${where(chain)} (jump from ${hook})`);
        }
      }
      for (const [, chain] of chains) {
        const rules = [...(del.get(chain) ?? [])].sort((a, b) => b.index - a.index);
        for (const r of rules) op(`-D ${chain} ${r.text}`, `-I ${chain} ${r.index} ${r.text}`);
        for (const a of add.get(chain) ?? []) op(`-A ${chain} ${a}`, `-D ${chain} ${a}`);
      }
      for (const [, chain, hook] of chains) {
        const jumps = (saved.get(hook) ?? []).flatMap((t, i) => t === `-j ${chain}` ? [i + 1] : []);
        if (remaining) {
          if (!ensure || jumps.length > 0) continue;
          op(`-A ${hook} -j ${chain}`, `-D ${hook} -j ${chain}`);
          if (saved.has(chain)) chainLines.push(`added jump ${f.cmd} ${table} ${hook} -j ${chain}`);
        } else if (mayRemove && saved.has(chain)) {
          const foreign = f.foreign.get(chain) ?? 0;
          if (foreign > 0) {
            const n = foreign === 1 ? "1 rule" : `${foreign} rules`;
            chainLines.push(`kept chain ${where(chain)} (it holds ${n} nfqlb did not write)`);
            continue;
          }
          for (const j of jumps.reverse()) {
            op(
              `-D ${hook} -j ${chain}`,
              `-I ${hook} ${j} -j ${chain}`,
            );
          }
          op(`-X ${chain}`, `-N ${chain}`);
          chainLines.push(`removed chain ${where(chain)}`);
        }
      }
      if (ops.length > 0) steps.push({ cmd: f.cmd, table, ops, undo });
    }
  }
  const lines = [
    ...req.vips.map((v) => vipLines.get(v.text)!),
    ...tailLines,
    ...chainLines,
  ];
  return { refusals: [], lines, steps };
}

function dedupeSpecs(specs: readonly QueueSpec[]): QueueSpec[] {
  return specs.filter((s, i) => specs.findIndex((t) => sameSpec(s, t)) === i);
}

// ---------------------------------------------------------------------------------------------
// nft style

/** The nft style's table in place (`nft -j list table inet nfqlb`), as far as nfqlb reads it. */
export interface NftState {
  readonly exists: boolean;
  /** The VIPs of the sets `ipv4-vips` and `ipv6-vips`. */
  readonly vips: readonly Vip[];
  /** Set elements nfqlb does not write (ranges, ...), as text. */
  readonly foreign: readonly string[];
  /**
   * Everything else in the table that nfqlb does not write, in nft's order: `chain NAME`, `rule
   * CHAIN handle N` (in nfqlb's chains or others), `set NAME`, `map NAME`, ... Deleting or
   * rewriting the table would remove them.
   */
  readonly foreignObjects: readonly string[];
  /** The queues of its queue rules, when they agree. */
  readonly spec?: QueueSpec;
  /** How the table differs from what nfqlb writes (missing sets, chains, queue rules). */
  readonly problems: readonly string[];
}

/** No table inet nfqlb. */
export const NO_NFT_TABLE: NftState = {
  exists: false,
  vips: [],
  foreign: [],
  foreignObjects: [],
  problems: [],
};

type Json = Record<string, unknown>;
const obj = (v: unknown): Json | undefined =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? v as Json : undefined;

/** nfqlb's chains in the nft style's table. */
const NFT_CHAINS = ["nfqlb", "nfqlb-local", "defrag", "defrag-local"];
const NFT_SETS = ["ipv4-vips", "ipv6-vips"];

/** `{"match": {"op": "==", "left": LEFT, "right": right}}` with `left(LEFT)`. */
const isMatch = (e: Json | undefined, left: (l: Json) => boolean, right: unknown) => {
  const m = obj(e?.match);
  const l = obj(m?.left);
  return m?.op === "==" && l !== undefined && left(l) && m.right === right;
};
const isMeta = (key: string) => (l: Json) => obj(l.meta)?.key === key;
const isDaddr = (e: Json | undefined, v6: boolean) =>
  isMatch(e, (l) => {
    const p = obj(l.payload);
    return p?.protocol === (v6 ? "ip6" : "ip") && p?.field === "daddr";
  }, `@ipv${v6 ? 6 : 4}-vips`);

/** The queues of `{"queue": ...}` as nfqlb writes it (no flags), or undefined. */
function nftQueue(e: Json | undefined): { first: number; last: number } | undefined {
  if (e === undefined || !("queue" in e) || Object.keys(e).length !== 1) return undefined;
  const q = e.queue === null ? {} : obj(e.queue);
  if (q === undefined || Object.keys(q).some((k) => k !== "num")) return undefined;
  const num = q.num;
  if (num === undefined || typeof num === "number") return { first: num ?? 0, last: num ?? 0 };
  const range = obj(num)?.range;
  return Array.isArray(range) && range.length === 2 && range.every((n) => typeof n === "number")
    ? { first: range[0], last: range[1] }
    : undefined;
}

/**
 * Read a rule of nfqlb's `chain` (its expressions as nft's JSON lists them) as nfqlb's: `{}` for a
 * notrack rule, its queues for a queue rule; undefined when nfqlb does not write rules like it.
 * Counters are ignored (nfqlb writes them; their values change).
 */
export function parseOwnNftRule(chain: string, expr: unknown[]): { spec?: QueueSpec } | undefined {
  const e = expr.map(obj).filter((x) => x === undefined || !("counter" in x));
  for (const v6 of [false, true]) {
    if (chain === "defrag" || chain === "defrag-local") {
      if (e.length === 2 && isDaddr(e[0], v6) && e[1]?.notrack === null) return {};
      continue;
    }
    const q = nftQueue(e.at(-1));
    if (q === undefined || !isDaddr(e.at(-2), v6)) continue;
    const head = e.slice(0, -2);
    if (chain === "nfqlb") {
      const fastpath = head.length === 1 && isMatch(head[0], isMeta("mark"), 0);
      if (head.length === 0 || fastpath) return { spec: { ...q, fastpath } };
    } else if (chain === "nfqlb-local") {
      const icmp = v6 ? "ipv6-icmp" : "icmp";
      if (head.length === 1 && isMatch(head[0], isMeta("l4proto"), icmp)) {
        return { spec: { ...q, fastpath: false } };
      }
    }
  }
  return undefined;
}

/** Read `nft -j list table inet nfqlb` output; throws a message on output that is not nft JSON. */
export function parseNftState(json: string): NftState {
  const items = obj(JSON.parse(json))?.nftables;
  if (!Array.isArray(items)) throw new Error("no `nftables` array in nft's JSON output");
  const sets = new Map<string, unknown[]>();
  const chains = new Set<string>();
  const queues: { chain: string; spec: QueueSpec }[] = [];
  const problems: string[] = [];
  const foreignObjects: string[] = [];
  for (const item of items.map(obj)) {
    if (item === undefined) continue;
    const set = obj(item.set);
    const chain = obj(item.chain);
    const rule = obj(item.rule);
    if (set !== undefined && NFT_SETS.includes(String(set.name))) {
      sets.set(String(set.name), Array.isArray(set.elem) ? set.elem : []);
    } else if (chain !== undefined && NFT_CHAINS.includes(String(chain.name))) {
      chains.add(String(chain.name));
    } else if (rule !== undefined) {
      const own = NFT_CHAINS.includes(String(rule.chain)) && Array.isArray(rule.expr)
        ? parseOwnNftRule(String(rule.chain), rule.expr)
        : undefined;
      if (own === undefined) foreignObjects.push(`rule ${rule.chain} handle ${rule.handle}`);
      else if (own.spec !== undefined) queues.push({ chain: String(rule.chain), spec: own.spec });
    } else {
      for (const [kind, v] of Object.entries(item)) {
        if (kind !== "metainfo" && kind !== "table") {
          foreignObjects.push(`${kind} ${obj(v)?.name ?? JSON.stringify(v)}`);
        }
      }
    }
  }
  const vips: Vip[] = [];
  const foreign: string[] = [];
  for (const name of NFT_SETS) {
    const elems = sets.get(name);
    if (elems === undefined) {
      problems.push(`no set ${name}`);
      continue;
    }
    for (const el of elems) {
      const val = obj(el)?.elem !== undefined ? obj(obj(el)!.elem)?.val : el;
      const p = obj(obj(val)?.prefix);
      const text = typeof val === "string"
        ? val
        : p !== undefined
        ? `${p.addr}/${p.len}`
        : JSON.stringify(val);
      const v = parseVip(text);
      if (typeof v !== "string" && v.v6 === (name === "ipv6-vips")) vips.push(v);
      else foreign.push(text);
    }
  }
  for (const c of NFT_CHAINS) {
    if (!chains.has(c)) problems.push(`no chain ${c}`);
  }
  // The fast-path mark test is in the prerouting chain only; the local chain queues ICMP.
  const pre = queues.filter((q) => q.chain === "nfqlb").map((q) => q.spec);
  const local = queues.filter((q) => q.chain === "nfqlb-local").map((q) => q.spec);
  const specs = dedupeSpecs([
    ...pre,
    ...local.map((s) => ({ ...s, fastpath: pre[0]?.fastpath ?? false })),
  ]);
  if (pre.length === 0) problems.push("no queue rule in chain nfqlb");
  if (specs.length > 1) problems.push(`queue rules to different queues: ${specs.map(specText)}`);
  return {
    exists: true,
    vips,
    foreign,
    foreignObjects,
    spec: specs.length === 1 ? specs[0] : undefined,
    problems,
  };
}

/**
 * What the table holds that nfqlb did not write, counted and listed:
 * `1 chain and 2 rules nfqlb did not write: chain x, rule nfqlb handle 16, ...`.
 */
function foreignText(things: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const t of things) {
    const kind = t.split(" ")[0];
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
  }
  const parts = [...counts].map(([k, n]) => `${n} ${k}${n === 1 ? "" : "s"}`);
  const counted = parts.length === 1
    ? parts[0]
    : `${parts.slice(0, -1).join(", ")} and ${parts.at(-1)}`;
  return `${counted} nfqlb did not write: ${things.join(", ")}`;
}

/** `add element ...`/`delete element ...` lines for `vips`, a line per set that has some. */
function elementLines(verb: "add" | "delete", vips: readonly Vip[]): string[] {
  return [false, true].flatMap((v6) => {
    const el = vips.filter((v) => v.v6 === v6).map((v) => v.text);
    if (el.length === 0) return [];
    return [`${verb} element inet nfqlb ${v6 ? "ipv6" : "ipv4"}-vips { ${el.join(", ")} }`];
  });
}

/**
 * Plan `--apply` or `--delete` in the nft style: at most one step, an `nft -f` script (one
 * transaction): elements added to or deleted from the sets, or the whole table written (when there
 * is none, or `--replace` changes its queues or repairs it) or deleted (with its last VIP, when it
 * holds nothing nfqlb does not write).
 */
export function planNft(state: NftState, req: Request): Plan<string> {
  // The queue rules in place name other queues than the request's.
  const requeue = state.spec !== undefined && !sameSpec(state.spec, req.spec);
  const found = state.vips.map((vip) => ({
    vip,
    differs: requeue,
    specs: state.spec === undefined ? [] : [state.spec],
  }));
  const refused = req.mode === "apply" && !req.replace && state.exists
    ? [
      ...state.problems.map((p) =>
        `table inet nfqlb is not as nfqlb writes it (${p}): --replace rewrites it`
      ),
      ...refusals(found, req, "VIPs"),
    ]
    : [];
  if (refused.length > 0) return { refusals: refused, lines: [], steps: [] };

  const have = new Set(state.vips.map((v) => v.text));
  const requested = new Set(req.vips.map((v) => v.text));
  const lines: string[] = [];
  let script = "";
  if (req.mode === "delete") {
    const gone = state.vips.filter((v) => requested.has(v.text));
    for (const v of req.vips) {
      lines.push(
        have.has(v.text) ? vipLine("removed", v.text, state.spec) : `absent vip ${v.text}`,
      );
    }
    // Nothing of the request in place: nothing changes (not even a table without VIPs).
    if (gone.length === 0) return { refusals: [], lines, steps: [] };
    const others = [...state.foreign.map((e) => `element ${e}`), ...state.foreignObjects];
    if (state.vips.length === gone.length && others.length === 0) {
      script = "delete table inet nfqlb\n";
      lines.push("removed table inet nfqlb");
    } else {
      script = elementLines("delete", gone).map((l) => l + "\n").join("");
      if (state.vips.length === gone.length) {
        lines.push(`kept table inet nfqlb (it holds ${foreignText(others)})`);
      }
    }
    return { refusals: [], lines, steps: [script] };
  }

  const spec = req.spec;
  const rewrite = !state.exists || state.problems.length > 0 || state.spec === undefined || requeue;
  const missing = req.vips.filter((v) => !have.has(v.text));
  const unlisted = req.replace ? state.vips.filter((v) => !requested.has(v.text)) : [];
  for (const v of req.vips) {
    lines.push(
      !have.has(v.text)
        ? vipLine("added", v.text, spec)
        : requeue
        ? vipLine("replaced", v.text, spec, ` (was queue ${specText(state.spec!)})`)
        : vipLine("kept", v.text, spec),
    );
  }
  for (const v of unlisted) lines.push(vipLine("removed", v.text, state.spec));
  if (rewrite && state.exists && state.foreignObjects.length > 0) {
    // Written whole, the table would lose them: refused, nothing is removed unsaid.
    const why = requeue
      ? `for queue ${specText(spec)}`
      : `as nfqlb writes it (${state.problems.join("; ")})`;
    const keep = requeue ? `, or request the queues in place (queue ${specText(state.spec!)})` : "";
    return {
      refusals: [
        `table inet nfqlb holds ${foreignText(state.foreignObjects)}`,
        `  writing it anew ${why} would remove them: remove them first` +
        ` (\`nft -a list table inet nfqlb\` shows the handles)${keep}`,
      ],
      lines: [],
      steps: [],
    };
  }
  if (rewrite) {
    // Written whole; the table is created empty first so that deleting it cannot fail.
    script = (state.exists ? "table inet nfqlb {}\ndelete table inet nfqlb\n" : "") +
      nftRuleset({ ...spec, vips: req.vips.map((v) => v.text) });
    lines.push(state.exists ? "replaced table inet nfqlb" : "added table inet nfqlb");
    if (state.foreign.length > 0) {
      lines.push(`removed elements nfqlb did not write: ${state.foreign.join(", ")}`);
    }
  } else {
    script = [...elementLines("delete", unlisted), ...elementLines("add", missing)]
      .map((l) => l + "\n").join("");
  }
  return { refusals: [], lines, steps: script === "" ? [] : [script] };
}
