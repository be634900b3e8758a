import { randomFillSync } from 'node:crypto';

import { DeviceId } from '../spec';
import type { SimDeviceModel, SimRequest } from './sim-model';
import { outOfRange } from '../errors';

export interface RngModelOptions {
  /** QueueNumMax of the request queue (default 64). */
  queueSize?: number;
  /** At most this many bytes per request (default: all writable bytes). */
  maxBytesPerRequest?: number;
  /** Where the bytes come from (default crypto.randomFillSync). */
  source?: (buffer: Uint8Array) => void;
}

/**
 * The entropy device (virtio 1.2 §5.4): one request queue, no feature
 * bits, no configuration space. Each request's device-writable buffers are
 * filled with random bytes; the used length is the number written.
 */
export class RngModel implements SimDeviceModel {
  readonly deviceId = DeviceId.ENTROPY;
  readonly features = 0n;
  readonly queueSizes: readonly number[];
  readonly config = new Uint8Array(0);
  private readonly maxBytes: number;
  private readonly source: (buffer: Uint8Array) => void;

  constructor(options: RngModelOptions = {}) {
    const queueSize = options.queueSize ?? 64;
    if (!Number.isInteger(queueSize) || queueSize < 0 || queueSize > 32768) {
      throw outOfRange(`queueSize must be an integer in [0, 32768], got ${String(queueSize)}`);
    }
    const max = options.maxBytesPerRequest ?? Infinity;
    if (!(max >= 0) || (!Number.isInteger(max) && max !== Infinity)) {
      throw outOfRange(`maxBytesPerRequest must be a non-negative integer, got ${String(max)}`);
    }
    this.queueSizes = [queueSize];
    this.maxBytes = max;
    this.source = options.source ?? ((buffer) => randomFillSync(buffer));
  }

  handle(request: SimRequest): number | Promise<number> {
    let left = this.maxBytes;
    let written = 0;
    for (const buffer of request.writable) {
      if (left === 0) break;
      const part = buffer.length <= left ? buffer : buffer.subarray(0, left);
      this.source(part);
      written += part.length;
      left -= part.length;
    }
    return written;
  }
}
