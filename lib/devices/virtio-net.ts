import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { CanceledError } from '../errors';
import type { DmaRegion } from '../platform';
import type { Virtqueue } from '../queue';
import { DeviceId, FeatureBit, NET_HDR_NUM_BUFFERS, NET_HDR_SIZE, NET_HDR_SIZE_LEGACY, NET_MAX_FRAME, NetConfig, NetFeature, NetQueue, NetStatus, features, hasFeature } from '../spec';
import type { MmioTransport } from '../transport';
import { VirtioDriver, type DriverOptions } from './virtio-driver';

export interface VirtioNetOptions extends DriverOptions {
  /** Receive buffers kept posted (default: the receive queue's size, at most 256). */
  receiveBuffers?: number;
  /** Received frames kept for a slow consumer before receive buffers stop being re-posted (default 1024). */
  maxQueuedFrames?: number;
}

const WANTED = features(NetFeature.MAC, NetFeature.STATUS, NetFeature.MRG_RXBUF);
/** Each receive buffer holds a header and a whole frame (§5.1.6.3.1 asks for ≥ 1526 bytes without offloads). */
const RX_BUFFER_BYTES = 2048;

/**
 * The network device (virtio 1.2 §5.1), first queue pair, no offloads:
 * send(frame) puts one Ethernet frame (without FCS) on the wire; received
 * frames arrive as 'frame' events and through frames(). Receive buffers
 * are re-posted as soon as a frame is copied out; frames not yet consumed
 * are kept (up to maxQueuedFrames, then buffers stop being re-posted and
 * the device holds or drops new frames — frames already received are never
 * lost). Emits 'link' (boolean) when the STATUS link bit changes.
 */
export class VirtioNet extends VirtioDriver {
  static readonly deviceId = DeviceId.NET;

  /** The MAC address: from config (MAC feature), else random and locally administered. */
  readonly mac: Buffer;
  readonly events = new EventEmitter();
  private readonly rx: Virtqueue;
  private readonly tx: Virtqueue;
  private readonly headerBytes: number;
  private readonly rxMemory: DmaRegion;
  private readonly maxQueued: number;
  private readonly queued: Buffer[] = [];
  private readonly waiters: { resolve: (r: IteratorResult<Buffer>) => void; reject: (e: unknown) => void }[] = [];
  private readonly idle: number[] = [];
  private link: boolean;
  private dropped = 0;
  private partial?: { parts: Buffer[]; left: number };
  private failure?: Error;

  private constructor(transport: MmioTransport, options: VirtioNetOptions) {
    super(
      VirtioDriver.start(
        transport,
        {
          deviceId: DeviceId.NET,
          features: WANTED,
          queues: (t, negotiated) => {
            // §5.1.4: mac with VIRTIO_NET_F_MAC, status after it with VIRTIO_NET_F_STATUS.
            const bytes = hasFeature(negotiated, NetFeature.STATUS) ? NetConfig.status + 2 : hasFeature(negotiated, NetFeature.MAC) ? NetConfig.mac + 6 : 0;
            VirtioDriver.requireConfig(t, bytes, 'virtio-net');
            return [NetQueue.RECEIVE0, NetQueue.TRANSMIT0];
          },
          queueSize: 256,
        },
        options,
      ),
    );
    this.rx = this.queue(NetQueue.RECEIVE0);
    this.tx = this.queue(NetQueue.TRANSMIT0);
    const modern = hasFeature(this.features, FeatureBit.VERSION_1);
    this.headerBytes = modern || hasFeature(this.features, NetFeature.MRG_RXBUF) ? NET_HDR_SIZE : NET_HDR_SIZE_LEGACY;
    this.maxQueued = options.maxQueuedFrames ?? 1024;
    this.mac = hasFeature(this.features, NetFeature.MAC) ? Buffer.from(transport.config.readBytes(NetConfig.mac, 6)) : randomMac();
    this.link = this.readLink();
    this.onConfigChange(() => {
      const link = this.readLink();
      if (link !== this.link) {
        this.link = link;
        this.events.emit('link', link);
      }
    });
    const count = Math.min(options.receiveBuffers ?? 256, this.rx.size);
    this.rxMemory = this.memory.allocate(count * RX_BUFFER_BYTES, 64);
    for (let slot = 0; slot < count; slot++) this.post(slot);
  }

  /** Initializes the device on `transport` (which must hold a network device). */
  static open(transport: MmioTransport, options: VirtioNetOptions): VirtioNet {
    for (const name of ['receiveBuffers', 'maxQueuedFrames'] as const) {
      const value = options?.[name];
      if (value !== undefined && (!Number.isInteger(value) || value < 1 || value > 65536)) throw new RangeError(`${name} must be an integer in [1, 65536], got ${value}`);
    }
    return new VirtioNet(transport, options);
  }

  /** Receive buffers the device returned malformed (shorter than the header, num_buffers out of range): dropped, not delivered. */
  get droppedFrames(): number {
    return this.dropped;
  }

