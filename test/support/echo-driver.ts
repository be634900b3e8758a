import { VirtioDriver, type DriverOptions } from '../../lib/devices';
import type { DmaRegion } from '../../lib/platform';
import type { Virtqueue, SubmitOptions } from '../../lib/queue';
import type { MmioTransport } from '../../lib/transport';

/** A user-style driver on the public base: one queue, echo requests (device 42 of echoModel). */
export class EchoDriver extends VirtioDriver {
  constructor(transport: MmioTransport, options: DriverOptions) {
    super(VirtioDriver.start(transport, { deviceId: 42, queues: [0] }, options));
  }

  private readonly held: DmaRegion[] = [];

  override close(): void {
    if (this.closed) return;
    super.close();
    if (this.deviceReleased) for (const region of this.held.splice(0)) this.memory.free(region);
  }

  get q(): Virtqueue {
    return this.queue(0);
  }

  dma(bytes: Uint8Array | number): DmaRegion {
    const region = this.memory.allocate(typeof bytes === 'number' ? bytes : bytes.length);
    if (typeof bytes !== 'number') new Uint8Array(region.view, region.offset, region.size).set(bytes);
    return region;
  }

  bytes(region: DmaRegion, length = region.size): Buffer {
    return Buffer.from(new Uint8Array(region.view, region.offset, length));
  }

  /** Sends `parts` as readable buffers and `outSizes` writable ones; returns the bytes written back. */
  async echo(parts: Uint8Array[], outSizes: number[], options?: SubmitOptions): Promise<Buffer> {
    const input = parts.map((p) => this.dma(p));
    const output = outSizes.map((n) => this.dma(n));
    let len: number;
    try {
      len = await this.q.submit({ readable: input.map((region) => ({ region })), writable: output.map((region) => ({ region })) }, options);
    } catch (error) {
      // An aborted or timed-out request's buffers may still be the device's: freed at close, once it let go.
      const code = (error as { code?: string }).code;
      if (code === 'ABORT_ERR' || code === 'ERR_VIRTIO_TIMEOUT') this.held.push(...input, ...output);
      else for (const r of [...input, ...output]) this.memory.free(r);
      throw error;
    }
    const result = Buffer.concat(output.map((r) => this.bytes(r))).subarray(0, len);
    for (const r of [...input, ...output]) this.memory.free(r);
    return result;
  }
}
