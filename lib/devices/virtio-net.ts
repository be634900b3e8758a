import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { CanceledError, TransportError, UsageError, invalidArgType, outOfRange } from '../errors';
import { freeIfLive } from '../platform';
import type { Virtqueue } from '../queue';
import {
  DeviceId,
  FeatureBit,
  NET_FRAME_OVERHEAD,
  NET_HDR_SIZE,
  NET_HDR_SIZE_LEGACY,
  NET_MAX_FRAME,
  NET_MIN_FRAME,
  NET_MIN_MTU,
  NET_MQ_PAIRS_MAX,
  NET_MQ_PAIRS_MIN,
  NetConfig,
  NetCtrl,
  NetFeature,
  NetStatus,
  features,
  hasFeature,
  netControlQueue,
  netReceiveQueue,
  netTransmitQueue,
} from '../spec';
import type { VirtioTransport } from '../transport';
import { DriverSetup } from './driver-setup';
import { NetControl } from './net-control';
import { checkChecksumRequest, fillChecksum, writeTransmitHeader, type NetChecksumRequest } from './net-header';
import { NetReceiveQueue, type ReceivedFrame } from './net-receive';
import { validateNetOptions, type VirtioNetOptions } from './net-options';
import { VirtioDriver, type StartedDevice } from './virtio-driver';

export type { VirtioNetOptions } from './net-options';
export type { ReceivedFrame } from './net-receive';
export { completeChecksum, type NetChecksumRequest } from './net-header';

export interface NetSendOptions {
  /** VIRTIO_NET_F_CSUM: the device fills the checksum at start + offset (§5.1.6.2). */
  checksum?: NetChecksumRequest;
  /** The queue pair to transmit on (0..queuePairs-1; default 0). */
  pair?: number;
}

/** What the driver asks for (§5.1.3); GSO and the other offloads are not. */
const WANTED = features(
  NetFeature.CSUM,
  NetFeature.GUEST_CSUM,
  NetFeature.MTU,
  NetFeature.MAC,
  NetFeature.MRG_RXBUF,
  NetFeature.STATUS,
  NetFeature.CTRL_VQ,
  NetFeature.CTRL_RX,
  NetFeature.MQ,
  NetFeature.CTRL_MAC_ADDR,
);
/** §5.1.3.1: these need VIRTIO_NET_F_CTRL_VQ. */
const NEED_CTRL_VQ = [NetFeature.CTRL_RX, NetFeature.MQ, NetFeature.CTRL_MAC_ADDR];
/** Receive buffer size unless asked otherwise (without MRG_RXBUF, at least header + largest frame). */
const DEFAULT_BUFFER_BYTES = 2048;

/** What open() read from config and decided before the constructor. */
interface NetPlan {
  mac?: Buffer;
  maxFrame: number;
  mtu?: number;
  pairs: number;
  controlQueue?: number;
  bufferBytes: number;
}

/**
 * The network device (virtio 1.2 §5.1): send(frame) puts one Ethernet
 * frame (without FCS) on the wire, with the checksum left to the device
 * if asked (CSUM); received frames arrive as 'frame' events (frame,
 * ReceivedFrame), through frames() and received(). With MTU, frames are
 * up to mtu + 18 bytes; with MRG_RXBUF a frame may span several receive
 * buffers (receiveBufferBytes makes them small). With CTRL_VQ the
 * control commands run (setPromiscuous, setAllMulticast, setMac); with
 * MQ, `queuePairs` pairs are used. Receive buffers are re-posted as soon
 * as a frame is copied out, but only while the frames not yet consumed
 * plus what every posted buffer may still bring stay within
 * maxQueuedFrames and maxQueuedBytes; a frame already received is never
 * lost. Emits 'link' (boolean) when the STATUS link bit changes and
 * 'drop' (ProtocolError) for each frame refused for what the device wrote.
 */
export class VirtioNet extends VirtioDriver {
  static readonly deviceId = DeviceId.NET;

