import type { FastifyInstance } from 'fastify';
import type { ModelCard } from '../../engine/types.js';
import type { ServerContext } from '../context.js';
import { ensureReady } from '../context.js';
import { contextLimit, resolveModel } from '../prompt.js';

function modelObject(ctx: ServerContext, card: ModelCard): Record<string, unknown> {
  return {
    id: card.id,
    object: 'model',
    created: card.createdAt,
    owned_by: 'capserve',
    root: card.id,
    parent: null,
    max_model_len: contextLimit(card, ctx.config),
  };
}

export function registerModels(app: FastifyInstance, ctx: ServerContext): void {
  app.get('/v1/models', async () => {
    ensureReady(ctx);
    return { object: 'list', data: ctx.engine.models().map((card) => modelObject(ctx, card)) };
  });

  app.get<{ Params: { model: string } }>('/v1/models/:model', async (request) => {
    ensureReady(ctx);
    return modelObject(ctx, resolveModel(ctx.engine, request.params.model));
  });
}
