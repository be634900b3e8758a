import {
  DeviceId,
  FeatureBit,
  NET_HDR_NUM_BUFFERS,
  NET_HDR_SIZE,
  NET_HDR_SIZE_LEGACY,
  NetConfig,
  NetFeature,
  NetStatus,
  feature,
  hasFeature,
} from '../spec';
import { HeldReceives, fillWritable } from './held-receives';
import type { SimConfigField, SimDeviceModel, SimRequest } from './sim-model';
import { invalidArgValue } from '../errors';

export interface NetModelOptions {
  /** Offer VIRTIO_NET_F_MAC with this address (default 52:54:00:12:34:56). */
  mac?: Uint8Array | null;
  /** Offer VIRTIO_NET_F_STATUS with this link state (default true; null: no STATUS). */
  linkUp?: boolean | null;
  /** Offer VIRTIO_NET_F_MRG_RXBUF (default true). */
  mergeable?: boolean;
  /** Frames sent come straight back (default false; see also NetModel.pair). */
  loopback?: boolean;
  /** Frames held while the driver has no receive buffer posted, before new ones are dropped (default 256). */
  backlog?: number;
  queueSize?: number;
}

/**
 * A network device (virtio 1.2 §5.1), first queue pair, no offloads. Frames
 * the driver transmits are kept in `sent` and go to the peer (pair()) or
 * back to the same driver (loopback); inject() delivers a frame to the
 * driver's posted receive buffers, with num_buffers when MRG_RXBUF was
 * negotiated and a frame needs more than one buffer.
 */
export class NetModel implements SimDeviceModel {
  readonly deviceId = DeviceId.NET;
  readonly features: bigint;
  readonly queueSizes: readonly number[];
  readonly config = new Uint8Array(NetConfig.SIZE);
  readonly configFields: readonly SimConfigField[] = [
    ...Array.from({ length: 6 }, (_, i) => ({ offset: NetConfig.mac + i, width: 1 as const })),
    { offset: NetConfig.status, width: 2 },
    { offset: NetConfig.max_virtqueue_pairs, width: 2 },
    { offset: NetConfig.mtu, width: 2 },
  ];
  /** Frames the driver transmitted (headers stripped). */
  readonly sent: Buffer[] = [];
  /** Frames dropped because no receive buffer was posted and the backlog was full, or one was too small. */
  dropped = 0;
  private peer?: NetModel;
  private readonly loopback: boolean;
  private readonly backlogLimit: number;
  private readonly receives = new HeldReceives(() => this.deliver());
  private readonly backlog: Buffer[] = [];
  private headerBytes = NET_HDR_SIZE;
  private mergeable = false;

  constructor(options: NetModelOptions = {}) {
    const queueSize = options.queueSize ?? 256;
    this.queueSizes = [queueSize, queueSize];
    this.loopback = options.loopback ?? false;
    this.backlogLimit = options.backlog ?? 256;
    const mac = options.mac === undefined ? Uint8Array.from([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]) : options.mac;
    const linkUp = options.linkUp === undefined ? true : options.linkUp;
    let offered = 0n;
    if (mac) {
      if (mac.length !== 6) throw invalidArgValue('mac must be 6 bytes', 'range');
      this.config.set(mac, NetConfig.mac);
      offered |= feature(NetFeature.MAC);
    }
    if (linkUp !== null) {
      offered |= feature(NetFeature.STATUS);
      this.setLink(linkUp);
    }
    if (options.mergeable ?? true) offered |= feature(NetFeature.MRG_RXBUF);
    this.features = offered;
  }

  /** Connects two devices like a cable: what one sends, the other receives. */
  static pair(a: NetModel, b: NetModel): void {
    a.peer = b;
    b.peer = a;
  }

  /** Sets the STATUS link bit (the caller raises the config change on the SimDevice). */
  setLink(up: boolean): void {
    const view = new DataView(this.config.buffer, this.config.byteOffset, this.config.byteLength);
    view.setUint16(NetConfig.status, up ? NetStatus.LINK_UP : 0, true);
  }

  /** Receive buffers the driver has posted and the device holds. */
  get postedReceives(): number {
    return this.receives.length;
  }

  driverOk(negotiated: bigint): void {
    this.mergeable = hasFeature(negotiated, NetFeature.MRG_RXBUF);
    this.headerBytes =
      hasFeature(negotiated, FeatureBit.VERSION_1) || this.mergeable ? NET_HDR_SIZE : NET_HDR_SIZE_LEGACY;
  }

  /** A frame from the wire for the driver. */
  inject(frame: Uint8Array): void {
    this.backlog.push(Buffer.from(frame));
    if (this.backlog.length > this.backlogLimit) {
      this.backlog.shift();
      this.dropped++;
    }
    this.deliver();
  }

  handle(request: SimRequest): number | Promise<number> {
    if (request.queue === 1) {
      const packet = Buffer.concat(request.readable.map((b) => Buffer.from(b)));
      const frame = packet.subarray(this.headerBytes);
      this.sent.push(Buffer.from(frame));
      if (this.loopback) this.inject(frame);
      else this.peer?.inject(frame);
      return 0;
    }
    if (request.queue !== 0) return 0;
    return this.receives.hold(request);
  }

  reset(): void {
    this.receives.clear();
    this.backlog.length = 0;
  }

  resetQueue(queue: number): void {
    if (queue === 0) this.receives.clear();
  }

  /** Fills posted receive buffers with backlogged frames (§5.1.6.4). */
  private deliver(): void {
    while (this.backlog.length > 0 && this.receives.length > 0) {
      const packet = Buffer.concat([Buffer.alloc(this.headerBytes), this.backlog[0]]);
      let needed = 1;
      if (!this.mergeable) {
        // Without MRG_RXBUF a frame must fit one buffer (§5.1.6.3.1); a driver that posts less loses it.
        if (this.receives.room(0) < packet.length) {
          this.backlog.shift();
          this.dropped++;
          continue;
        }
      } else {
        let room = this.receives.room(0);
        while (room < packet.length && needed < this.receives.length) room += this.receives.room(needed++);
        if (room < packet.length) {
          if (needed < this.queueSizes[0]) return; // wait for more buffers
          this.backlog.shift();
          this.dropped++;
          continue;
        }
      }
      this.backlog.shift();
      if (this.headerBytes === NET_HDR_SIZE) packet.writeUInt16LE(needed, NET_HDR_NUM_BUFFERS);
      let at = 0;
      for (const { request, complete } of this.receives.take(needed)) {
        const written = fillWritable(request, packet, at);
        at += written;
        complete(written);
      }
    }
  }
}
