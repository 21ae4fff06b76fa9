/**
 * The etcd keyspace, under one namespace prefix (default `adagio/v1/`).
 * Names are URI-encoded so a `/` in a node or runtime name cannot forge
 * another key. Each family is its own prefix so one range or watch reads
 * exactly what a question needs:
 *
 *   r/<run>                       run record; written last at start (the commit key)
 *   i/<inverted run id>           newest-first index: ascending ranges with a limit page it
 *   N/<run>/<node>                node facts: spec, neighbours (immutable, so a dependent's
 *                                 update never rewrites a join's long upstream list)
 *   n/<run>/<node>                node state (status, pending-upstream counter, claim)
 *   a/<run>/<node>/<000001>       attempt n (immutable once written)
 *   l/<run>/<node>/<000001>/<00000000>  chunk of running attempt n's streamed output,
 *                                 deleted when the attempt is recorded (output.ts)
 *   o/<W|R|U>/<run>/<node>        open nodes by status: count-only ranges give stats
 *   t/<runtime>/q/<run>/<node>    READY queue of a runtime (subscribe lists and watches it)
 *   t/<runtime>/u/<run>/<node>    RUNNING nodes of a runtime (orphans = u minus c)
 *   t/<runtime>/c/<run>/<node>    the claim, bound to the holder's lease
 *   x/<run>/<node>                the node failed for good (value: its name); any key
 *                                 in failedRange says the run failed, and the runs
 *                                 list reads the first few names (rule 19). Older
 *                                 stores wrote one x/<run>, which failedRange covers
 *   k/<run>/<item>                follow-up work not yet done (work-items.ts)
 *   d/<due ms>/<run>/<item>       a timed work item (a delayed retry, a node's timeout, a
 *                                 run's deadline), in the order it falls due, so a sweep
 *                                 reads what is due and nothing else (timing.ts). Older
 *                                 stores kept these under k/, which sweep.ts still reads
 *   s/<run>                       a chunked start in progress (garbage if it never commits)
 *   g/<agent>                     a registered agent, bound to its lease
 *   ctr/<shard>                   total nodes stored (runs are counted by range)
 *   m/<run>                       the run's identity: name, labels, workflow, params, request id
 *                                 (immutable; apart from r/ so claims never read it)
 *   q/<request id>                the run a start with that request id created (rule 17)
 *   w/<workflow>/<000000001>      workflow version n (immutable)
 *   wh/<workflow>                 the workflow's head: latest version, content hash, summary
 *   sc/<schedule>                 a schedule: definition and next undecided slot (rule 18)
 */
export type OpenStatus = 'W' | 'R' | 'U';

const enc = (s: string) => encodeURIComponent(s);

export class Keys {
  readonly prefix: string;
  constructor(namespace: string) {
    this.prefix = namespace;
  }

  private k(s: string): Buffer {
    return Buffer.from(this.prefix + s);
  }

