import { EventEmitter } from 'node:events';
import { CanceledError, invalidArgType, outOfRange } from '../errors';
import { freeIfLive, type DmaRegion } from '../platform';
import type { Virtqueue } from '../queue';
import {
  DeviceId,
  InputConfig,
  InputConfigSelect,
  InputEventLayout,
  InputEventType,
  InputQueue,
  InputSyn,
  decodeInputEvent,
  encodeInputEvent,
  type InputEvent,
} from '../spec';
import type { VirtioTransport } from '../transport';
import { DriverSetup } from './driver-setup';
import { VirtioDriver, type DriverOptions, type StartedDevice } from './virtio-driver';
import { InputConfigReader, type InputAbsInfoValue, type InputDevidsValue } from './virtio-input-config';
import { InputEventSubscribers } from './virtio-input-events';

export type { InputAbsInfoValue, InputDevidsValue } from './virtio-input-config';

export interface VirtioInputOptions extends DriverOptions {
  /** Events each open events() iterator keeps for a slow reader before dropping the oldest (default 1024). */
  maxQueuedEvents?: number;
}

/** Counters of what came in on the event queue. */
export interface InputStats {
  /** Events delivered. */
  events: number;
  /** Buffers the device used with a length other than 8 (§5.8.6): dropped, the buffer posted again. */
  malformed: number;
  /** Events an events() iterator dropped because its reader fell more than maxQueuedEvents behind. */
  overruns: number;
  /** Events of reports longer than MAX_REPORT_EVENTS (without an EV_SYN/SYN_REPORT): no 'report' for them. */
  reportOverflows: number;
}

/** A 'report' holds at most this many events; a device that never sends SYN_REPORT cannot grow it further. */
export const MAX_REPORT_EVENTS = 1024;

export interface VirtioInputEvents {
  /** One event of the event queue, in device order. */
  event: [InputEvent];
  /** The events since the last one, at an EV_SYN/SYN_REPORT (which is not included). */
  report: [InputEvent[]];
  /** The event queue failed (the device broke it); events() iterators reject with it too. */
  error: [Error];
}

/**
 * The input device (virtio 1.2 §5.8): evdev events from the device on
 * eventq, kept filled with 8-byte device-writable buffers (each posted
 * again as soon as it is read), as 'event' and 'report' emits and through
 * events(); sendStatus() puts an event on statusq (LEDs). The config space
 * describes the device through select/subsel (§5.8.4): name(), serial(),
 * devids(), propBits(), eventTypes(), eventBits(), absInfo(). Like net and
 * console it holds the process while open, unless unref()'d.
 */
export class VirtioInput extends VirtioDriver {
  static readonly deviceId = DeviceId.INPUT;

  private readonly eventq: Virtqueue;
  private readonly statusq: Virtqueue;
  private readonly eventMemory: DmaRegion;
  private readonly eventBytes: Uint8Array;
  private readonly reader: InputConfigReader;
  private readonly emitter = new EventEmitter();
  private readonly subscribers: InputEventSubscribers;
  private readonly counts = { events: 0, malformed: 0, reportOverflows: 0 };
  private report: InputEvent[] = [];
  private reportOverflowed = false;
  private failure?: Error;

  private constructor(started: StartedDevice, maxQueuedEvents: number) {
    super(started);
    this.eventq = this.queue(InputQueue.EVENTQ);
    this.statusq = this.queue(InputQueue.STATUSQ);
    this.reader = new InputConfigReader(this.transport.config, this.transport.label);
    this.subscribers = new InputEventSubscribers(maxQueuedEvents);
    const count = this.eventq.size;
    // Should this fail, open()'s abandon() closes the device.
    this.eventMemory = this.memory.allocate(count * InputEventLayout.SIZE, 64);
    this.eventBytes = new Uint8Array(this.eventMemory.view, this.eventMemory.offset, this.eventMemory.size);
    // §5.8.6.1: the driver keeps eventq filled.
    for (let slot = 0; slot < count; slot++) this.post(slot);
  }

