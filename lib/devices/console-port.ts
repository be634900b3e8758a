import '../disposable';
import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import { PortError } from '../errors';
import type { DmaAllocator, DmaRegion } from '../platform';
import type { Virtqueue } from '../queue';
import { TransmitBuffers } from './transmit-buffers';

export interface ConsoleSize {
  cols: number;
  rows: number;
}

/** Buffer sizes of a port's data path. */
export interface PortBuffers {
  /** Receive buffers kept posted while the port is open. */
  receiveBuffers: number;
  /** Bytes per receive buffer. */
  receiveBufferBytes: number;
  /** Largest transmit buffer; longer writes are split. */
  transmitBufferBytes: number;
}

/** How the console that owns a port drives it from control messages (§5.3.6.2). */
export interface PortControl {
  /** DEVICE_ADD: the port is present; its previous name and state are forgotten. */
  add(): void;
  /** DEVICE_REMOVE: the stream ends, later writes fail. */
  remove(): void;
  name(name: string): void;
  /** CONSOLE_PORT. */
  console(): void;
  /** The device's PORT_OPEN. */
  host(connected: boolean): void;
  resize(size: ConsoleSize): void;
  /** Fails the open stream (a broken queue). */
  fail(error: Error): void;
  /** The console is closing: the stream ends without another PORT_OPEN; buffers are freed if the device let go. */
  shutdown(): void;
}

/** What a port needs from the console that owns it. */
export interface PortHost {
  readonly memory: DmaAllocator;
  /** Whether the console was closed. */
  readonly closed: boolean;
  /** After close: whether the device let go of every buffer (so they may be freed). */
  readonly released: boolean;
  /** Time limit of each transmit (DriverOptions.requestTimeoutMs). */
  readonly requestTimeoutMs?: number;
  /** Tells the device the port was opened or closed (PORT_OPEN, §5.3.6.2); absent without MULTIPORT. */
  announceOpen?(id: number, open: boolean): void;
  /** The port's stream was destroyed by its user. */
  streamDestroyed?(id: number): void;
}

/**
 * One port of a console device (virtio 1.2 §5.3): a receiveq/transmitq
 * pair carrying a byte stream. Port 0 always exists; with MULTIPORT the
 * device adds and removes the others through the control queue, names
 * them, nominates console ports and reports whether the host end is open.
 *
 * `open()` gives a Duplex. Receive buffers are posted on the first open and
 * stay posted; while the reader's buffer is full, completed buffers are held
 * back (not re-posted), so the device waits instead of bytes being lost.
 * Bytes that arrive while the port is closed are dropped (and counted). A
 * write completes when the device has taken its bytes.
 *
 * Events: 'name' (name), 'host' (connected: boolean), 'resize' (size),
 * 'remove' (the device removed the port; its stream ends).
 */
export class ConsolePort extends EventEmitter {
  private currentStream?: Duplex;
  private rxMemory?: DmaRegion;
  private readonly transmitted: TransmitBuffers;
  private readonly held: number[] = [];
  private reading = true;
  private present: boolean;
  private removed = false;
  private portName?: string;
  private console = false;
  private host = false;
  private portSize?: ConsoleSize;
  private dropped = 0;

  /** Made by VirtioConsole, which keeps `bind`'s control to drive the port from control messages. */
  constructor(
    readonly id: number,
    private readonly rx: Virtqueue,
    private readonly tx: Virtqueue,
    private readonly owner: PortHost,
    private readonly buffers: PortBuffers,
    present: boolean,
    bind: (control: PortControl) => void,
  ) {
    super();
    this.present = present;
    this.transmitted = new TransmitBuffers(owner.memory, owner.requestTimeoutMs);
    bind({
      add: () => this.onAdd(),
      remove: () => this.onRemove(),
      name: (name) => {
        this.portName = name;
        this.emit('name', name);
      },
      console: () => {
        this.console = true;
      },
      host: (connected) => this.onHost(connected),
      resize: (size) => this.onResize(size),
      fail: (error) => this.fail(error),
      shutdown: () => this.shutdown(),
    });
  }

  /** Whether the device has added the port (always, for port 0 without MULTIPORT). */
  get added(): boolean {
    return this.present;
  }

  /** The name the device gave the port (PORT_NAME), if any. */
  get name(): string | undefined {
    return this.portName;
  }

  /** Whether the device nominated the port as a console (CONSOLE_PORT). */
  get isConsole(): boolean {
    return this.console;
  }

  /** Whether the host end is open (the device's last PORT_OPEN). */
  get hostConnected(): boolean {
    return this.host;
  }

  /** Columns and rows, from config (port 0, SIZE) or a RESIZE message. */
  get size(): ConsoleSize | undefined {
    return this.portSize;
  }

  /** The open stream, if the port is open. */
  get stream(): Duplex | undefined {
    const s = this.currentStream;
    return s && !s.destroyed && !s.readableEnded ? s : undefined;
  }

