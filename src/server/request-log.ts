/**
 * What a request log line says about the request: method, path and peer, never
 * the query string (clients send keys as `?api_key=`), nor headers or body
 * (prompts are never logged). Applied to whatever logger options the server is given.
 */
import type { FastifyServerOptions } from 'fastify';

interface LoggedRequest {
  readonly method: string;
  readonly url: string;
  readonly hostname?: string;
  readonly ip?: string;
  readonly socket?: { readonly remotePort?: number | undefined } | undefined;
}

export type RequestLogFields = {
  readonly method: string;
  /** The path only. */
  readonly url: string;
  readonly host?: string;
  readonly remoteAddress?: string;
  readonly remotePort?: number;
};

export function requestLogFields(request: LoggedRequest): RequestLogFields {
  const at = request.url.indexOf('?');
  const port = request.socket?.remotePort;
  return {
    method: request.method,
    url: at < 0 ? request.url : request.url.slice(0, at),
    ...(request.hostname !== undefined ? { host: request.hostname } : {}),
    ...(request.ip !== undefined ? { remoteAddress: request.ip } : {}),
    ...(port !== undefined ? { remotePort: port } : {}),
  };
}

/** The logger options with our request serializer in place of fastify's (which logs the full URL). */
export function withRequestSerializer(logger: FastifyServerOptions['logger']): FastifyServerOptions['logger'] {
  if (logger === undefined || logger === false) return false;
  const base = logger === true ? {} : logger;
  return { ...base, serializers: { ...(base.serializers ?? {}), req: requestLogFields } };
}