  /** Initializes the device on `transport` (which must hold an input device). */
  static open(transport: VirtioTransport, options: VirtioInputOptions): VirtioInput {
    const limit = options?.maxQueuedEvents ?? 1024;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1 << 20)
      throw outOfRange(`maxQueuedEvents must be an integer in [1, 2^20], got ${String(limit)}`);
    const setup = DriverSetup.begin(transport, options);
    try {
      // §5.8.3: no device-type feature bits.
      setup.negotiate(DeviceId.INPUT, 0n);
      setup.requireConfig(InputConfig.SIZE, 'virtio-input');
      // §5.8.2: eventq and statusq.
      setup.setUpQueues([InputQueue.EVENTQ, InputQueue.STATUSQ], 64);
      setup.driverOk();
      return new VirtioInput(setup.finish(), limit);
    } catch (error) {
      throw setup.abandon(error);
    }
  }

  /** ID_NAME (§5.8.4): the device's name ("" when it has none). */
  name(): string {
    this.checkOpen();
    return this.reader.string(InputConfigSelect.ID_NAME);
  }

  /** ID_SERIAL (§5.8.4): its serial number ("" when it has none). */
  serial(): string {
    this.checkOpen();
    return this.reader.string(InputConfigSelect.ID_SERIAL);
  }

  /** ID_DEVIDS (§5.8.4): bus type, vendor, product, version; undefined when the device gives none. */
  devids(): InputDevidsValue | undefined {
    this.checkOpen();
    return this.reader.devids();
  }

  /** PROP_BITS (§5.8.4): the INPUT_PROP_* properties set. */
  propBits(): number[] {
    this.checkOpen();
    return this.reader.bits(InputConfigSelect.PROP_BITS, 0);
  }

  /** The event types (EV_*) the device supports (EV_BITS answered for them, §5.8.4). */
  eventTypes(): number[] {
    this.checkOpen();
    return this.reader.eventTypes();
  }

  /** EV_BITS of `type` (§5.8.4): the codes of that event type the device supports. */
  eventBits(type: number): number[] {
    this.checkOpen();
    return this.reader.bits(InputConfigSelect.EV_BITS, type);
  }

  /** ABS_INFO of `axis` (ABS_*, §5.8.4); undefined when the device does not have that axis. */
  absInfo(axis: number): InputAbsInfoValue | undefined {
    this.checkOpen();
    return this.reader.absInfo(axis);
  }

  /** The raw answer to (select, subsel): `size` bytes of the union, copied (for selects this driver does not name). */
  queryConfig(select: number, subsel: number): Uint8Array {
    this.checkOpen();
    return this.reader.query(select, subsel);
  }

  /** Counters of the event queue, as a copy. */
  get inputStats(): InputStats {
    return { ...this.counts, overruns: this.subscribers.overruns };
  }

  /**
   * Events from now on, in order, until the driver is closed (then done
   * after the events already queued). Each iterator keeps at most
   * maxQueuedEvents not yet taken; beyond that the oldest are dropped
   * (inputStats.overruns). return() (a `break` out of for await) stops it.
   */
  events(): AsyncIterableIterator<InputEvent> {
    return this.subscribers.iterator();
  }

  on<K extends keyof VirtioInputEvents>(name: K, listener: (...args: VirtioInputEvents[K]) => void): this {
    this.emitter.on(name, listener as (...args: unknown[]) => void);
    return this;
  }

  once<K extends keyof VirtioInputEvents>(name: K, listener: (...args: VirtioInputEvents[K]) => void): this {
    this.emitter.once(name, listener as (...args: unknown[]) => void);
    return this;
  }

  off<K extends keyof VirtioInputEvents>(name: K, listener: (...args: VirtioInputEvents[K]) => void): this {
    this.emitter.off(name, listener as (...args: unknown[]) => void);
    return this;
  }

  /**
   * Sends one event on statusq (§5.8.6.2), e.g. EV_LED LED_CAPSL 1;
   * resolves when the device has used the buffer.
   */
  async sendStatus(type: number, code: number, value: number): Promise<void> {
    checkField(type, 'type', 0, 0xffff);
    checkField(code, 'code', 0, 0xffff);
    checkField(value, 'value', -(2 ** 31), 2 ** 32 - 1);
    this.checkOpen();
    if (this.failure) throw this.failure;
    const region = this.memory.allocate(InputEventLayout.SIZE);
    encodeInputEvent({ type, code, value }, new Uint8Array(region.view, region.offset, InputEventLayout.SIZE));
    // Freed when the device has used it; one given up on frees its copy when the device gives it back.
    const free = (): void => freeIfLive(this.memory, region);
    await this.statusq.submit({ readable: [{ region }] }, { timeoutMs: this.requestTimeoutMs, reclaim: free });
    free();
  }

  override close(): void {
    if (this.closed) return;
    super.close();
    if (this.deviceReleased && this.eventMemory) this.memory.free(this.eventMemory);
    this.subscribers?.end();
  }

  private post(slot: number): void {
    if (this.closed || this.failure) return;
    const offset = slot * InputEventLayout.SIZE;
    this.eventq.submit({ writable: [{ region: this.eventMemory, offset, length: InputEventLayout.SIZE }] }).then(
      (len) => {
        if (this.closed) return;
        // §5.8.6: each buffer holds one whole event; any other length is the device's error, not an event.
        if (len !== InputEventLayout.SIZE) this.counts.malformed++;
        else this.received(decodeInputEvent(this.eventBytes, offset));
        this.post(slot);
      },
      (error: unknown) => {
        // The queue was reset and goes on (Virtqueue.reset): the buffer is posted again on the new ring.
        if (!this.closed && this.eventq.recovered(error)) this.post(slot);
        else this.fail(error);
      },
    );
  }

  private received(event: InputEvent): void {
    this.counts.events++;
    this.emitter.emit('event', event);
    this.subscribers.deliver(event);
    if (event.type === InputEventType.EV_SYN && event.code === InputSyn.SYN_REPORT) {
      const report = this.report;
      const overflowed = this.reportOverflowed;
      this.report = [];
      this.reportOverflowed = false;
      if (!overflowed) this.emitter.emit('report', report);
    } else if (this.report.length < MAX_REPORT_EVENTS && !this.reportOverflowed) this.report.push(event);
    else {
      // The whole report is dropped: a part of it would mislead.
      this.counts.reportOverflows += this.report.length + 1;
      this.report = [];
      this.reportOverflowed = true;
    }
  }

  private fail(error: unknown): void {
    if (this.failure || this.closed) return;
    this.failure = error instanceof Error ? error : new CanceledError(String(error));
    this.subscribers.fail(this.failure);
    if (this.emitter.listenerCount('error') > 0) this.emitter.emit('error', this.failure);
  }
}

function checkField(value: unknown, name: string, min: number, max: number): void {
  if (typeof value !== 'number') throw invalidArgType(`${name} must be a number`);
  if (!Number.isInteger(value) || value < min || value > max)
    throw outOfRange(`${name} must be an integer in [${min}, ${max}], got ${value}`);
}
