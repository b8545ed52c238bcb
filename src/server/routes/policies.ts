import type { FastifyInstance } from 'fastify';
import { describePolicies } from '../../policies/registry.js';
import type { ServerContext } from '../context.js';
import { weightsCap } from '../policy.js';

/**
 * GET /v1/policies: every configured policy with its method, validated params and
 * CAP profile, in configuration order; the weight-elastic policy the engine runs
 * also carries its plan (bytes resident, bits per shard), once the model is loaded.
 */
export function registerPolicies(app: FastifyInstance, ctx: ServerContext): void {
  const described = describePolicies(ctx.policies);
  app.get('/v1/policies', async () => {
    const plan = weightsCap(ctx.engine.health().weightPlan);
    const running = ctx.servedModel.weightElasticPolicy ?? null;
    return { object: 'list', data: described.map((d) => (plan !== null && d.name === running ? { ...d, plan } : d)) };
  });
}
