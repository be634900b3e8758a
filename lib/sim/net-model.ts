import {
  DeviceId,
  FeatureBit,
  NET_HDR_NUM_BUFFERS,
  NET_HDR_SIZE,
  NET_HDR_SIZE_LEGACY,
  NetConfig,
  NetCtrl,
  NetFeature,
  NetHdr,
  NetHdrFlag,
  NetStatus,
  feature,
  hasFeature,
  internetChecksum,
  netControlQueue,
} from '../spec';
import { HeldReceives, fillWritable } from './held-receives';
import { NetModelControl } from './net-model-control';
import type { SimConfigField, SimDeviceModel, SimRequest } from './sim-model';
import { invalidArgValue } from '../errors';

export interface NetModelOptions {
  /** Offer VIRTIO_NET_F_MAC with this address (default 52:54:00:12:34:56). */
  mac?: Uint8Array | null;
  /** Offer VIRTIO_NET_F_STATUS with this link state (default true; null: no STATUS). */
  linkUp?: boolean | null;
  /** Offer VIRTIO_NET_F_MRG_RXBUF (default true). */
  mergeable?: boolean;
  /** Offer VIRTIO_NET_F_MTU with this mtu (default: not offered). */
  mtu?: number;
  /** Offer VIRTIO_NET_F_CSUM: NEEDS_CSUM frames get their checksum filled before they go out (default false). */
  csum?: boolean;
  /** Offer VIRTIO_NET_F_GUEST_CSUM: inject() may mark frames NEEDS_CSUM / DATA_VALID (default false). */
  guestCsum?: boolean;
  /** Offer VIRTIO_NET_F_CTRL_VQ with CTRL_RX and CTRL_MAC_ADDR (default false; true with maxPairs). */
  control?: boolean;
  /** Offer VIRTIO_NET_F_MQ with this max_virtqueue_pairs (default: not offered). */
  maxPairs?: number;
  /** Frames sent come straight back (default false; see also NetModel.pair). */
  loopback?: boolean;
  /** Frames held while the driver has no receive buffer posted, before new ones are dropped (default 256). */
  backlog?: number;
  queueSize?: number;
}

/** How inject() marks a frame's header (§5.1.6.4), and header fields forced for hostile tests. */
export interface NetInjectOptions {
  /** The receive queue pair (MQ); a pair not in use falls back to the first. */
  pair?: number;
  /** DATA_VALID (GUEST_CSUM). */
  dataValid?: boolean;
  /** NEEDS_CSUM with csum_start / csum_offset (GUEST_CSUM). */
  needsChecksum?: { start: number; offset: number };
  /** Header fields written as given after the model's own (a lying device). */
  force?: Partial<Record<keyof typeof NetHdr | 'num_buffers', number>>;
}

