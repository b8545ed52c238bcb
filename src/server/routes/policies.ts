import type { FastifyInstance } from 'fastify';
import { describePolicies } from '../../policies/registry.js';
import type { ServerContext } from '../context.js';

/** GET /v1/policies: every configured policy with its method, validated params and CAP profile, in configuration order. */
export function registerPolicies(app: FastifyInstance, ctx: ServerContext): void {
  const body = { object: 'list', data: describePolicies(ctx.policies) };
  app.get('/v1/policies', async () => body);
}
