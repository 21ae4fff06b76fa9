import { FlowProducer, type Job, Queue, Worker } from 'bullmq';
import type { CpuMeter } from '../cpu.js';
import { requireRedis } from '../stores.js';
import { type Contender, countdown, latencies, measure, type Peer, PRODUCERS, SLOTS } from './peer.js';

/**
 * BullMQ 6.7.0 on Redis, keys under a prefix of its own (obliterated at the
 * end). Jobs are removed on completion, as graphile-worker and most
 * deployments do. Its nearest shape to a DAG is a flow: a parent that runs
 * once its children have (here a root over 5 children, 6 jobs).
 */
const QUEUE = 'peers';
const FLOW_CHILDREN = 5;
const remove = { removeOnComplete: true, removeOnFail: true };

export async function bullmq(): Promise<Peer> {
  const target = await requireRedis();
  const connection = { ...target, maxRetriesPerRequest: null };
  const prefix = `adagio-bench-${process.pid}`;
  const queue = new Queue(QUEUE, { connection, prefix });
  const client = await queue.getBackend().client;
  // Redis' own CPU: INFO's used_cpu_sys + used_cpu_user, which a remote server reports too.
  const cpu: CpuMeter = async () => {
    const info = await client.info();
    const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
    return new Map([[field('process_id'), (field('used_cpu_sys') + field('used_cpu_user')) * 1e6]]);
  };

  /** Times a worker started now (on jobs already or soon queued) until `jobs` have completed. */
  const drain = async (jobs: number, during: () => Promise<unknown> = async () => {}) => {
    const finished = countdown(jobs, `BullMQ draining ${jobs} jobs`);
    let worker: Worker | undefined;
    try {
      return await measure(jobs, cpu, async () => {
        worker = new Worker(QUEUE, async () => {}, { connection, prefix, concurrency: SLOTS });
        worker.on('completed', () => finished.add());
        await during();
        await finished.all();
      });
    } finally {
      await worker?.close();
    }
  };

  const contender: Contender = {
    name: 'BullMQ 6.7.0',
    backlog: async (jobs) => {
      for (let i = 0; i < jobs; i += 1000)
        await queue.addBulk(
          Array.from({ length: Math.min(1000, jobs - i) }, () => ({ name: 'noop', data: {}, opts: remove })),
        );
      return drain(jobs);
    },
    latency: async (rate, count) => {
      const seen = latencies(count);
      const worker = new Worker(QUEUE, async (job: Job<{ t0: number }>) => seen.record(job.data.t0), {
        connection,
        prefix,
        concurrency: SLOTS,
      });
      try {
        await worker.waitUntilReady();
        return await seen.run(rate, (t0) => queue.add('noop', { t0 }, remove));
      } finally {
        await worker.close();
      }
    },
    dag: async (runs) => {
      const flows = new FlowProducer({ connection, prefix });
      const child = { name: 'child', queueName: QUEUE, data: {}, opts: remove };
      try {
        return await drain(runs * (FLOW_CHILDREN + 1), async () => {
          let next = 0;
          await Promise.all(
            Array.from({ length: PRODUCERS }, async () => {
              while (next++ < runs)
                await flows.add({
                  name: 'root',
                  queueName: QUEUE,
                  data: {},
                  opts: remove,
                  children: Array.from({ length: FLOW_CHILDREN }, () => child),
                });
            }),
          );
        });
      } finally {
        await flows.close();
      }
    },
  };
  return {
    contenders: [contender],
    close: async () => {
      await queue.obliterate({ force: true });
      await queue.close();
    },
  };
}