  /** The MAC address: from config (MAC feature), else random and locally administered; setMac() changes it. */
  readonly mac: Buffer;
  readonly events = new EventEmitter();
  /** The device's mtu (VIRTIO_NET_F_MTU, §5.1.4), else undefined (1500 assumed). */
  readonly mtu?: number;
  /** The largest frame send() takes and a received frame may be. */
  readonly maxFrameBytes: number;
  /** Queue pairs in use. */
  readonly queuePairs: number;
  private readonly receivers: NetReceiveQueue[] = [];
  private readonly transmitters: Virtqueue[] = [];
  private readonly control?: NetControl;
  /** Resolves when VQ_PAIRS_SET took (at once with one pair); sends on pairs past the first wait for it. */
  private readonly pairsSet: Promise<void>;
  private readonly headerBytes: number;
  private readonly maxQueued: number;
  private readonly maxQueuedBytes: number;
  private readonly completeChecksums: boolean;
  private readonly queued: ReceivedFrame[] = [];
  private queuedBytes = 0;
  private readonly waiters: { resolve: (f: ReceivedFrame | undefined) => void; reject: (e: unknown) => void }[] = [];
  private link: boolean;
  private dropped = 0;
  private failure?: Error;

  private constructor(started: StartedDevice, plan: NetPlan, options: VirtioNetOptions) {
    super(started);
    const modern = hasFeature(this.features, FeatureBit.VERSION_1);
    const mergeable = hasFeature(this.features, NetFeature.MRG_RXBUF);
    this.headerBytes = modern || mergeable ? NET_HDR_SIZE : NET_HDR_SIZE_LEGACY;
    this.maxQueued = options.maxQueuedFrames ?? 1024;
    this.maxQueuedBytes = options.maxQueuedBytes ?? 4 * 1024 * 1024;
    this.completeChecksums = options.completeChecksums ?? false;
    this.mac = plan.mac ?? randomMac();
    this.mtu = plan.mtu;
    this.maxFrameBytes = plan.maxFrame;
    this.queuePairs = plan.pairs;
    this.link = this.readLink();
    this.onConfigChange(() => {
      const link = this.readLink();
      if (link !== this.link) {
        this.link = link;
        this.events.emit('link', link);
      }
    });
    if (plan.controlQueue !== undefined)
      this.control = new NetControl(this.queue(plan.controlQueue), this.memory, this.requestTimeoutMs);
    const sink = {
      deliver: (frame: ReceivedFrame) => this.deliver(frame),
      drop: (fault: Error) => {
        this.dropped++;
        this.events.emit('drop', fault);
      },
      mayPost: () => this.mayPost(),
      refill: () => this.refill(),
      fail: (error: unknown) => this.fail(error),
    };
    for (let pair = 0; pair < plan.pairs; pair++) {
      const rx = this.queue(netReceiveQueue(pair));
      const layout = {
        count: Math.min(options.receiveBuffers ?? 256, rx.size),
        bufferBytes: plan.bufferBytes,
        headerBytes: this.headerBytes,
        mergeable: mergeable && this.headerBytes === NET_HDR_SIZE,
        guestCsum: hasFeature(this.features, NetFeature.GUEST_CSUM),
        maxFrame: plan.maxFrame,
      };
      this.receivers.push(new NetReceiveQueue(rx, this.memory, pair, layout, sink));
      this.transmitters.push(this.queue(netTransmitQueue(pair)));
    }
    // §5.1.6.5.5: the device uses only the first pair until VQ_PAIRS_SET.
    const pairs = Buffer.alloc(2);
    pairs.writeUInt16LE(plan.pairs);
    this.pairsSet =
      plan.pairs > 1 ? this.control!.command(NetCtrl.MQ, NetCtrl.MQ_VQ_PAIRS_SET, pairs) : Promise.resolve();
    this.pairsSet.catch(() => undefined); // reported by the sends that wait for it
    this.refill();
  }