  runs(): Buffer {
    return this.k('r/');
  }
  run(run: string): Buffer {
    return this.k(`r/${run}`);
  }
  /** The newest-first index: run ids with each character's order reversed, so ascending = newest first. */
  runIndex(): Buffer {
    return this.k('i/');
  }
  runIndexKey(run: string): Buffer {
    return this.k(`i/${invert(run)}`);
  }
  statics(run: string): Buffer {
    return this.k(`N/${run}/`);
  }
  static(run: string, node: string): Buffer {
    return this.k(`N/${run}/${enc(node)}`);
  }
  nodes(run: string): Buffer {
    return this.k(`n/${run}/`);
  }
  node(run: string, node: string): Buffer {
    return this.k(`n/${run}/${enc(node)}`);
  }
  /** Name of the node from a node key. */
  nodeName(key: Buffer, run: string): string {
    return decodeURIComponent(key.toString().slice(this.prefix.length + 3 + run.length));
  }
  attempts(run: string, node?: string): Buffer {
    return this.k(node === undefined ? `a/${run}/` : `a/${run}/${enc(node)}/`);
  }
  attempt(run: string, node: string, n: number): Buffer {
    return this.k(`a/${run}/${enc(node)}/${String(n).padStart(6, '0')}`);
  }
  /** Streamed output chunks: of a run, of one node, or of one attempt. */
  outputs(run: string, node?: string, attempt?: number): Buffer {
    if (node === undefined) return this.k(`l/${run}/`);
    if (attempt === undefined) return this.k(`l/${run}/${enc(node)}/`);
    return this.k(`l/${run}/${enc(node)}/${String(attempt).padStart(6, '0')}/`);
  }
  outputChunk(run: string, node: string, attempt: number, seq: number): Buffer {
    return this.k(
      `l/${run}/${enc(node)}/${String(attempt).padStart(6, '0')}/${String(seq).padStart(8, '0')}`,
    );
  }
  open(status: OpenStatus, run?: string): Buffer {
    return this.k(run === undefined ? `o/${status}/` : `o/${status}/${run}/`);
  }
  openNode(status: OpenStatus, run: string, node: string): Buffer {
    return this.k(`o/${status}/${run}/${enc(node)}`);
  }
  runtime(runtime: string): Buffer {
    return this.k(`t/${enc(runtime)}/`);
  }
  queue(runtime: string, run?: string): Buffer {
    return this.k(run === undefined ? `t/${enc(runtime)}/q/` : `t/${enc(runtime)}/q/${run}/`);
  }
  ready(runtime: string, run: string, node: string): Buffer {
    return this.k(`t/${enc(runtime)}/q/${run}/${enc(node)}`);
  }
  runningOf(runtime: string): Buffer {
    return this.k(`t/${enc(runtime)}/u/`);
  }
  running(runtime: string, run: string, node: string): Buffer {
    return this.k(`t/${enc(runtime)}/u/${run}/${enc(node)}`);
  }
  claimsOf(runtime: string): Buffer {
    return this.k(`t/${enc(runtime)}/c/`);
  }
  claim(runtime: string, run: string, node: string): Buffer {
    return this.k(`t/${enc(runtime)}/c/${run}/${enc(node)}`);
  }
  /**
   * Parses a key under t/<runtime>/: its kind (q, u, c), run and node.
   * The runtime prefix is known to the caller.
   */
  parseRuntimeKey(key: Buffer, runtime: string): { kind: string; run: string; node: string } | undefined {
    const rest = key.toString().slice(this.prefix.length + 3 + enc(runtime).length);
    const [kind, run, node] = rest.split('/');
    if (!kind || !run || node === undefined) return undefined;
    return { kind, run, node: decodeURIComponent(node) };
  }
  /** The single failed mark older stores wrote (its value: a node's name); failedRange covers it. */
  legacyFailed(run: string): Buffer {
    return this.k(`x/${run}`);
  }
  failedNode(run: string, node: string): Buffer {
    return this.k(`x/${run}/${enc(node)}`);
  }
  /**
   * Every failed mark of a run: x/<run>/… and the single x/<run> older stores
   * wrote (up to, not including, x/<run>0, '0' being the byte after '/').
   */
  failedRange(run: string): { key: Buffer; range_end: Buffer } {
    return { key: this.k(`x/${run}`), range_end: this.k(`x/${run}0`) };
  }
  work(run?: string): Buffer {
    return this.k(run === undefined ? 'k/' : `k/${run}/`);
  }
  workItem(run: string, item: string): Buffer {
    return this.k(`k/${run}/${enc(item)}`);
  }
  /** A timed work item's key: its due time (ms, 13 digits, so keys sort by it), run and name. */
  timer(due: number, run: string, item: string): Buffer {
    return this.k(`d/${dueDigits(due)}/${run}/${enc(item)}`);
  }
  /** Every timed work item due at or before `now`. */
  timersDue(now: number): { key: Buffer; range_end: Buffer } {
    return { key: this.k('d/'), range_end: this.k(`d/${dueDigits(Math.max(0, now) + 1)}`) };
  }
  /** The run and item name of a timed work item's key. */
  parseTimer(key: Buffer): { run: string; item: string } | undefined {
    const [due, run, item] = key
      .toString()
      .slice(this.prefix.length + 2)
      .split('/');
    if (!due || !run || item === undefined) return undefined;
    return { run, item: decodeURIComponent(item) };
  }
  /** The run of a work item key. */
  workRun(key: Buffer): string {
    return key
      .toString()
      .slice(this.prefix.length + 2)
      .split('/')[0]!;
  }
  /** Marks a chunked run's commit in a runtime's prefix, so that runtime's subscribers re-list it. */
  committed(runtime: string, run: string): Buffer {
    return this.k(`t/${enc(runtime)}/k/${run}`);
  }
  staging(run?: string): Buffer {
    return this.k(run === undefined ? 's/' : `s/${run}`);
  }
  agents(): Buffer {
    return this.k('g/');
  }
  agent(id: string): Buffer {
    return this.k(`g/${enc(id)}`);
  }
  counters(): Buffer {
    return this.k('ctr/');
  }
  counter(shard: number): Buffer {
    return this.k(`ctr/${shard}`);
  }
  all(): Buffer {
    return this.k('');
  }
  meta(run: string): Buffer {
    return this.k(`m/${run}`);
  }
  request(id: string): Buffer {
    return this.k(`q/${enc(id)}`);
  }
  workflowVersions(name: string): Buffer {
    return this.k(`w/${enc(name)}/`);
  }
  workflowVersion(name: string, version: number): Buffer {
    return this.k(`w/${enc(name)}/${String(version).padStart(9, '0')}`);
  }
  workflowHeads(): Buffer {
    return this.k('wh/');
  }
  workflowHead(name: string): Buffer {
    return this.k(`wh/${enc(name)}`);
  }
  schedules(): Buffer {
    return this.k('sc/');
  }
  schedule(name: string): Buffer {
    return this.k(`sc/${enc(name)}`);
  }
  /** The id after r/ of a run key. */
  runId(key: Buffer): string {
    return key.toString().slice(this.prefix.length + 2);
  }
}

/** A due time as the fixed-width digits of a timer key (ms since 1970, good until the year 2286). */
function dueDigits(ms: number): string {
  return String(Math.floor(ms)).padStart(13, '0');
}

/** The exclusive end of a prefix range: the prefix with its last byte incremented. */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** Reverses the order of printable-ASCII strings of equal length (run ids are fixed-length ULIDs). */
export function invert(id: string): string {
  let out = '';
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    out += c >= 0x21 && c <= 0x7e ? String.fromCharCode(0x7e - (c - 0x21)) : id[i];
  }
  return out;
}
