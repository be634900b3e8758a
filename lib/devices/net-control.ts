import { DeviceIoError, ProtocolError } from '../errors';
import { freeIfLive, type DmaAllocator } from '../platform';
import type { Virtqueue } from '../queue';
import { NetCtrlAck } from '../spec';

/**
 * The control virtqueue (VIRTIO_NET_F_CTRL_VQ, virtio 1.2 §5.1.6.5): each
 * command is class, command and data the device reads, then one ack byte
 * it writes. VIRTIO_NET_OK resolves; VIRTIO_NET_ERR rejects with
 * DeviceIoError (status 1); an ack not written, or any other value,
 * rejects with ProtocolError.
 */
export class NetControl {
  constructor(
    private readonly queue: Virtqueue,
    private readonly memory: DmaAllocator,
    private readonly timeoutMs?: number,
  ) {}

  async command(cls: number, command: number, data: Uint8Array): Promise<void> {
    const out = 2 + data.length;
    const region = this.memory.allocate(out + 1);
    const bytes = new Uint8Array(region.view, region.offset, out + 1);
    bytes[0] = cls;
    bytes[1] = command;
    bytes.set(data, 2);
    bytes[out] = 0xff; // not an ack value: a device that writes nothing is caught
    const free = (): void => freeIfLive(this.memory, region);
    // A command given up on frees its memory when the device gives it back (SubmitOptions.reclaim).
    const len = await this.queue.submit(
      { readable: [{ region, offset: 0, length: out }], writable: [{ region, offset: out, length: 1 }] },
      { timeoutMs: this.timeoutMs, reclaim: free },
    );
    const ack = bytes[out];
    free();
    const what = `virtio-net control command class ${cls} command ${command}`;
    if (len < 1) throw new ProtocolError('net-ctrl-no-ack', `${what}: the device wrote no ack`);
    if (ack === NetCtrlAck.ERR) throw new DeviceIoError(`${what}: the device answered VIRTIO_NET_ERR`, ack);
    if (ack !== NetCtrlAck.OK) throw new ProtocolError('net-ctrl-ack', `${what}: ack ${ack} is neither OK nor ERR`);
  }
}
