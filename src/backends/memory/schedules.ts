import type { ParamSpec, Schedule, WorkflowDefinition } from '../../model/index.js';
import type { ScheduleCell, ScheduleStore, WorkflowToken } from '../schedules.js';
import type { MemoryWorkflows } from './workflows.js';

/** Schedules in memory (rule 18): a map of records, each with a revision the writes compare. */
export class MemoryScheduleStore implements ScheduleStore {
  private readonly byName = new Map<string, { schedule: Schedule; rev: number }>();
  private revs = 0;

  constructor(private readonly workflows: MemoryWorkflows) {}

  async read(name: string): Promise<ScheduleCell | undefined> {
    const cell = this.byName.get(name);
    return cell ? { schedule: structuredClone(cell.schedule), rev: String(cell.rev) } : undefined;
  }

  async list(): Promise<Schedule[]> {
    return [...this.byName.values()]
      .map((c) => structuredClone(c.schedule))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async write(schedule: Schedule, rev: string | undefined, workflow?: WorkflowToken): Promise<boolean> {
    const cell = this.byName.get(schedule.name);
    if ((cell === undefined ? undefined : String(cell.rev)) !== rev) return false;
    if (workflow !== undefined && !this.workflowStill(workflow as WorkflowDefinition)) return false;
    this.byName.set(schedule.name, { schedule: structuredClone(schedule), rev: ++this.revs });
    return true;
  }

  async remove(name: string): Promise<boolean> {
    return this.byName.delete(name);
  }

  /** The token is the definition read: the write checks the workflow's latest version is still it. */
  async workflowParams(workflow: string): Promise<{ params: readonly ParamSpec[]; token: WorkflowToken }> {
    const def = this.workflows.get(workflow);
    return { params: def.params, token: def };
  }

  private workflowStill(read: WorkflowDefinition): boolean {
    try {
      return this.workflows.get(read.name).version === read.version;
    } catch {
      return false;
    }
  }

  /** Synchronous, for the workflows' in-use hook. */
  usedBy(workflow: string): string | undefined {
    for (const c of this.byName.values())
      if (c.schedule.workflow === workflow) return `schedule ${JSON.stringify(c.schedule.name)}`;
    return undefined;
  }
}
