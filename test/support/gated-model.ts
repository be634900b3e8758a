import type { SimDeviceModel, SimRequest } from '../../lib/sim';

/**
 * Wraps a sim model so that chosen requests are held — a slow but honest
 * device: it reads a chain's readable buffers when it takes it, and does
 * the work (writes the writable buffers, then the used element) only when
 * the test releases it. `hold` decides per
 * request (default: all while `holding` is true).
 */
export interface GatedModel<M extends SimDeviceModel> {
  model: M;
  /** Requests are held while this is true (when no `hold` predicate decides). */
  holding: boolean;
  /** Requests held and not released yet. */
  readonly held: number;
  /** Does the work of held request `at` (0: the oldest) now; its used element follows. */
  release(at?: number): void;
  /** Releases every held request, oldest first. */
  releaseAll(): void;
  /** Forgets every held request without doing its work, as a device does at a reset that completes (§2.4). */
  dropAll(): void;
}

export function gateModel<M extends SimDeviceModel>(
  model: M,
  hold?: (request: SimRequest, gate: GatedModel<M>) => boolean,
  /**
   * Requests whose readable buffers the device reads only when it does the work (default: none; all are read at take).
   */
  readLate?: (request: SimRequest) => boolean,
): GatedModel<M> {
  const queue: { request: SimRequest; resolve: (len: number) => void; reject: (error: unknown) => void }[] = [];
  const inner = model.handle.bind(model);
  const gate: GatedModel<M> = {
    model,
    holding: true,
    get held() {
      return queue.length;
    },
    release(at = 0) {
      const [entry] = queue.splice(at, 1);
      if (!entry) throw new RangeError(`no held request at ${at}`);
      // The work (buffer writes) is done now; the used element follows when the sim takes the result.
      let result: number | Promise<number>;
      try {
        result = inner(entry.request);
      } catch (error) {
        entry.reject(error);
        return;
      }
      Promise.resolve(result).then(entry.resolve, entry.reject);
    },
    releaseAll() {
      while (queue.length > 0) gate.release(0);
    },
    dropAll() {
      queue.length = 0;
    },
  };
  model.handle = (request: SimRequest) => {
    if (!(hold ? hold(request, gate) : gate.holding)) return inner(request);
    // What the device reads it reads when it takes the chain; what it writes it writes when it does the work.
    const taken: SimRequest = readLate?.(request)
      ? request
      : { ...request, readable: request.readable.map((view) => Uint8Array.from(view)) };
    return new Promise<number>((resolve, reject) => queue.push({ request: taken, resolve, reject }));
  };
  return gate;
}
