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
import type { EtcdContext } from './context.js';
import { prefixEnd } from './keys.js';
import { type Decision, optimistic } from './optimistic.js';
import { decodeJson, encodeJson } from './records.js';
import { absent, del, delPrefix, get, getPrefix, modIs, put } from './store.js';

/**
 * Workflow definitions on etcd (rule 16). Each version is its own immutable
 * key; the head key (latest version, content hash, summary) is what puts
 * compare-and-swap, so two concurrent puts of a name never take one version
 * number, and a list is one range over the heads.
 */

type Head = WorkflowHead;

export async function putWorkflow(
  ctx: EtcdContext,
  name: string,
  input: WorkflowInput,
): Promise<WorkflowDefinition> {
  checkWorkflow(name, input);
  const { keys, store } = ctx;
  const content = normalizeWorkflow(input);
  const hash = workflowContentHash(content);
  const headKey = keys.workflowHead(name);
  // A lost race (another put, or a delete) reads the head back in the same round trip.
  return optimistic(
    store,
    `put of workflow ${JSON.stringify(name)}`,
    async (lost): Promise<Decision<WorkflowDefinition>> => {
      const kv = lost
        ? lost.responses[0]!.response_range.kvs[0]
        : (await store.retrying('put workflow', () => store.range({ key: headKey }))).kvs[0];
      const head = kv ? decodeJson<Head>(kv.value) : undefined;
      const plan = planWorkflowPut(name, content, hash, head, rfc3339(ctx.clock.now()));
      if ('same' in plan) return { done: await getWorkflow(ctx, name, plan.same) };
      const { def, head: next } = plan;
      return {
        compare: [kv ? modIs(headKey, kv.mod_revision) : absent(headKey)],
        success: [
          put(keys.workflowVersion(name, def.version), encodeJson(def)),
          put(headKey, encodeJson(next)),
        ],
        failure: [get(headKey)],
        result: def,
      };
    },
  );
}

export async function getWorkflow(
  ctx: EtcdContext,
  name: string,
  version?: number,
): Promise<WorkflowDefinition> {
  checkWorkflowName(name);
  checkWorkflowVersion(version);
  const { keys, store } = ctx;
  return store.retrying('get workflow', async () => {
    let v = version;
    if (v === undefined) {
      const head = (await store.range({ key: keys.workflowHead(name) })).kvs[0];
      if (!head) throw workflowNotFound(name);
      v = decodeJson<Head>(head.value).v;
    }
    const kv = (await store.range({ key: keys.workflowVersion(name, v) })).kvs[0];
    if (!kv) throw workflowNotFound(name, version);
    return decodeJson<WorkflowDefinition>(kv.value);
  });
}

/** Every head, by name (the key order): one range. */
export async function listWorkflows(ctx: EtcdContext): Promise<WorkflowSummary[]> {
  const { keys, store } = ctx;
  const res = await store.retrying('list workflows', () =>
    store.range({ key: keys.workflowHeads(), range_end: prefixEnd(keys.workflowHeads()) }),
  );
  return res.kvs.map((kv) => decodeJson<Head>(kv.value).summary).sort((a, b) => (a.name < b.name ? -1 : 1));
}

export async function listWorkflowVersions(ctx: EtcdContext, name: string): Promise<WorkflowDefinition[]> {
  checkWorkflowName(name);
  const { keys, store } = ctx;
  const res = await store.retrying('list workflow versions', () =>
    store.txn({
      success: [getPrefix(keys.workflowVersions(name), { sort_order: 'Descend', sort_target: 'Key' })],
    }),
  );
  const kvs = res.responses[0]!.response_range.kvs;
  if (kvs.length === 0) throw workflowNotFound(name);
  return kvs.map((kv) => decodeJson<WorkflowDefinition>(kv.value));
}

/**
 * Deletes the head and every version in one transaction that compares the
 * head, after asking `inUse` (the hook schedules fill in) what still uses it.
 */
export async function deleteWorkflow(
  ctx: EtcdContext,
  name: string,
  inUse: (name: string) => Promise<string | undefined>,
): Promise<void> {
  checkWorkflowName(name);
  const { keys, store } = ctx;
  const headKey = keys.workflowHead(name);
  await optimistic(
    store,
    `delete of workflow ${JSON.stringify(name)}`,
    async (lost): Promise<Decision<void>> => {
      const kv = lost
        ? lost.responses[0]!.response_range.kvs[0]
        : (await store.retrying('delete workflow', () => store.range({ key: headKey }))).kvs[0];
      if (!kv) throw workflowNotFound(name);
      const user = await inUse(name);
      if (user) throw workflowInUse(name, user);
      return {
        compare: [modIs(headKey, kv.mod_revision)],
        success: [del(headKey), delPrefix(keys.workflowVersions(name))],
        failure: [get(headKey)],
        result: undefined,
      };
    },
  );
}
