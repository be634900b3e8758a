import { DriverSetup, VirtioDriver, type DriverOptions, type StartedDevice } from '../../lib/devices';
import { freeIfLive, type DmaRegion } from '../../lib/platform';
import type { Virtqueue, SubmitOptions } from '../../lib/queue';
import type { VirtioTransport } from '../../lib/transport';

/** A user-style driver on the public base: one queue, echo requests (device 42 of echoModel). */
export class EchoDriver extends VirtioDriver {
  /** Opens the device (the tests construct it with `new`, so the setup runs here). */
  constructor(transport: VirtioTransport, options: DriverOptions) {
    super(EchoDriver.setUp(transport, options));
  }

  private static setUp(transport: VirtioTransport, options: DriverOptions): StartedDevice {
    const setup = DriverSetup.begin(transport, options);
    try {
      setup.negotiate(42, 0n);
      setup.setUpQueues([0]);
      setup.driverOk();
      return setup.finish();
    } catch (error) {
      throw setup.abandon(error);
    }
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
    // Written as a user would, freeing in `finally`: the base keeps whatever the device still holds
    // (the allocator defers the free until the chain comes back or a reset completes).
    try {
      const len = await this.q.submit(
        { readable: input.map((region) => ({ region })), writable: output.map((region) => ({ region })) },
        options,
      );
      return Buffer.concat(output.map((r) => this.bytes(r))).subarray(0, len);
    } finally {
      for (const r of [...input, ...output]) freeIfLive(this.memory, r);
    }
  }
}
