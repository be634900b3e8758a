import { VirtioError } from '../errors';

/** Node's codes for the bad-argument errors that carry none (the library's RangeError and TypeError). */
const NODE_CODES: Record<string, string> = { RangeError: 'ERR_OUT_OF_RANGE', TypeError: 'ERR_INVALID_ARG_TYPE' };

/** The stable code of any failure: the error's own `code`, else Node's code for its class, else its class name. */
export function errorCode(error: unknown): string {
  const code = error instanceof VirtioError ? error.code : (error as { code?: unknown })?.code;
  if (typeof code === 'string') return code;
  const name = (error as { name?: unknown })?.name;
  if (typeof name !== 'string') return 'Error';
  return NODE_CODES[name] ?? name;
}

/** The failure as `{ code, message }`. */
export function describeFailure(error: unknown): { code: string; message: string } {
  // Errors from another realm (a vm context, Jest's sandbox) are not `instanceof Error` here.
  const message = (error as { message?: unknown })?.message;
  return { code: errorCode(error), message: typeof message === 'string' ? message : String(error) };
}
