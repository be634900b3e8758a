import type { DmaRegion } from '../platform';
import type { PortHost } from './console-port';
import type { Virtqueue } from '../queue';
import { decodeConsoleControl, encodeConsoleControl, type ConsoleControlMessage } from '../spec';
import { TransmitBuffers } from './transmit-buffers';

export interface ControlChannelOptions {
  /** control receiveq (2) and control transmitq (3), §5.3.2. */
  receive: Virtqueue;
  transmit: Virtqueue;
  /** The console: its memory, and whether it is closed and the device let go. */
  owner: Pick<PortHost, 'memory' | 'closed' | 'released' | 'requestTimeoutMs'>;
  /** Receive buffers kept posted, and their size (a message and its name must fit in one). */
  buffers: number;
  bufferBytes: number;
  /** One message from the device; `extra` is a private copy. */
  onMessage(message: ConsoleControlMessage): void;
  /** A message shorter than its header. */
  onMalformed(len: number): void;
  /** A control queue failed while the console was open. */
  onError(error: Error): void;
}

/** Bytes of control replies the device may leave untaken before more are dropped. */
const MAX_PENDING_REPLY_BYTES = 64 * 1024;

/**
 * The control queues of a MULTIPORT console (virtio 1.2 §5.3.6.2): receive
 * buffers stay posted (the device has nowhere else to put a message), each
 * completed one is decoded from a private copy and posted again; sent
 * messages each get their own small buffer, freed when the device takes it.
 */
export class ControlChannel {
  private memory?: DmaRegion;
  private readonly transmitted: TransmitBuffers;
  private sent = 0;
  private received = 0;
  private dropped = 0;

  constructor(private readonly options: ControlChannelOptions) {
    // A device that floods us with events and never takes our replies must not grow our memory (§5.3.6.2 sets no
    // bound).
    this.transmitted = new TransmitBuffers(options.owner.memory, options.owner.requestTimeoutMs, {
      count: Math.max(1, options.transmit.size),
      bytes: MAX_PENDING_REPLY_BYTES,
    });
  }

  /** Posts the receive buffers. */
  start(): void {
    const { receive, buffers, bufferBytes } = this.options;
    const count = Math.min(buffers, receive.size);
    this.memory = this.options.owner.memory.allocate(count * bufferBytes, 64);
    for (let slot = 0; slot < count; slot++) this.post(slot);
    // Published now, before any message is sent: a device may answer at once
    // and drops a message for which no buffer is posted (QEMU does).
    receive.flush();
  }

  /**
   * Messages sent and received so far; `dropped`: messages not sent because
   * the device had not taken the earlier ones (the queue's size of them, or
   * 64 KiB, were outstanding).
   */
  get stats(): { sent: number; received: number; dropped: number } {
    return { sent: this.sent, received: this.received, dropped: this.dropped };
  }

  /** Sends one message; failures go to onError (not to the caller), since nobody waits on them. */
  send(id: number, event: number, value: number): void {
    const sending = this.transmitted.trySend(this.options.transmit, encodeConsoleControl(id, event, value));
    if (!sending) {
      this.dropped++;
      return;
    }
    this.sent++;
    sending.catch((error: unknown) => {
      if (!this.options.owner.closed) this.options.onError(error as Error);
    });
  }

  /** At close: frees the receive buffers once the device let go of them (else they stay with the allocator). */
  shutdown(): void {
    if (this.memory && this.options.owner.released) this.options.owner.memory.free(this.memory);
    this.memory = undefined;
  }

  private post(slot: number): void {
    const region = this.memory;
    if (this.options.owner.closed || !region) return;
    const size = this.options.bufferBytes;
    this.options.receive.submit({ writable: [{ region, offset: slot * size, length: size }] }).then(
      (len) => {
        // len ≤ the buffer's size: the queue checked it against what was posted.
        const copy = Buffer.from(new Uint8Array(region.view, region.offset + slot * size, len));
        this.post(slot);
        this.received++;
        const message = decodeConsoleControl(copy);
        if (message) this.options.onMessage(message);
        else this.options.onMalformed(len);
      },
      (error: unknown) => {
        // The queue was reset and goes on (Virtqueue.reset): the buffer is posted again on the new ring.
        if (this.options.receive.recovered(error)) this.post(slot);
        else if (!this.options.owner.closed) this.options.onError(error as Error);
      },
    );
  }
}
