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
import { type Item, keyOf, N, S } from './db.js';
import { keyItem } from './items.js';
import { MAX_TXN_ITEMS } from './limits.js';

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
    if (item && isDeleting(item)) {
      // A delete under way (or whose process died): finished first, then this put starts the name anew.
      await finishDelete(ctx, name, Number(item.v!.N));
      continue;
    }
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
  const head = await ctx.db.get(headKey(name));
  if (!head || isDeleting(head)) throw workflowNotFound(name, version);
  const v = version ?? Number(head.v!.N);
  const item = await ctx.db.get(versionKey(name, v));
  if (!item) throw workflowNotFound(name, version);
  return JSON.parse(item.d!.S!) as WorkflowDefinition;
}

/** Every head, by name: one Query. */
export async function listWorkflows(ctx: DynamoContext): Promise<WorkflowSummary[]> {
  const heads = await ctx.db.partition(HEADS_PK);
  return heads
    .filter((h) => !isDeleting(h))
    .map((h) => (JSON.parse(h.d!.S!) as Head).summary)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

export async function listWorkflowVersions(ctx: DynamoContext, name: string): Promise<WorkflowDefinition[]> {
  checkWorkflowName(name);
  const head = await ctx.db.get(headKey(name));
  if (!head || isDeleting(head)) throw workflowNotFound(name);
  const items = await ctx.db.partition(`wf#${name}`, '', { ScanIndexForward: false });
  if (items.length === 0) throw workflowNotFound(name);
  return items.map((i) => JSON.parse(i.d!.S!) as WorkflowDefinition);
}

/**
 * Deletes a workflow, after asking `inUse` what still uses it: the head is
 * marked deleting (conditioned on it as read, its touch counter included: a
 * schedule put since makes this fail and the users are checked again), from
 * then on the name is gone for every reader; then its versions go, then the
 * head. A put that finds the mark finishes the deletion first, so it never
 * writes a version the deletion then removes, and a deletion whose process
 * died is finished by the next put or delete of the name.
 */
export async function deleteWorkflow(
  ctx: DynamoContext,
  name: string,
  inUse: (name: string) => Promise<string | undefined>,
): Promise<void> {
  checkWorkflowName(name);
  for (;;) {
    const head = await ctx.db.get(headKey(name));
    if (!head) throw workflowNotFound(name);
    if (!isDeleting(head)) {
      const user = await inUse(name);
      if (user) throw workflowInUse(name, user);
      const tx = ctx.db.tx();
      tx.update(headKey(name), {
        UpdateExpression: 'SET x = :one',
        ConditionExpression: 'v = :v AND t = :t AND attribute_not_exists(x)',
        ExpressionAttributeValues: { ':v': head.v!, ':t': N(Number(head.t?.N ?? 0)), ':one': N(1) },
      });
      if (!(await ctx.db.commit(tx))) continue;
    }
    await finishDelete(ctx, name, Number(head.v!.N));
    return;
  }
}

/** A head marked deleting (deleteWorkflow): the workflow is gone for every reader. */
export function isDeleting(head: Item): boolean {
  return head.x !== undefined;
}

/**
 * The versions of a head marked deleting at version `v`, then the head. Each
 * transaction checks the mark is still there: once another process has
 * finished the deletion and a put has started the name anew, nothing of the
 * new workflow is removed.
 */
async function finishDelete(ctx: DynamoContext, name: string, v: number): Promise<void> {
  const marked = { ':v': N(v) };
  const versions = await ctx.db.partition(`wf#${name}`, '', { ProjectionExpression: 'pk, sk' });
  for (let i = 0; i < versions.length; i += MAX_TXN_ITEMS - 1) {
    const tx = ctx.db.tx();
    tx.check(headKey(name), 'attribute_exists(x) AND v = :v', marked);
    for (const item of versions.slice(i, i + MAX_TXN_ITEMS - 1))
      tx.items.push({ Delete: { TableName: ctx.db.table, Key: { pk: item.pk!, sk: item.sk! } } });
    if (!(await ctx.db.commit(tx))) return;
  }
  const tx = ctx.db.tx();
  tx.items.push({
    Delete: {
      TableName: ctx.db.table,
      Key: keyOf(headKey(name)),
      ConditionExpression: 'attribute_exists(x) AND v = :v',
      ExpressionAttributeValues: marked,
    },
  });
  await ctx.db.commit(tx);
}
