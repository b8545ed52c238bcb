import type { FastifyInstance } from 'fastify';
import type { ModelCard } from '../../engine/types.js';
import type { ServerContext } from '../context.js';
import { ensureReady } from '../context.js';
import { contextLimit, renderChat, resolveModel, toChatMessages } from '../prompt.js';
import { DetokenizeRequestSchema, TokenizeChatRequestSchema, TokenizePromptRequestSchema } from '../request-schemas.js';
import { rejectUnsupported } from '../unsupported-params.js';
import { compileValidator } from '../validate-request.js';

const validatePrompt = compileValidator(TokenizePromptRequestSchema);
const validateChat = compileValidator(TokenizeChatRequestSchema);
const validateDetokenize = compileValidator(DetokenizeRequestSchema);

/** vLLM's /tokenize and /detokenize shapes. */
export function registerTokenize(app: FastifyInstance, ctx: ServerContext): void {
  app.post('/tokenize', async (request) => {
    const raw = request.body;
    const isChat = raw !== null && typeof raw === 'object' && !Array.isArray(raw) && 'messages' in raw;
    if (isChat) rejectUnsupported(raw, 'chat');
    ensureReady(ctx);
    let tokens: number[];
    let card: ModelCard;
    if (isChat) {
      const body = validateChat(raw);
      card = resolveModel(ctx.engine, body.model);
      const continueFinal = body.continue_final_message === true;
      // vLLM's default: the generation prompt is added unless the final message is continued.
      const addGenerationPrompt = body.add_generation_prompt ?? !continueFinal;
      const rendered = await renderChat(ctx.engine, card, toChatMessages(body.messages), { addGenerationPrompt, continueFinalMessage: continueFinal });
      tokens = await ctx.engine.tokenize(rendered.text, { addSpecialTokens: body.add_special_tokens ?? rendered.addSpecialTokens });
    } else {
      const body = validatePrompt(raw);
      card = resolveModel(ctx.engine, body.model);
      tokens = await ctx.engine.tokenize(body.prompt, { addSpecialTokens: body.add_special_tokens ?? true });
    }
    return { count: tokens.length, max_model_len: contextLimit(card, ctx.config), tokens };
  });

  app.post('/detokenize', async (request) => {
    const body = validateDetokenize(request.body);
    ensureReady(ctx);
    resolveModel(ctx.engine, body.model);
    return { prompt: await ctx.engine.detokenize(body.tokens) };
  });
}
