import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { CanceledError, invalidArgType, outOfRange } from '../errors';
import { freeIfLive, type DmaRegion } from '../platform';
import type { Virtqueue } from '../queue';
import {
  DeviceId,
  FeatureBit,
  NET_HDR_NUM_BUFFERS,
  NET_HDR_SIZE,
  NET_HDR_SIZE_LEGACY,
  NET_MAX_FRAME,
  NET_MIN_FRAME,
  NetConfig,
  NetFeature,
  NetQueue,
  NetStatus,
  features,
  hasFeature,
} from '../spec';
import type { VirtioTransport } from '../transport';
import { DriverSetup } from './driver-setup';
import { VirtioDriver, type DriverOptions, type StartedDevice } from './virtio-driver';

export interface VirtioNetOptions extends DriverOptions {
  /** Receive buffers kept posted (default: the receive queue's size, at most 256). */
  receiveBuffers?: number;
  /** Received frames kept for a slow consumer (default 1024). */
  maxQueuedFrames?: number;
  /** Bytes of received frames kept for a slow consumer (default 4 MiB; at least one largest frame, 1518). */
  maxQueuedBytes?: number;
}

/**
 * No offloads and no VIRTIO_NET_F_MTU: a received frame is at most
 * NET_MAX_FRAME bytes (§5.1.6.3.1), the same limit send() has. (With MTU
 * the limit would be the config's mtu plus the Ethernet header, §5.1.4.)
 */
const WANTED = features(NetFeature.MAC, NetFeature.STATUS, NetFeature.MRG_RXBUF);
/** Each receive buffer holds a header and a whole frame (§5.1.6.3.1 asks for ≥ 1526 bytes without offloads). */
const RX_BUFFER_BYTES = 2048;

