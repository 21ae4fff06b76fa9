import {
  checkWorkflow,
  checkWorkflowName,
  checkWorkflowVersion,
  normalizeWorkflow,
  planWorkflowPut,
  rfc3339,
  type WorkflowDefinition,
  type WorkflowHead,
  type WorkflowInput,
  type WorkflowSummary,
  workflowContentHash,
} from '../../model/index.js';
import { workflowInUse, workflowNotFound } from '../../protocol/errors.js';
import type { DynamoContext } from './context.js';
import { keyOf, N, S } from './db.js';
import { keyItem } from './items.js';

/**
 * Workflow definitions on DynamoDB (rule 16). Each version is its own
 * immutable item (`wf#<name>`, version); the head item (`wfh`, name: latest
 * version, content hash, summary) is what puts compare, so two concurrent puts
 * of a name never take one version number, and a list is one Query of heads.
 */
const HEADS_PK = 'wfh';
export const workflowHeadKey = (name: string) => ({ pk: HEADS_PK, sk: name });
const headKey = workflowHeadKey;
const versionKey = (name: string, version: number) => ({
  pk: `wf#${name}`,
  sk: String(version).padStart(10, '0'),
});

type Head = WorkflowHead;

export async function putWorkflow(
  ctx: DynamoContext,
  name: string,
  input: WorkflowInput,
): Promise<WorkflowDefinition> {
  checkWorkflow(name, input);
  const content = normalizeWorkflow(input);
  const hash = workflowContentHash(content);
  for (;;) {
    const item = await ctx.db.get(headKey(name));
    const head = item ? (JSON.parse(item.d!.S!) as Head) : undefined;
    const plan = planWorkflowPut(name, content, hash, head, rfc3339(ctx.clock.now()));
    if ('same' in plan) return getWorkflow(ctx, name, plan.same);
    const { def, head: next } = plan;
    const tx = ctx.db.tx();
    // The touch counter `t` (schedules' puts add to it, see schedules.ts) carries over.
    tx.put(
      {
        ...keyItem(headKey(name)),
        v: N(def.version),
        t: N(Number(item?.t?.N ?? 0)),
        d: S(JSON.stringify(next)),
      },
      head?.v,
    );
    tx.put({ ...keyItem(versionKey(name, def.version)), d: S(JSON.stringify(def)) }, 'any');
    // Lost the race to another put (or a delete): read the head again.
    if (await ctx.db.commit(tx)) return def;
  }
}

export async function getWorkflow(
  ctx: DynamoContext,
  name: string,
  version?: number,
): Promise<WorkflowDefinition> {
  checkWorkflowName(name);
  checkWorkflowVersion(version);
  let v = version;
  if (v === undefined) {
    const head = await ctx.db.get(headKey(name));
    if (!head) throw workflowNotFound(name);
    v = Number(head.v!.N);
  }
  const item = await ctx.db.get(versionKey(name, v));
  if (!item) throw workflowNotFound(name, version);
  return JSON.parse(item.d!.S!) as WorkflowDefinition;
}

/** Every head, by name: one Query. */
export async function listWorkflows(ctx: DynamoContext): Promise<WorkflowSummary[]> {
  const heads = await ctx.db.partition(HEADS_PK);
  return heads
    .map((h) => (JSON.parse(h.d!.S!) as Head).summary)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

export async function listWorkflowVersions(ctx: DynamoContext, name: string): Promise<WorkflowDefinition[]> {
  checkWorkflowName(name);
  const items = await ctx.db.partition(`wf#${name}`, '', { ScanIndexForward: false });
  if (items.length === 0) throw workflowNotFound(name);
  return items.map((i) => JSON.parse(i.d!.S!) as WorkflowDefinition);
}

/** Deletes the head (conditioned on it as read), then its versions, after asking `inUse` what still uses it. */
export async function deleteWorkflow(
  ctx: DynamoContext,
  name: string,
  inUse: (name: string) => Promise<string | undefined>,
): Promise<void> {
  checkWorkflowName(name);
  for (;;) {
    const head = await ctx.db.get(headKey(name));
    if (!head) throw workflowNotFound(name);
    const user = await inUse(name);
    if (user) throw workflowInUse(name, user);
    // The head goes first, conditioned on it as read, its touch counter included (a schedule put since
    // makes this fail and the users are checked again); then the versions it named.
    const tx = ctx.db.tx();
    tx.items.push({
      Delete: {
        TableName: ctx.db.table,
        Key: keyOf(headKey(name)),
        ConditionExpression: 'v = :v AND t = :t',
        ExpressionAttributeValues: { ':v': head.v!, ':t': N(Number(head.t?.N ?? 0)) },
      },
    });
    if (!(await ctx.db.commit(tx))) continue;
    const versions = await ctx.db.partition(`wf#${name}`, '', { ProjectionExpression: 'pk, sk' });
    await ctx.db.writeAll(
      [],
      versions.map((i) => ({ pk: i.pk!.S!, sk: i.sk!.S! })),
    );
    return;
  }
}