  /** Initializes the device on `transport` (which must hold a network device). */
  static open(transport: VirtioTransport, options: VirtioNetOptions): VirtioNet {
    validateNetOptions(options);
    const setup = DriverSetup.begin(transport, options);
    try {
      // §5.1.3.1: CTRL_RX, MQ and CTRL_MAC_ADDR need CTRL_VQ; offered alone, they are not accepted.
      const needs = NEED_CTRL_VQ.map((bit) => [bit, NetFeature.CTRL_VQ] as const);
      const negotiated = setup.negotiate(DeviceId.NET, WANTED, 0n, needs);
      const has = (bit: number): boolean => hasFeature(negotiated, bit);
      // §5.1.4: each field is valid with its feature; the config must reach the last one used.
      const ends = [
        has(NetFeature.MAC) ? NetConfig.mac + 6 : 0,
        has(NetFeature.STATUS) ? NetConfig.status + 2 : 0,
        has(NetFeature.MQ) ? NetConfig.max_virtqueue_pairs + 2 : 0,
        has(NetFeature.MTU) ? NetConfig.mtu + 2 : 0,
      ];
      setup.requireConfig(Math.max(...ends), 'virtio-net');
      const plan = planDevice(transport, negotiated, options);
      const queues: number[] = [];
      for (let pair = 0; pair < plan.pairs; pair++) queues.push(netReceiveQueue(pair), netTransmitQueue(pair));
      if (plan.controlQueue !== undefined) queues.push(plan.controlQueue);
      setup.setUpQueues(queues, 256);
      setup.driverOk();
      return new VirtioNet(setup.finish(), plan, options);
    } catch (error) {
      throw setup.abandon(error);
    }
  }

  /**
   * Frames dropped, not delivered, because of what the device wrote (each
   * also a 'drop' event with its ProtocolError): a first buffer shorter
   * than the header, bad flags or gso_type, num_buffers 0 or more than
   * the buffers posted, a frame outside [14, maxFrameBytes], a checksum
   * range past the frame. Their buffers are re-posted.
   */
  get droppedFrames(): number {
    return this.dropped;
  }

  /** Link state: the STATUS feature's LINK_UP bit, or always up without it (§5.1.4). */
  get linkUp(): boolean {
    return this.link;
  }

  /** Sends one Ethernet frame (destination MAC first, no FCS); resolves when the device has taken it. */
  async send(frame: Uint8Array, options: NetSendOptions = {}): Promise<void> {
    if (!(frame instanceof Uint8Array)) throw invalidArgType('frame must be a Buffer or Uint8Array');
    if (frame.length < NET_MIN_FRAME || frame.length > this.maxFrameBytes)
      throw outOfRange(`a frame is ${NET_MIN_FRAME}..${this.maxFrameBytes} bytes, got ${frame.length}`);
    const { checksum, pair = 0 } = options ?? {};
    if (!Number.isInteger(pair) || pair < 0 || pair >= this.queuePairs)
      throw outOfRange(`pair must be an integer in [0, ${this.queuePairs - 1}], got ${pair}`);
    if (checksum) {
      if (!hasFeature(this.features, NetFeature.CSUM))
        throw new UsageError('checksum offload needs VIRTIO_NET_F_CSUM, which was not negotiated');
      checkChecksumRequest(checksum, frame.length);
    }
    this.checkOpen();
    if (this.failure) throw this.failure;
    if (pair > 0) await this.pairsSet;
    const region = this.memory.allocate(this.headerBytes + frame.length);
    writeTransmitHeader(new DataView(region.view, region.offset, this.headerBytes), checksum);
    new Uint8Array(region.view, region.offset + this.headerBytes, frame.length).set(frame);
    // Freed when the device has taken it; a send given up on frees its copy when the device gives it back.
    const free = (): void => freeIfLive(this.memory, region);
    await this.transmitters[pair].submit(
      { readable: [{ region }] },
      { timeoutMs: this.requestTimeoutMs, reclaim: free },
    );
    free();
  }

