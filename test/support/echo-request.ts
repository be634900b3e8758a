import type { SimRequest } from '../../lib/sim';

/** Device side of an echo: copies the readable bytes into the writable buffers; returns the bytes written. */
export function echoRequest(request: SimRequest): number {
  const input = Buffer.concat(request.readable.map((b) => Buffer.from(b)));
  let at = 0;
  for (const target of request.writable) {
    const n = Math.min(target.length, input.length - at);
    target.set(input.subarray(at, at + n));
    at += n;
  }
  return at;
}
