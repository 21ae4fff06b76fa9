import {
  checkWorkflow,
  checkWorkflowName,
  checkWorkflowVersion,
  type GraphSpec,
  normalizeWorkflow,
  type ParamSpec,
  planWorkflowPut,
  rfc3339,
  type WorkflowDefinition,
  type WorkflowInput,
  type WorkflowSummary,
  workflowContentHash,
} from '../../model/index.js';
import { workflowInUse, workflowNotFound } from '../../protocol/errors.js';
import type { Db } from './db.js';
import {
  DELETE_WORKFLOW,
  GET_WORKFLOW,
  INSERT_WORKFLOW,
  LATEST_WORKFLOW,
  LIST_WORKFLOWS,
  LOCK_WORKFLOW,
  WORKFLOW_VERSIONS,
} from './sql.js';

/**
 * Workflow definitions on PostgreSQL (rule 16): one immutable row per
 * version. Puts of one name are serialised by a transaction-scoped advisory
 * lock, so the latest version compared is the latest stored.
 */

interface WorkflowRow {
  name: string;
  version: number;
  spec: GraphSpec;
  description: string;
  params: ParamSpec[];
  created_at: string;
}

const toDefinition = (r: WorkflowRow): WorkflowDefinition => ({
  name: r.name,
  version: r.version,
  spec: r.spec,
  description: r.description,
  params: r.params,
  createdAt: rfc3339(Number(r.created_at)),
});

export async function putWorkflow(
  db: Db,
  now: number,
  name: string,
  input: WorkflowInput,
): Promise<WorkflowDefinition> {
  checkWorkflow(name, input);
  const content = normalizeWorkflow(input);
  const hash = workflowContentHash(content);
  return db.retrying('put workflow', () =>
    db.tx('put workflow', async (c) => {
      await c.query(LOCK_WORKFLOW, [name]);
      const latest = (await c.query<{ version: number; content_hash: string }>(LATEST_WORKFLOW, [name]))
        .rows[0];
      const plan = planWorkflowPut(
        name,
        content,
        hash,
        latest && { v: latest.version, h: latest.content_hash },
        rfc3339(now),
      );
      if ('same' in plan) {
        const { rows } = await c.query<WorkflowRow>(GET_WORKFLOW, [name, plan.same]);
        return toDefinition(rows[0]!);
      }
      const { def } = plan;
      await c.query(INSERT_WORKFLOW, [
        name,
        def.version,
        JSON.stringify(def.spec),
        def.description,
        JSON.stringify(def.params),
        hash,
        now,
      ]);
      return def;
    }),
  );
}

export async function getWorkflow(db: Db, name: string, version?: number): Promise<WorkflowDefinition> {
  checkWorkflowName(name);
  checkWorkflowVersion(version);
  const { rows } = await db.retrying('get workflow', () =>
    db.query<WorkflowRow>('get workflow', GET_WORKFLOW, [name, version ?? null]),
  );
  if (!rows[0]) throw workflowNotFound(name, version);
  return toDefinition(rows[0]);
}

export async function listWorkflows(db: Db): Promise<WorkflowSummary[]> {
  const { rows } = await db.retrying('list workflows', () =>
    db.query<WorkflowRow>('list workflows', LIST_WORKFLOWS, []),
  );
  return rows.map((r) => ({
    name: r.name,
    latestVersion: r.version,
    description: r.description,
    params: r.params,
    createdAt: rfc3339(Number(r.created_at)),
  }));
}

export async function listWorkflowVersions(db: Db, name: string): Promise<WorkflowDefinition[]> {
  checkWorkflowName(name);
  const { rows } = await db.retrying('list workflow versions', () =>
    db.query<WorkflowRow>('list workflow versions', WORKFLOW_VERSIONS, [name]),
  );
  if (rows.length === 0) throw workflowNotFound(name);
  return rows.map(toDefinition);
}

/**
 * Deletes every version, after asking `inUse` (the hook schedules fill in)
 * what still uses it. Under the name's advisory lock, which a schedule put
 * naming this workflow takes too: a schedule stored meanwhile is seen.
 */
export async function deleteWorkflow(
  db: Db,
  name: string,
  inUse: (name: string) => Promise<string | undefined>,
): Promise<void> {
  checkWorkflowName(name);
  const deleted = await db.retrying('delete workflow', () =>
    db.tx('delete workflow', async (c) => {
      await c.query(LOCK_WORKFLOW, [name]);
      const user = await inUse(name);
      if (user) throw workflowInUse(name, user);
      return (await c.query(DELETE_WORKFLOW, [name])).rowCount;
    }),
  );
  if (!deleted) throw workflowNotFound(name);
}
