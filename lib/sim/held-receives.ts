import type { SimRequest } from './sim-model';

/** A device-writable chain the model keeps until it has data for it, and how to complete it. */
export interface HeldReceive {
  readonly request: SimRequest;
  readonly complete: (len: number) => void;
}

/**
 * The receive buffers a device model (console, net) holds in the order the
 * driver posted them, until data arrives for them.
 */
export class HeldReceives {
  private held: HeldReceive[] = [];

  /** `onHeld` runs after each new buffer is held (deliver what is waiting). */
  constructor(private readonly onHeld: () => void) {}

  get length(): number {
    return this.held.length;
  }

  /** For SimDeviceModel.handle(): completes when the model fills the buffer. */
  hold(request: SimRequest): Promise<number> {
    return new Promise<number>((complete) => {
      this.held.push({ request, complete });
      this.onHeld();
    });
  }

  /** The writable bytes of the i-th held buffer. */
  room(i: number): number {
    return this.held[i].request.writableBytes;
  }

  /** Takes the first `count` held buffers out, oldest first. */
  take(count = 1): HeldReceive[] {
    return this.held.splice(0, count);
  }

  /** Drops everything held (device or queue reset). */
  clear(): void {
    this.held = [];
  }
}

/** Copies `source[from..]` into the request's writable buffers in order; returns the bytes copied. */
export function fillWritable(request: SimRequest, source: Uint8Array, from = 0): number {
  let at = from;
  for (const target of request.writable) {
    if (at >= source.length) break;
    const n = Math.min(target.length, source.length - at);
    target.set(source.subarray(at, at + n));
    at += n;
  }
  return at - from;
}
