import { fillWritable } from '../../lib/sim/held-receives';
import type { SimRequest } from '../../lib/sim';

/** Device side of an echo: copies the readable bytes into the writable buffers; returns the bytes written. */
export function echoRequest(request: SimRequest): number {
  return fillWritable(request, Buffer.concat(request.readable.map((b) => Buffer.from(b))));
}