  /** Received bytes dropped because the port was closed when they came. */
  get droppedBytes(): number {
    return this.dropped;
  }

  /**
   * Opens the port (PORT_OPEN 1 with MULTIPORT) and returns its stream; the
   * same stream while it stays open. Throws PortError ABSENT when the
   * device has not added the port (except port 0) or removed it.
   */
  open(): Duplex {
    if (this.owner.closed) throw new PortError(PortError.ABSENT, `port ${this.id}: the console is closed`, this.id);
    // Port 0's queues always exist (§5.3.2), so it may open before the device adds it; others may not.
    if (this.removed || (!this.present && this.id !== 0))
      throw new PortError(
        PortError.ABSENT,
        `port ${this.id} has not been added by the device (or was removed)`,
        this.id,
      );
    const open = this.stream;
    if (open) return open;
    const stream = new Duplex({
      read: () => this.resume(),
      write: (chunk: Buffer, _encoding, callback) => {
        if (this.removed)
          callback(new PortError(PortError.ABSENT, `port ${this.id} was removed by the device`, this.id));
        else this.send(chunk).then(() => callback(), callback);
      },
      destroy: (error, callback) => {
        if (this.currentStream === stream) this.detach();
        callback(error);
      },
    });
    this.currentStream = stream;
    this.reading = true;
    if (!this.rxMemory) {
      const count = Math.min(this.buffers.receiveBuffers, this.rx.size);
      this.rxMemory = this.owner.memory.allocate(count * this.buffers.receiveBufferBytes, 64);
      for (let slot = 0; slot < count; slot++) this.post(slot);
    } else {
      this.resume();
    }
    // A port the device has not added yet is announced after its DEVICE_ADD.
    if (this.present) this.owner.announceOpen?.(this.id, true);
    return stream;
  }

  /** close(), for `using` (explicit resource management): disposed at the end of the enclosing block. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Closes the port (PORT_OPEN 0 with MULTIPORT): the stream is destroyed; receive buffers stay posted. */
  close(): void {
    this.currentStream?.destroy();
  }

  private onAdd(): void {
    this.present = true;
    this.removed = false;
    this.portName = undefined;
    this.console = false;
    this.host = false;
  }

  private onRemove(): void {
    this.present = false;
    this.removed = true;
    this.host = false;
    const stream = this.currentStream;
    if (stream && !stream.destroyed) stream.push(null);
    this.emit('remove');
  }

  private onHost(connected: boolean): void {
    if (connected === this.host) return;
    this.host = connected;
    this.emit('host', connected);
  }

  private onResize(size: ConsoleSize): void {
    if (size.cols === this.portSize?.cols && size.rows === this.portSize?.rows) return;
    this.portSize = size;
    this.emit('resize', size);
    this.currentStream?.emit('resize', size);
  }

  private shutdown(): void {
    const stream = this.currentStream;
    this.currentStream = undefined;
    if (stream && !stream.destroyed) stream.destroy();
    if (this.owner.released && this.rxMemory) this.owner.memory.free(this.rxMemory);
    this.rxMemory = undefined;
  }

  private fail(error: Error): void {
    const stream = this.currentStream;
    if (stream && !stream.destroyed) stream.destroy(error);
  }

  private detach(): void {
    this.currentStream = undefined;
    if (this.owner.closed) return;
    if (this.present) this.owner.announceOpen?.(this.id, false);
    this.owner.streamDestroyed?.(this.id);
  }

  /**
   * Posts receive buffer `slot`; its completion pushes the bytes and re-posts it (unless the reader is full or gone).
   */
  private post(slot: number): void {
    const memory = this.rxMemory;
    if (this.owner.closed || !memory) return;
    const bytes = this.buffers.receiveBufferBytes;
    this.rx.submit({ writable: [{ region: memory, offset: slot * bytes, length: bytes }] }).then(
      (len) => {
        const stream = this.stream;
        if (len > 0) {
          if (stream) {
            if (!stream.push(Buffer.from(new Uint8Array(memory.view, memory.offset + slot * bytes, len))))
              this.reading = false;
          } else {
            this.dropped += len;
          }
        }
        if (this.stream && this.reading) this.post(slot);
        else this.held.push(slot);
      },
      (error: unknown) => {
        // The queue was reset and goes on (Virtqueue.reset): the buffer is posted again on the new ring.
        if (this.rx.recovered(error)) this.post(slot);
        else if (!this.owner.closed) this.fail(error as Error);
      },
    );
  }

  private resume(): void {
    this.reading = true;
    for (const slot of this.held.splice(0)) this.post(slot);
  }

  private async send(data: Buffer): Promise<void> {
    const parts: Promise<void>[] = [];
    const step = this.buffers.transmitBufferBytes;
    for (let at = 0; at < data.length; at += step)
      parts.push(this.transmitted.send(this.tx, data.subarray(at, Math.min(at + step, data.length))));
    const results = await Promise.allSettled(parts);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}
