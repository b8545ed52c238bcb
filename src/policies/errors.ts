/**
 * The one error policies raise: a bad policy file, bad params, or a view that
 * lacks what the method needs. The message names the file and JSON path (for
 * files) or the method and the missing input (for views).
 */
export class PolicyError extends Error {
  readonly code = 'invalid_policy' as const;

  constructor(message: string) {
    super(message);
    this.name = 'PolicyError';
  }
}
