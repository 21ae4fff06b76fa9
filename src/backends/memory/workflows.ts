import {
  type Clock,
  checkWorkflow,
  checkWorkflowName,
  checkWorkflowVersion,
  normalizeWorkflow,
  planWorkflowPut,
  rfc3339,
  type WorkflowDefinition,
  type WorkflowInput,
  type WorkflowSummary,
  workflowContentHash,
} from '../../model/index.js';
import { workflowNotFound as notFound, workflowInUse } from '../../protocol/errors.js';

/** The memory backend's workflow definitions (rule 16): versions per name, each immutable. Synchronous, so each call is atomic. */
export class MemoryWorkflows {
  private readonly byName = new Map<string, { def: WorkflowDefinition; hash: string }[]>();

  constructor(
    private readonly clock: Clock,
    /**
     * What still uses a workflow (a schedule, say), or undefined: delete is
     * refused while it answers. The hook the schedules feature fills in.
     */
    private readonly inUse: (name: string) => string | undefined = () => undefined,
  ) {}

  put(name: string, input: WorkflowInput): WorkflowDefinition {
    checkWorkflow(name, input);
    const content = normalizeWorkflow(input);
    const hash = workflowContentHash(content);
    const versions = this.byName.get(name) ?? [];
    const latest = versions[versions.length - 1];
    const plan = planWorkflowPut(
      name,
      content,
      hash,
      latest && { v: latest.def.version, h: latest.hash },
      rfc3339(this.clock.now()),
    );
    if ('same' in plan) return copy(latest!.def);
    const { def } = plan;
    versions.push({ def, hash });
    this.byName.set(name, versions);
    return copy(def);
  }

  get(name: string, version?: number): WorkflowDefinition {
    checkWorkflowName(name);
    checkWorkflowVersion(version);
    const versions = this.byName.get(name);
    const found =
      version === undefined
        ? versions?.[versions.length - 1]
        : versions?.find((v) => v.def.version === version);
    if (!found) throw notFound(name, version);
    return copy(found.def);
  }

  list(): WorkflowSummary[] {
    return [...this.byName.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, versions]) => {
        const d = versions[versions.length - 1]!.def;
        return {
          name,
          latestVersion: d.version,
          description: d.description,
          params: d.params,
          createdAt: d.createdAt,
        };
      });
  }

  versions(name: string): WorkflowDefinition[] {
    checkWorkflowName(name);
    const versions = this.byName.get(name);
    if (!versions) throw notFound(name);
    return versions.map((v) => copy(v.def)).reverse();
  }

  delete(name: string): void {
    checkWorkflowName(name);
    if (!this.byName.has(name)) throw notFound(name);
    const user = this.inUse(name);
    if (user) throw workflowInUse(name, user);
    this.byName.delete(name);
  }
}

const copy = (d: WorkflowDefinition): WorkflowDefinition => structuredClone(d);