/**
 * The network device (virtio 1.2 §5.1), first queue pair, no offloads:
 * send(frame) puts one Ethernet frame (without FCS) on the wire; received
 * frames arrive as 'frame' events and through frames(). Receive buffers
 * are re-posted as soon as a frame is copied out, but only while the
 * frames not yet consumed plus what every posted buffer may still bring
 * stay within maxQueuedFrames and maxQueuedBytes; beyond that the device
 * holds or drops new frames (§5.1.6.4: it needs posted buffers), and a
 * frame already received is never lost. Emits 'link' (boolean) when the
 * STATUS link bit changes.
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
  private readonly maxQueuedBytes: number;
  private readonly queued: Buffer[] = [];
  private queuedBytes = 0;
  /** Receive buffers posted and not yet returned. */
  private posted = 0;
  private readonly waiters: { resolve: (r: IteratorResult<Buffer>) => void; reject: (e: unknown) => void }[] = [];
  private readonly idle: number[] = [];
  private link: boolean;
  private dropped = 0;
  /**
   * The frame being gathered from several buffers (MRG_RXBUF): its data so far (none once too long), its bytes, buffers
   * still to come.
   */
  private partial?: { parts: Buffer[]; bytes: number; left: number };
  private failure?: Error;

  private constructor(started: StartedDevice, mac: Buffer | undefined, options: VirtioNetOptions) {
    super(started);
    this.rx = this.queue(NetQueue.RECEIVE0);
    this.tx = this.queue(NetQueue.TRANSMIT0);
    const modern = hasFeature(this.features, FeatureBit.VERSION_1);
    this.headerBytes = modern || hasFeature(this.features, NetFeature.MRG_RXBUF) ? NET_HDR_SIZE : NET_HDR_SIZE_LEGACY;
    this.maxQueued = options.maxQueuedFrames ?? 1024;
    this.maxQueuedBytes = options.maxQueuedBytes ?? 4 * 1024 * 1024;
    this.mac = mac ?? randomMac();
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
    for (let slot = 0; slot < count; slot++) this.idle.push(slot);
    this.refill();
  }

  /** Initializes the device on `transport` (which must hold a network device). */
  static open(transport: VirtioTransport, options: VirtioNetOptions): VirtioNet {
    for (const name of ['receiveBuffers', 'maxQueuedFrames'] as const) {
      const value = options?.[name];
      if (value !== undefined && (!Number.isInteger(value) || value < 1 || value > 65536))
        throw outOfRange(`${name} must be an integer in [1, 65536], got ${value}`);
    }
    const bytes = options?.maxQueuedBytes;
    if (bytes !== undefined && (!Number.isInteger(bytes) || bytes < NET_MAX_FRAME || bytes > 2 ** 31)) {
      throw outOfRange(`maxQueuedBytes must be an integer in [${NET_MAX_FRAME}, 2^31], got ${bytes}`);
    }
    const setup = DriverSetup.begin(transport, options);
    try {
      const negotiated = setup.negotiate(DeviceId.NET, WANTED);
      // §5.1.4: mac with VIRTIO_NET_F_MAC, status after it with VIRTIO_NET_F_STATUS.
      const configBytes = hasFeature(negotiated, NetFeature.STATUS)
        ? NetConfig.status + 2
        : hasFeature(negotiated, NetFeature.MAC)
          ? NetConfig.mac + 6
          : 0;
      setup.requireConfig(configBytes, 'virtio-net');
      const mac = hasFeature(negotiated, NetFeature.MAC)
        ? Buffer.from(transport.config.readBytes(NetConfig.mac, 6))
        : undefined;
      // §5.1.2: receiveq1 and transmitq1 (no multiqueue, no control queue).
      setup.setUpQueues([NetQueue.RECEIVE0, NetQueue.TRANSMIT0], 256);
      setup.driverOk();
      return new VirtioNet(setup.finish(), mac, options);
    } catch (error) {
      throw setup.abandon(error);
    }
  }

  /**
   * Frames dropped, not delivered, because of what the device wrote: a
   * first buffer shorter than the header, num_buffers out of range, or a
   * frame outside [14, 1518] bytes (the sum of its buffers' used lengths).
   * Their buffers are re-posted.
   */
  get droppedFrames(): number {
    return this.dropped;
  }

  /** Link state: the STATUS feature's LINK_UP bit, or always up without it (§5.1.4). */
  get linkUp(): boolean {
    return this.link;
  }

  /** Sends one Ethernet frame (destination MAC first, no FCS); resolves when the device has taken it. */
  async send(frame: Uint8Array): Promise<void> {
    if (!(frame instanceof Uint8Array)) throw invalidArgType('frame must be a Buffer or Uint8Array');
    if (frame.length < NET_MIN_FRAME || frame.length > NET_MAX_FRAME)
      throw outOfRange(`a frame is ${NET_MIN_FRAME}..${NET_MAX_FRAME} bytes without offloads, got ${frame.length}`);
    this.checkOpen();
    if (this.failure) throw this.failure;
    const region = this.memory.allocate(this.headerBytes + frame.length);
    // The header stays all zeroes: no checksum or segmentation offload (§5.1.6.2).
    new Uint8Array(region.view, region.offset + this.headerBytes, frame.length).set(frame);
    // Freed when the device has taken it; a send given up on frees its copy when the device gives it back.
    const free = (): void => freeIfLive(this.memory, region);
    await this.tx.submit({ readable: [{ region }] }, { timeoutMs: this.requestTimeoutMs, reclaim: free });
    free();
  }

  /** Received frames, in order, until the device is closed. */
  frames(): AsyncIterableIterator<Buffer> {
    const iterator: AsyncIterableIterator<Buffer> = {
      next: () => {
        const frame = this.queued.shift();
        if (frame) {
          this.queuedBytes -= frame.length;
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
    this.posted++;
    this.rx
      .submit({ writable: [{ region: this.rxMemory, offset: slot * RX_BUFFER_BYTES, length: RX_BUFFER_BYTES }] })
      .then(
        (len) => {
          this.posted--;
          if (this.closed) return;
          this.received(slot, len);
          this.idle.push(slot);
          this.refill();
        },
        (error: unknown) => {
          this.posted--;
          this.fail(error);
        },
      );
  }

  /**
   * One used receive buffer: header (first buffer of a frame) and data
   * (§5.1.6.4). Data is copied only while the frame is within
   * NET_MAX_FRAME; the buffers of a longer frame are counted through and
   * the frame dropped, so a device's num_buffers and len never make the
   * driver hold more than one largest frame in the making.
   */
  private received(slot: number, len: number): void {
    const base = this.rxMemory.offset + slot * RX_BUFFER_BYTES;
    let data = 0;
    if (!this.partial) {
      // §5.1.6.4: every frame starts with the whole header; a buffer without it is dropped.
      if (len < this.headerBytes) {
        this.dropped++;
        return;
      }
      const header = new DataView(this.rxMemory.view, base, this.headerBytes);
      const buffers =
        this.headerBytes === NET_HDR_SIZE && hasFeature(this.features, NetFeature.MRG_RXBUF)
          ? header.getUint16(NET_HDR_NUM_BUFFERS, true)
          : 1;
      if (buffers < 1 || buffers > this.rx.size) {
        this.dropped++;
        return;
      }
      this.partial = { parts: [], bytes: 0, left: buffers };
      data = this.headerBytes;
    }
    const partial = this.partial;
    partial.left--;
    partial.bytes += len - data;
    if (partial.bytes <= NET_MAX_FRAME)
      partial.parts.push(Buffer.from(new Uint8Array(this.rxMemory.view, base + data, len - data)));
    else partial.parts.length = 0;
    if (partial.left > 0) return;
    this.partial = undefined;
    if (partial.bytes < NET_MIN_FRAME || partial.bytes > NET_MAX_FRAME) {
      this.dropped++;
      return;
    }
    this.deliver(Buffer.concat(partial.parts, partial.bytes));
  }

  private deliver(frame: Buffer): void {
    this.events.emit('frame', frame);
    const waiter = this.waiters.shift();
    if (waiter) {
      waiter.resolve({ value: frame, done: false });
      return;
    }
    this.queued.push(frame);
    this.queuedBytes += frame.length;
  }

  /**
   * Posts idle buffers while the frames kept plus one frame per posted
   * buffer (each brings at most one, of at most NET_MAX_FRAME bytes) stay
   * within both limits: the queue never outgrows them, and nothing the
   * device delivered has to be dropped for room.
   */
  private refill(): void {
    while (
      this.idle.length > 0 &&
      this.queued.length + this.posted < this.maxQueued &&
      this.queuedBytes + (this.posted + 1) * NET_MAX_FRAME <= this.maxQueuedBytes
    ) {
      this.post(this.idle.shift()!);
    }
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