  /** Link state: the STATUS feature's LINK_UP bit, or always up without it (§5.1.4). */
  get linkUp(): boolean {
    return this.link;
  }

  /** Sends one Ethernet frame (destination MAC first, no FCS); resolves when the device has taken it. */
  async send(frame: Uint8Array): Promise<void> {
    if (!(frame instanceof Uint8Array)) throw new TypeError('frame must be a Buffer or Uint8Array');
    if (frame.length < 14 || frame.length > NET_MAX_FRAME) throw new RangeError(`a frame is 14..${NET_MAX_FRAME} bytes without offloads, got ${frame.length}`);
    this.checkOpen();
    if (this.failure) throw this.failure;
    const region = this.memory.allocate(this.headerBytes + frame.length);
    // The header stays all zeroes: no checksum or segmentation offload (§5.1.6.2).
    new Uint8Array(region.view, region.offset + this.headerBytes, frame.length).set(frame);
    // Freed when the device has taken it; a send given up on frees its copy when the device gives it back.
    const free = (): void => {
      if (this.memory.isLive?.(region) ?? true) this.memory.free(region);
    };
    await this.tx.submit({ readable: [{ region }] }, { timeoutMs: this.requestTimeoutMs, reclaim: free });
    free();
  }

  /** Received frames, in order, until the device is closed. */
  frames(): AsyncIterableIterator<Buffer> {
    const iterator: AsyncIterableIterator<Buffer> = {
      next: () => {
        const frame = this.queued.shift();
        if (frame) {
          this.refill();
          return Promise.resolve({ value: frame, done: false });
        }
        if (this.failure) return Promise.reject(this.failure);
        if (this.closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
      },
      return: () => Promise.resolve({ value: undefined, done: true }),
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  override close(): void {
    if (this.closed) return;
    super.close();
    if (this.deviceReleased && this.rxMemory) this.memory.free(this.rxMemory);
    for (const waiter of this.waiters.splice(0)) waiter.resolve({ value: undefined, done: true });
  }

  private readLink(): boolean {
    if (!hasFeature(this.features, NetFeature.STATUS)) return true;
    return (this.transport.config.read16(NetConfig.status) & NetStatus.LINK_UP) !== 0;
  }

  private post(slot: number): void {
    if (this.closed || this.failure) return;
    this.rx.submit({ writable: [{ region: this.rxMemory, offset: slot * RX_BUFFER_BYTES, length: RX_BUFFER_BYTES }] }).then(
      (len) => {
        if (this.closed) return;
        this.received(slot, len);
        if (this.queued.length < this.maxQueued) this.post(slot);
        else this.idle.push(slot);
      },
      (error: unknown) => this.fail(error),
    );
  }

  /** One used receive buffer: header (first buffer of a frame) and data (§5.1.6.4). */
  private received(slot: number, len: number): void {
    const base = this.rxMemory.offset + slot * RX_BUFFER_BYTES;
    if (!this.partial) {
      // §5.1.6.4: every frame starts with the whole header; a buffer without it is dropped.
      if (len < this.headerBytes) {
        this.dropped++;
        return;
      }
      const header = new DataView(this.rxMemory.view, base, this.headerBytes);
      const buffers = this.headerBytes === NET_HDR_SIZE && hasFeature(this.features, NetFeature.MRG_RXBUF) ? header.getUint16(NET_HDR_NUM_BUFFERS, true) : 1;
      if (buffers < 1 || buffers > this.rx.size) {
        this.dropped++;
        return;
      }
      this.partial = { parts: [Buffer.from(new Uint8Array(this.rxMemory.view, base + this.headerBytes, len - this.headerBytes))], left: buffers - 1 };
    } else {
      this.partial.parts.push(Buffer.from(new Uint8Array(this.rxMemory.view, base, len)));
      this.partial.left--;
    }
    if (this.partial.left > 0) return;
    const frame = Buffer.concat(this.partial.parts);
    this.partial = undefined;
    this.deliver(frame);
  }

  private deliver(frame: Buffer): void {
    this.events.emit('frame', frame);
    const waiter = this.waiters.shift();
    if (waiter) waiter.resolve({ value: frame, done: false });
    else this.queued.push(frame);
  }

  private refill(): void {
    while (this.idle.length > 0 && this.queued.length < this.maxQueued) this.post(this.idle.shift()!);
  }

  private fail(error: unknown): void {
    if (this.failure || this.closed) return;
    this.failure = error instanceof Error ? error : new CanceledError(String(error));
    for (const waiter of this.waiters.splice(0)) waiter.reject(this.failure);
  }
}

/** A random unicast, locally administered MAC (bit 1 of the first byte set, bit 0 clear). */
function randomMac(): Buffer {
  const mac = randomBytes(6);
  mac[0] = (mac[0] & 0xfe) | 0x02;
  return mac;
}
