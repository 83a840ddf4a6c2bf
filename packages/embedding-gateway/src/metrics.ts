// The original's one metric, `processed_tokens_total` (tokens the upstream billed on misses),
// plus the gateway's own, with bounded labels.
import { Counter, createRegistry, Histogram, type Registry } from '@seahorse/runtime/metrics';

export interface GatewayMetrics {
  registry: Registry;
  processedTokens: Counter;
  requests: Counter<'outcome'>;
  perInputLookups: Counter<'result'>;
  upstreamCalls: Counter<'status'>;
  upstreamDuration: Histogram;
  corruptObjects: Counter;
}

export function createMetrics(): GatewayMetrics {
  const registry = createRegistry();
  return {
    registry,
    processedTokens: new Counter({
      name: 'processed_tokens_total',
      help: 'Total number of tokens processed',
      registers: [registry],
    }),
    requests: new Counter({
      name: 'embedding_gateway_requests_total',
      help: 'Embeddings requests by outcome: memory_hit, store_hit, miss, coalesced, error',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    perInputLookups: new Counter({
      name: 'embedding_gateway_per_input_lookups_total',
      help: 'Per-input cache lookups by result (hit, miss), with --per-input-cache',
      labelNames: ['result'],
      registers: [registry],
    }),
    upstreamCalls: new Counter({
      name: 'embedding_gateway_upstream_requests_total',
      help: 'Calls to the upstream by status class (2xx, 4xx, 5xx, error)',
      labelNames: ['status'],
      registers: [registry],
    }),
    upstreamDuration: new Histogram({
      name: 'embedding_gateway_upstream_request_duration_seconds',
      help: 'Time from sending a call to the upstream to its last byte',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    corruptObjects: new Counter({
      name: 'embedding_gateway_corrupt_objects_total',
      help: 'Stored objects that failed their checks and were fetched again instead of served',
      registers: [registry],
    }),
  };
}