  /** VIRTIO_NET_CTRL_RX_PROMISC (§5.1.6.5.1; needs CTRL_RX). */
  setPromiscuous(on: boolean): Promise<void> {
    return this.rxMode(NetCtrl.RX_PROMISC, on);
  }

  /** VIRTIO_NET_CTRL_RX_ALLMULTI (§5.1.6.5.1; needs CTRL_RX). */
  setAllMulticast(on: boolean): Promise<void> {
    return this.rxMode(NetCtrl.RX_ALLMULTI, on);
  }

  /** VIRTIO_NET_CTRL_MAC_ADDR_SET (§5.1.6.5.2; needs CTRL_MAC_ADDR); `mac` changes when the device acked. */
  async setMac(mac: Uint8Array): Promise<void> {
    if (!(mac instanceof Uint8Array) || mac.length !== 6) throw invalidArgType('mac must be 6 bytes');
    const copy = Buffer.from(mac);
    await this.controlCommand(NetFeature.CTRL_MAC_ADDR, NetCtrl.MAC, NetCtrl.MAC_ADDR_SET, copy);
    copy.copy(this.mac);
  }

  /** Received frames, in order, until the device is closed. */
  frames(): AsyncIterableIterator<Buffer> {
    return this.iterate((f) => f.frame);
  }

  /** Received frames with their checksum state and queue pair, in order, until the device is closed. */
  received(): AsyncIterableIterator<ReceivedFrame> {
    return this.iterate((f) => f);
  }

  override close(): void {
    if (this.closed) return;
    super.close();
    for (const receiver of this.receivers) receiver.close(this.deviceReleased);
    for (const waiter of this.waiters.splice(0)) waiter.resolve(undefined);
  }