/**
 * A network device (virtio 1.2 §5.1). Frames the driver transmits (on
 * any pair) are kept in `sent`, with NEEDS_CSUM checksums filled in as
 * the device would (CSUM), and go to the peer (pair()) or back to the
 * same driver (loopback); inject() delivers a frame to the driver's
 * posted receive buffers, spread over several with num_buffers when
 * MRG_RXBUF was negotiated and it needs more than one. Optional: MTU,
 * GUEST_CSUM, the control queue, MQ.
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
  /** Frames the driver transmitted (headers stripped, checksums filled). */
  readonly sent: Buffer[] = [];
  /** The queue pair each of `sent` came on. */
  readonly sentPairs: number[] = [];
  /** Frames dropped because no receive buffer was posted and the backlog was full, one was too small, or bad. */
  dropped = 0;
  /** The control queue's side (with `control` or `maxPairs`). */
  readonly control: NetModelControl;
  private peer?: NetModel;
  private readonly loopback: boolean;
  private readonly backlogLimit: number;
  private readonly maxPairs: number;
  private readonly receives: HeldReceives[] = [];
  private readonly backlog: { frame: Buffer; options: NetInjectOptions }[] = [];
  private headerBytes = NET_HDR_SIZE;
  private negotiated = 0n;

  constructor(options: NetModelOptions = {}) {
    const queueSize = options.queueSize ?? 256;
    this.maxPairs = options.maxPairs ?? 1;
    if (!Number.isInteger(this.maxPairs) || this.maxPairs < 0 || this.maxPairs > 0xffff)
      throw invalidArgValue('maxPairs must be an integer in [0, 65535]', 'range');
    const queues = options.maxPairs !== undefined || options.control ? 2 * Math.max(this.maxPairs, 1) + 1 : 2;
    this.queueSizes = Array.from({ length: queues }, () => queueSize);
    for (let pair = 0; pair < Math.max(this.maxPairs, 1); pair++)
      this.receives.push(new HeldReceives(() => this.deliver()));
    this.loopback = options.loopback ?? false;
    this.backlogLimit = options.backlog ?? 256;
    const mac = options.mac === undefined ? Uint8Array.from([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]) : options.mac;
    const linkUp = options.linkUp === undefined ? true : options.linkUp;
    const view = this.view();
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
    if (options.mtu !== undefined) {
      view.setUint16(NetConfig.mtu, options.mtu, true);
      offered |= feature(NetFeature.MTU);
    }
    if (options.csum) offered |= feature(NetFeature.CSUM);
    if (options.guestCsum) offered |= feature(NetFeature.GUEST_CSUM);
    if (options.control || options.maxPairs !== undefined)
      offered |= feature(NetFeature.CTRL_VQ) | feature(NetFeature.CTRL_RX) | feature(NetFeature.CTRL_MAC_ADDR);
    if (options.maxPairs !== undefined) {
      view.setUint16(NetConfig.max_virtqueue_pairs, this.maxPairs, true);
      offered |= feature(NetFeature.MQ);
    }
    this.features = offered;
    const classFeature: Record<number, number> = {
      [NetCtrl.RX]: NetFeature.CTRL_RX,
      [NetCtrl.MAC]: NetFeature.CTRL_MAC_ADDR,
      [NetCtrl.MQ]: NetFeature.MQ,
    };
    this.control = new NetModelControl(
      this.maxPairs,
      (newMac) => this.config.set(newMac, NetConfig.mac),
      (cls) => cls in classFeature && hasFeature(this.negotiated, classFeature[cls]),
    );
  }

  /** Connects two devices like a cable: what one sends, the other receives. */
  static pair(a: NetModel, b: NetModel): void {
    a.peer = b;
    b.peer = a;
  }

  /** Sets the STATUS link bit (the caller raises the config change on the SimDevice). */
  setLink(up: boolean): void {
    this.view().setUint16(NetConfig.status, up ? NetStatus.LINK_UP : 0, true);
  }

  /** Receive buffers the driver has posted and the device holds (on every pair). */
  get postedReceives(): number {
    return this.receives.reduce((n, r) => n + r.length, 0);
  }

  driverOk(negotiated: bigint): void {
    this.negotiated = negotiated;
    const mergeable = hasFeature(negotiated, NetFeature.MRG_RXBUF);
    this.headerBytes = hasFeature(negotiated, FeatureBit.VERSION_1) || mergeable ? NET_HDR_SIZE : NET_HDR_SIZE_LEGACY;
  }

  /** A frame from the wire for the driver. */
  inject(frame: Uint8Array, options: NetInjectOptions = {}): void {
    this.backlog.push({ frame: Buffer.from(frame), options });
    if (this.backlog.length > this.backlogLimit) {
      this.backlog.shift();
      this.dropped++;
    }
    this.deliver();
  }

  handle(request: SimRequest): number | Promise<number> {
    const mq = hasFeature(this.negotiated, NetFeature.MQ);
    const controlq = hasFeature(this.negotiated, NetFeature.CTRL_VQ) ? netControlQueue(mq ? this.maxPairs : 1) : -1;
    if (request.queue === controlq) return this.control.handle(request);
    const pair = request.queue >> 1;
    if (pair >= this.receives.length) return 0;
    if (request.queue % 2 === 0) return this.receives[pair].hold(request);
    this.transmit(Buffer.concat(request.readable.map((b) => Buffer.from(b))), pair);
    return 0;
  }

  reset(): void {
    for (const r of this.receives) r.clear();
    this.backlog.length = 0;
    this.control.reset();
    this.negotiated = 0n;
  }

  resetQueue(queue: number): void {
    if (queue % 2 === 0 && queue >> 1 < this.receives.length) this.receives[queue >> 1].clear();
  }

  private view(): DataView {
    return new DataView(this.config.buffer, this.config.byteOffset, this.config.byteLength);
  }

  /** §5.1.6.2: a NEEDS_CSUM frame gets the sum from csum_start stored at csum_start + csum_offset. */
  private transmit(packet: Buffer, pair: number): void {
    if (packet.length < this.headerBytes) {
      this.dropped++;
      return;
    }
    const frame = Buffer.from(packet.subarray(this.headerBytes));
    if (packet[NetHdr.flags] & NetHdrFlag.NEEDS_CSUM) {
      const start = packet.readUInt16LE(NetHdr.csum_start);
      const at = start + packet.readUInt16LE(NetHdr.csum_offset);
      if (!hasFeature(this.negotiated, NetFeature.CSUM) || at + 2 > frame.length) {
        this.dropped++;
        return;
      }
      frame.writeUInt16BE(internetChecksum(frame, start), at);
    }
    this.sent.push(frame);
    this.sentPairs.push(pair);
    if (this.loopback) this.inject(frame, { pair });
    else this.peer?.inject(frame, { pair });
  }

  /** Fills posted receive buffers with backlogged frames (§5.1.6.4). */
  private deliver(): void {
    const mergeable = hasFeature(this.negotiated, NetFeature.MRG_RXBUF) && this.headerBytes === NET_HDR_SIZE;
    while (this.backlog.length > 0) {
      const { frame, options } = this.backlog[0];
      const wanted = options.pair ?? 0;
      const receives = this.receives[wanted < this.control.state.activePairs ? wanted : 0];
      if (receives.length === 0) return;
      const packet = Buffer.concat([Buffer.alloc(this.headerBytes), frame]);
      let needed = 1;
      if (!mergeable) {
        // Without MRG_RXBUF a frame must fit one buffer (§5.1.6.3.1); a driver that posts less loses it.
        if (receives.room(0) < packet.length) {
          this.backlog.shift();
          this.dropped++;
          continue;
        }
      } else {
        let room = receives.room(0);
        while (room < packet.length && needed < receives.length) room += receives.room(needed++);
        if (room < packet.length) {
          if (needed < this.queueSizes[0]) return; // wait for more buffers
          this.backlog.shift();
          this.dropped++;
          continue;
        }
      }
      this.backlog.shift();
      this.writeHeader(packet, needed, options);
      let at = 0;
      for (const { request, complete } of receives.take(needed)) {
        const written = fillWritable(request, packet, at);
        at += written;
        complete(written);
      }
    }
  }

  private writeHeader(packet: Buffer, buffers: number, options: NetInjectOptions): void {
    if (this.headerBytes === NET_HDR_SIZE) packet.writeUInt16LE(buffers, NET_HDR_NUM_BUFFERS);
    if (hasFeature(this.negotiated, NetFeature.GUEST_CSUM)) {
      if (options.dataValid) packet[NetHdr.flags] |= NetHdrFlag.DATA_VALID;
      if (options.needsChecksum) {
        packet[NetHdr.flags] |= NetHdrFlag.NEEDS_CSUM;
        packet.writeUInt16LE(options.needsChecksum.start, NetHdr.csum_start);
        packet.writeUInt16LE(options.needsChecksum.offset, NetHdr.csum_offset);
      }
    }
    for (const [name, value] of Object.entries(options.force ?? {})) {
      const at = name === 'num_buffers' ? NET_HDR_NUM_BUFFERS : NetHdr[name as keyof typeof NetHdr];
      if (name === 'flags' || name === 'gso_type') packet[at] = value;
      else packet.writeUInt16LE(value, at);
    }
  }
}
