import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';

/**
 * Prometheus metrics of one adagiod process. A registry per server (not the
 * global one) so several servers in one test process do not collide.
 */
export class ApiMetrics {
  readonly registry = new Registry();
  readonly runsStarted = new Counter({
    name: 'adagio_runs_started_total',
    help: 'Runs started through this API process.',
    registers: [this.registry],
  });
  readonly requestDuration = new Histogram({
    name: 'adagio_api_request_duration_seconds',
    help: 'API request durations by route (RPC method or JSON route) and outcome code.',
    labelNames: ['route', 'code'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly nodeTransitions = new Counter({
    name: 'adagio_node_transitions_total',
    help: 'Node transitions made by this process’s agents: claimed (READY → RUNNING) and finished, by conclusion.',
    labelNames: ['transition', 'conclusion'] as const,
    registers: [this.registry],
  });
  readonly claimLatency = new Histogram({
    name: 'adagio_claim_latency_seconds',
    help: 'Duration of this process’s claim transactions (won or lost).',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [this.registry],
  });

  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'adagio_' });
  }

  /** Times a request; call the returned function with the outcome code. */
  time(route: string): (code: string) => void {
    const end = this.requestDuration.startTimer({ route });
    return (code) => end({ code });
  }
}
