import { ProtocolError } from '../errors';
import type { DmaAllocator, DmaRegion } from '../platform';
import type { Virtqueue } from '../queue';
import { NET_MIN_FRAME } from '../spec';
import { checksumFits, parseReceiveHeader, type NetReceivedChecksum } from './net-header';

/** A received frame with what its header said (§5.1.6.4). */
export interface ReceivedFrame extends NetReceivedChecksum {
  /** The Ethernet frame, without the virtio-net header and without FCS. */
  frame: Buffer;
  /** The queue pair it arrived on (0 for receiveq1). */
  pair: number;
}

/** How a receive queue's buffers look and what the negotiated features let the device write. */
export interface NetReceiveLayout {
  /** Buffers posted on this queue at most. */
  count: number;
  /** Bytes of each buffer (header included). */
  bufferBytes: number;
  headerBytes: number;
  /** VIRTIO_NET_F_MRG_RXBUF: num_buffers is meaningful. */
  mergeable: boolean;
  /** VIRTIO_NET_F_GUEST_CSUM: NEEDS_CSUM / DATA_VALID may be set. */
  guestCsum: boolean;
  /** Largest frame accepted (mtu + Ethernet header and VLAN tag). */
  maxFrame: number;
}

/** Where a receive queue hands its frames and faults; the driver owns the shared limits. */
export interface NetReceiveSink {
  deliver(frame: ReceivedFrame): void;
  /** A frame dropped because of what the device wrote. */
  drop(fault: ProtocolError): void;
  /** Whether one more buffer may be posted now (limits shared by every receive queue). */
  mayPost(): boolean;
  /** A buffer came back: post what the limits allow, on every queue. */
  refill(): void;
  fail(error: unknown): void;
}

/**
 * One receive queue's buffers (virtio 1.2 §5.1.6.3) and the gathering of
 * frames from them: with MRG_RXBUF a frame spans num_buffers used
 * buffers, the header in the first (§5.1.6.4). Everything the device
 * wrote is checked before it is used; a bad frame is dropped, its buffers
 * re-posted, and the next buffer starts a new frame.
 */
export class NetReceiveQueue {
  /** Buffers posted and not yet returned. */
  posted = 0;
  private readonly region: DmaRegion;
  private readonly idle: number[] = [];
  /** The frame being gathered: its data so far (none once too long), its bytes, buffers still to come. */
  private partial?: { parts: Buffer[]; bytes: number; left: number; checksum: NetReceivedChecksum };
  private stopped = false;

  constructor(
    private readonly queue: Virtqueue,
    private readonly memory: DmaAllocator,
    private readonly pair: number,
    private readonly layout: NetReceiveLayout,
    private readonly sink: NetReceiveSink,
  ) {
    this.region = memory.allocate(layout.count * layout.bufferBytes, 64);
    for (let slot = 0; slot < layout.count; slot++) this.idle.push(slot);
  }

  /** Posts idle buffers while the sink allows. */
  refill(): void {
    while (!this.stopped && this.idle.length > 0 && this.sink.mayPost()) this.post(this.idle.shift()!);
  }

  /** Stops posting; frees the buffers if the device has released them (reset done). */
  close(deviceReleased: boolean): void {
    this.stopped = true;
    if (deviceReleased) this.memory.free(this.region);
  }

  private post(slot: number): void {
    const { bufferBytes } = this.layout;
    this.posted++;
    this.queue.submit({ writable: [{ region: this.region, offset: slot * bufferBytes, length: bufferBytes }] }).then(
      (len) => {
        this.posted--;
        if (this.stopped) return;
        this.received(slot, len);
        this.idle.push(slot);
        this.sink.refill();
      },
      (error: unknown) => {
        this.posted--;
        if (!this.stopped && this.queue.recovered(error)) {
          // The queue was reset and goes on (Virtqueue.reset): a frame half gathered is lost; post the buffer again.
          this.partial = undefined;
          this.idle.push(slot);
          this.sink.refill();
          return;
        }
        this.stopped = true;
        this.sink.fail(error);
      },
    );
  }

  private drop(reason: string, message: string): void {
    this.sink.drop(new ProtocolError(reason, `virtio-net receive queue pair ${this.pair}: ${message}; frame dropped`));
  }

  /**
   * One used buffer (its len already checked against its size by the
   * queue). Data is copied only while the frame is within maxFrame, so
   * num_buffers and len never make the driver hold more than one largest
   * frame in the making.
   */
  private received(slot: number, len: number): void {
    const { headerBytes, maxFrame } = this.layout;
    const base = this.region.offset + slot * this.layout.bufferBytes;
    let data = 0;
    if (!this.partial) {
      if (len < headerBytes) {
        this.drop('net-short-buffer', `a first buffer of ${len} bytes, shorter than the ${headerBytes}-byte header`);
        return;
      }
      // The buffers the device may still use for this frame: this one and those posted (§5.1.6.4).
      const header = parseReceiveHeader(new DataView(this.region.view, base, headerBytes), {
        ...this.layout,
        maxBuffers: this.posted + 1,
      });
      if ('reason' in header) {
        this.drop(header.reason, header.message);
        return;
      }
      const { numBuffers, ...checksum } = header;
      this.partial = { parts: [], bytes: 0, left: numBuffers, checksum };
      data = headerBytes;
    }
    const partial = this.partial;
    partial.left--;
    partial.bytes += len - data;
    if (partial.bytes <= maxFrame)
      partial.parts.push(Buffer.from(new Uint8Array(this.region.view, base + data, len - data)));
    else partial.parts.length = 0;
    if (partial.left > 0) return;
    this.partial = undefined;
    if (partial.bytes < NET_MIN_FRAME || partial.bytes > maxFrame) {
      this.drop('net-frame-length', `a ${partial.bytes}-byte frame, outside [${NET_MIN_FRAME}, ${maxFrame}]`);
      return;
    }
    const needs = partial.checksum.needsChecksum;
    if (needs && !checksumFits(needs, partial.bytes)) {
      const { start, offset } = needs;
      this.drop(
        'net-checksum-range',
        `csum_start ${start} + csum_offset ${offset} + 2 past a ${partial.bytes}-byte frame`,
      );
      return;
    }
    this.sink.deliver({ frame: Buffer.concat(partial.parts, partial.bytes), pair: this.pair, ...partial.checksum });
  }
}