  private iterate<T>(map: (f: ReceivedFrame) => T): AsyncIterableIterator<T> {
    const result = (f: ReceivedFrame | undefined): IteratorResult<T> =>
      f ? { value: map(f), done: false } : { value: undefined, done: true };
    const iterator: AsyncIterableIterator<T> = {
      next: () => {
        const frame = this.queued.shift();
        if (frame) {
          this.queuedBytes -= frame.frame.length;
          this.refill();
          return Promise.resolve(result(frame));
        }
        if (this.failure) return Promise.reject(this.failure);
        if (this.closed) return Promise.resolve(result(undefined));
        return new Promise((resolve, reject) => this.waiters.push({ resolve: (f) => resolve(result(f)), reject }));
      },
      return: () => Promise.resolve(result(undefined)),
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  private rxMode(command: number, on: boolean): Promise<void> {
    if (typeof on !== 'boolean') throw invalidArgType('on must be a boolean');
    return this.controlCommand(NetFeature.CTRL_RX, NetCtrl.RX, command, Uint8Array.of(on ? 1 : 0));
  }

  private async controlCommand(bit: number, cls: number, command: number, data: Uint8Array): Promise<void> {
    this.checkOpen();
    if (!this.control || !hasFeature(this.features, bit))
      throw new UsageError(`this control command needs virtio-net feature ${bit} (and CTRL_VQ), not negotiated`);
    await this.control.command(cls, command, data);
  }

  private readLink(): boolean {
    if (!hasFeature(this.features, NetFeature.STATUS)) return true;
    return (this.transport.config.read16(NetConfig.status) & NetStatus.LINK_UP) !== 0;
  }

  private deliver(received: ReceivedFrame): void {
    let frame = received;
    if (frame.needsChecksum && this.completeChecksums) {
      fillChecksum(frame.frame, frame.needsChecksum); // NetReceiveQueue checked its range against the frame
      frame = { frame: frame.frame, pair: frame.pair, checksumValid: frame.checksumValid };
    }
    this.events.emit('frame', frame.frame, frame);
    const waiter = this.waiters.shift();
    if (waiter) {
      waiter.resolve(frame);
      return;
    }
    this.queued.push(frame);
    this.queuedBytes += frame.frame.length;
  }

  /**
   * Whether one more buffer may be posted: the frames kept plus one frame
   * per posted buffer (each brings at most one, of at most maxFrameBytes)
   * stay within both limits, so nothing the device delivered has to be
   * dropped for room.
   */
  private mayPost(): boolean {
    if (this.closed || this.failure) return false;
    const posted = this.receivers.reduce((n, r) => n + r.posted, 0);
    return (
      this.queued.length + posted < this.maxQueued &&
      this.queuedBytes + (posted + 1) * this.maxFrameBytes <= this.maxQueuedBytes
    );
  }

  private refill(): void {
    for (const receiver of this.receivers) receiver.refill();
  }

  private fail(error: unknown): void {
    if (this.failure || this.closed) return;
    this.failure = error instanceof Error ? error : new CanceledError(String(error));
    for (const waiter of this.waiters.splice(0)) waiter.reject(this.failure);
  }
}

/** Reads mtu and max_virtqueue_pairs (§5.1.4) and sizes the queues and buffers from them and the options. */
function planDevice(transport: VirtioTransport, negotiated: bigint, options: VirtioNetOptions): NetPlan {
  const has = (bit: number): boolean => hasFeature(negotiated, bit);
  const { config, label } = transport;
  const mac = has(NetFeature.MAC) ? Buffer.from(config.readBytes(NetConfig.mac, 6)) : undefined;
  let mtu: number | undefined;
  if (has(NetFeature.MTU)) {
    mtu = config.read16(NetConfig.mtu);
    if (mtu < NET_MIN_MTU)
      throw new TransportError(
        TransportError.CONFIG_INVALID,
        `${label}: virtio-net mtu ${mtu} is below ${NET_MIN_MTU}`,
      );
  }
  const maxFrame = mtu === undefined ? NET_MAX_FRAME : mtu + NET_FRAME_OVERHEAD;
  let maxPairs = 1;
  if (has(NetFeature.MQ)) {
    maxPairs = config.read16(NetConfig.max_virtqueue_pairs);
    if (maxPairs < NET_MQ_PAIRS_MIN || maxPairs > NET_MQ_PAIRS_MAX)
      throw new TransportError(
        TransportError.CONFIG_INVALID,
        `${label}: virtio-net max_virtqueue_pairs ${maxPairs} is outside [1, 0x8000]`,
      );
  }
  const pairs = options.queuePairs ?? 1;
  if (pairs > maxPairs)
    throw outOfRange(`queuePairs ${pairs}: the device has ${maxPairs} (VIRTIO_NET_F_MQ ${has(NetFeature.MQ)})`);
  const header = has(FeatureBit.VERSION_1) || has(NetFeature.MRG_RXBUF) ? NET_HDR_SIZE : NET_HDR_SIZE_LEGACY;
  const mergeable = has(NetFeature.MRG_RXBUF);
  const whole = header + maxFrame;
  const bufferBytes =
    options.receiveBufferBytes ?? (mergeable ? DEFAULT_BUFFER_BYTES : Math.max(DEFAULT_BUFFER_BYTES, whole));
  // §5.1.6.3.1: without MRG_RXBUF each buffer takes a whole frame; with it, at least a header.
  if (bufferBytes < (mergeable ? header + 1 : whole))
    throw outOfRange(`receiveBufferBytes ${bufferBytes} is below ${mergeable ? header + 1 : whole} for this device`);
  if ((options.maxQueuedBytes ?? Infinity) < maxFrame)
    throw outOfRange(`maxQueuedBytes ${options.maxQueuedBytes} holds no ${maxFrame}-byte frame (mtu ${mtu})`);
  const controlQueue = has(NetFeature.CTRL_VQ) ? netControlQueue(has(NetFeature.MQ) ? maxPairs : 1) : undefined;
  return { mac, maxFrame, mtu, pairs, controlQueue, bufferBytes };
}

/** A random unicast, locally administered MAC (bit 1 of the first byte set, bit 0 clear). */
function randomMac(): Buffer {
  const mac = randomBytes(6);
  mac[0] = (mac[0] & 0xfe) | 0x02;
  return mac;
}
