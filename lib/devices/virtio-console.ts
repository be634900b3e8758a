import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { AbortError, invalidArgType, outOfRange, PortError } from '../errors';
import {
  ConsoleConfig,
  ConsoleControlEvent,
  ConsoleFeature,
  ConsoleQueue,
  ConsoleResize,
  DeviceId,
  feature,
  hasFeature,
  portReceiveQueue,
  portTransmitQueue,
  type ConsoleControlMessage,
} from '../spec';
import type { VirtioTransport } from '../transport';
import { ControlChannel } from './console-control';
import { ConsolePort, type ConsoleSize, type PortControl, type PortHost } from './console-port';
import { DriverSetup } from './driver-setup';
import { VirtioDriver, type DriverOptions, type StartedDevice } from './virtio-driver';
import { INT31_MAX, inInt31Range } from '../util/int31';

export type { ConsoleSize } from './console-port';

export interface VirtioConsoleOptions extends DriverOptions {
  /** Receive buffers kept posted per open port (default: the receive queue's size, at most 64). */
  receiveBuffers?: number;
  /** Bytes per receive buffer (default 4096). */
  receiveBufferBytes?: number;
  /** Largest transmit buffer; longer writes are split (default 4096). */
  transmitBufferBytes?: number;
  /** Negotiate VIRTIO_CONSOLE_F_MULTIPORT when the device offers it (default true). */
  multiport?: boolean;
  /** With MULTIPORT: ports to set queues up for, at most max_nr_ports (default min(max_nr_ports, 32)). */
  maxPorts?: number;
}

export interface WaitForPortOptions {
  signal?: AbortSignal;
  /**
   * Give up after this long with PortError NOT_FOUND; a number in [0, 2^31 - 1] (default: wait until the signal or
   * close).
   */
  timeoutMs?: number;
}

/** Bytes per control receive buffer: the 8-byte header and a PORT_NAME name. */
const CONTROL_BUFFER_BYTES = 1024;
const DEFAULT_MAX_PORTS = 32;
/** setTimeout's limit; a longer delay would fire at once. */

/**
 * The console device (virtio 1.2 §5.3). Port 0's stream is `stream`,
 * open from the start. With MULTIPORT (negotiated when offered unless
 * `multiport: false`) the device adds, names and removes further ports
 * through the control queues; `ports`, `port(id)` and `waitForPort(name)`
 * find them, and `port.open()` gives each one's stream. Queues for
 * `maxPorts` ports are set up before DRIVER_OK (ports can be hot-plugged
 * later, and queues cannot be added after DRIVER_OK).
 *
 * `events`: 'add' (port), 'remove' (port), 'error' (a control queue
 * failed; emitted only when listened to).
 */
export class VirtioConsole extends VirtioDriver {
  static readonly deviceId = DeviceId.CONSOLE;

  /** Port 0's byte stream; destroying it closes the console. */
  readonly stream: Duplex;
  readonly events = new EventEmitter();
  /**
   * Internal: a port was added, named or removed, or the console closed (what waitForPort waits on; any number of
   * waiters).
   */
  private readonly changes = new EventEmitter().setMaxListeners(0);
  /** Whether MULTIPORT was negotiated. */
  readonly multiport: boolean;
  private readonly slots: { port: ConsolePort; control: PortControl }[] = [];
  private readonly control?: ControlChannel;
  private ignored = 0;

  private constructor(started: StartedDevice, portCount: number, options: VirtioConsoleOptions) {
    super(started);
    this.multiport = hasFeature(this.features, ConsoleFeature.MULTIPORT);
    const receiveBufferBytes = options.receiveBufferBytes ?? 4096;
    const buffers = {
      receiveBuffers: options.receiveBuffers ?? 64,
      receiveBufferBytes,
      transmitBufferBytes: options.transmitBufferBytes ?? 4096,
    };
    // Object-literal getters have their own `this`; these arrows read the console's state.
    const isClosed = (): boolean => this.closed;
    const isReleased = (): boolean => this.deviceReleased;
    const owner: PortHost = {
      memory: this.memory,
      requestTimeoutMs: this.requestTimeoutMs,
      get closed() {
        return isClosed();
      },
      get released() {
        return isReleased();
      },
      announceOpen: this.multiport
        ? (id: number, open: boolean) => this.control?.send(id, ConsoleControlEvent.PORT_OPEN, open ? 1 : 0)
        : undefined,
      streamDestroyed: (id: number) => {
        if (id === 0) this.close();
      },
    };
    for (let id = 0; id < portCount; id++) {
      let control!: PortControl;
      const port = new ConsolePort(
        id,
        this.queue(portReceiveQueue(id)),
        this.queue(portTransmitQueue(id)),
        owner,
        buffers,
        !this.multiport,
        (c) => (control = c),
      );
      this.slots.push({ port, control });
    }
    const size = this.readSize();
    if (size) this.slots[0].control.resize(size);
    this.onConfigChange(() => {
      const size = this.readSize();
      if (size) this.slots[0].control.resize(size);
    });
    if (this.multiport) {
      this.control = new ControlChannel({
        receive: this.queue(ConsoleQueue.CONTROL_RECEIVE),
        transmit: this.queue(ConsoleQueue.CONTROL_TRANSMIT),
        owner,
        buffers: 64,
        bufferBytes: CONTROL_BUFFER_BYTES,
        onMessage: (message) => this.handleControl(message),
        onMalformed: () => this.ignored++,
        onError: (error) => this.controlFailed(error),
      });
    }
    // Port 0's stream is open from the start; with MULTIPORT its PORT_OPEN follows DEVICE_ADD.
    this.stream = this.slots[0].port.open();
    if (this.control) {
      this.control.start();
      // §5.3.6.2: the driver MUST send DEVICE_READY when MULTIPORT is negotiated.
      this.control.send(0, ConsoleControlEvent.DEVICE_READY, 1);
    }
  }

  /** Initializes the device on `transport` (which must hold a console device). */
  static open(transport: VirtioTransport, options: VirtioConsoleOptions): VirtioConsole {
    for (const name of ['receiveBufferBytes', 'transmitBufferBytes', 'receiveBuffers'] as const) {
      const value = options?.[name];
      if (value !== undefined && (!Number.isInteger(value) || value < 1 || value > 1 << 20))
        throw outOfRange(`${name} must be an integer in [1, 1 MiB], got ${value}`);
    }
    const maxPorts = options?.maxPorts;
    if (maxPorts !== undefined && (!Number.isInteger(maxPorts) || maxPorts < 1 || maxPorts > 1024))
      throw outOfRange(`maxPorts must be an integer in [1, 1024], got ${maxPorts}`);
    const setup = DriverSetup.begin(transport, options);
    try {
      const wanted =
        feature(ConsoleFeature.SIZE) | ((options.multiport ?? true) ? feature(ConsoleFeature.MULTIPORT) : 0n);
      const features = setup.negotiate(DeviceId.CONSOLE, wanted);
      if (hasFeature(features, ConsoleFeature.SIZE))
        setup.requireConfig(ConsoleConfig.rows + 2, 'virtio-console (VIRTIO_CONSOLE_F_SIZE)');
      let portCount = 1;
      if (hasFeature(features, ConsoleFeature.MULTIPORT)) {
        setup.requireConfig(ConsoleConfig.max_nr_ports + 4, 'virtio-console (VIRTIO_CONSOLE_F_MULTIPORT)');
        // max_nr_ports comes from the device: bounded by what the caller allows.
        const offered = transport.config.read32(ConsoleConfig.max_nr_ports);
        portCount = Math.max(1, Math.min(offered, maxPorts ?? DEFAULT_MAX_PORTS));
      }
      setup.setUpQueues(consoleQueues(portCount, hasFeature(features, ConsoleFeature.MULTIPORT)), 64);
      setup.driverOk();
      return new VirtioConsole(setup.finish(), portCount, options);
    } catch (error) {
      throw setup.abandon(error);
    }
  }

  /** Port 0's columns and rows, when the device offers VIRTIO_CONSOLE_F_SIZE; the stream emits 'resize' on change. */
  get size(): ConsoleSize | undefined {
    return this.slots[0].port.size;
  }

  /** The ports the device has added (port 0 alone without MULTIPORT). */
  get ports(): ConsolePort[] {
    return this.slots.filter((s) => s.port.added).map((s) => s.port);
  }

  /** The port with this id, if the device has added it. */
  port(id: number): ConsolePort | undefined {
    const slot = this.slots[id];
    return slot?.port.added ? slot.port : undefined;
  }

  /**
   * Control replies not sent because the device had not taken the earlier
   * ones (a device flooding DEVICE_ADD while never draining the control
   * transmitq must not grow our memory): at most the control transmitq's
   * size, and 64 KiB, are outstanding.
   */
  get droppedControlReplies(): number {
    return this.control?.stats.dropped ?? 0;
  }

  /** Control messages received that were malformed or made no sense (ignored; §5.3.6.2 device requirements). */
  get ignoredControlMessages(): number {
    return this.ignored;
  }

  /**
   * Resolves with the added port whose id (a number) or name (a string)
   * matches, now or when the device adds or names it. Bad arguments reject
   * at once: a match neither number nor string (TypeError), an id outside
   * the ports set up (RangeError), a bad timeoutMs (RangeError).
   */
  waitForPort(match: number | string, options: WaitForPortOptions = {}): Promise<ConsolePort> {
    if (typeof match !== 'number' && typeof match !== 'string')
      return Promise.reject(invalidArgType(`a port is matched by id (number) or name (string), got ${typeof match}`));
    if (typeof match === 'number' && (!Number.isInteger(match) || match < 0))
      return Promise.reject(outOfRange(`port id must be a non-negative integer, got ${match}`));
    const { timeoutMs } = options;
    if (timeoutMs !== undefined && !inInt31Range(timeoutMs)) {
      return Promise.reject(outOfRange(`timeoutMs must be a number in [0, ${INT31_MAX}], got ${String(timeoutMs)}`));
    }
    const find = (): ConsolePort | undefined =>
      this.ports.find((p) => (typeof match === 'number' ? p.id === match : p.name === match));
    const found = find();
    if (found) return Promise.resolve(found);
    if (!this.multiport)
      return Promise.reject(
        new PortError(
          PortError.NO_MULTIPORT,
          `port ${String(match)}: MULTIPORT was not negotiated, only port 0 exists`,
        ),
      );
    // Ports beyond the queues set up before DRIVER_OK can never be added (§5.3.6.2: the driver refuses them).
    if (typeof match === 'number' && match >= this.slots.length)
      return Promise.reject(
        outOfRange(
          `port id ${match} is outside the ${this.slots.length} ports set up (ids 0..${this.slots.length - 1})`,
        ),
      );
    if (this.closed) return Promise.reject(new PortError(PortError.ABSENT, 'the console is closed'));
    if (options.signal?.aborted) return Promise.reject(new AbortError(undefined, { cause: options.signal.reason }));
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        this.changes.off('change', check);
        options.signal?.removeEventListener('abort', abort);
        if (timer) clearTimeout(timer);
      };
      const check = (): void => {
        if (this.closed) {
          done();
          reject(new PortError(PortError.ABSENT, 'the console is closed'));
          return;
        }
        const port = find();
        if (port) {
          done();
          resolve(port);
        }
      };
      const abort = (): void => {
        done();
        reject(new AbortError(undefined, { cause: options.signal?.reason }));
      };
      this.changes.on('change', check);
      options.signal?.addEventListener('abort', abort, { once: true });
      if (options.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          done();
          reject(
            new PortError(
              PortError.NOT_FOUND,
              `no port ${typeof match === 'number' ? match : JSON.stringify(match)} within ${options.timeoutMs} ms`,
            ),
          );
        }, options.timeoutMs);
      }
    });
  }

  override close(): void {
    if (this.closed) return;
    super.close();
    for (const { control } of this.slots) control.shutdown();
    this.control?.shutdown();
    this.changes.emit('change');
  }

  private readSize(): ConsoleSize | undefined {
    if (!hasFeature(this.features, ConsoleFeature.SIZE)) return undefined;
    return this.transport.config.atomic(() => ({
      cols: this.transport.config.read16(ConsoleConfig.cols),
      rows: this.transport.config.read16(ConsoleConfig.rows),
    }));
  }

  /** One control message from the device (§5.3.6.2); its id and event are untrusted. */
  private handleControl({ id, event, value, extra }: ConsoleControlMessage): void {
    const control = this.control;
    if (!control || this.closed) return;
    const slot = this.slots[id];
    if (event === ConsoleControlEvent.DEVICE_ADD) {
      if (!slot) {
        // A port we have no queues for (beyond maxPorts): refuse it, as §5.3.6.2 lets the driver.
        this.ignored++;
        if (id < 0x10000) control.send(id, ConsoleControlEvent.PORT_READY, 0);
        return;
      }
      if (slot.port.added) {
        this.ignored++;
        return;
      }
      slot.control.add();
      control.send(id, ConsoleControlEvent.PORT_READY, 1);
      // Port 0's stream (or a port reopened before a remove/add) is already open.
      if (slot.port.stream) control.send(id, ConsoleControlEvent.PORT_OPEN, 1);
      this.events.emit('add', slot.port);
      this.changes.emit('change');
      return;
    }
    if (!slot?.port.added) {
      this.ignored++;
      return;
    }
    const { port } = slot;
    switch (event) {
      case ConsoleControlEvent.DEVICE_REMOVE:
        slot.control.remove();
        this.events.emit('remove', port);
        this.changes.emit('change');
        return;
      case ConsoleControlEvent.CONSOLE_PORT:
        slot.control.console();
        // §5.3.6.2: a console port MUST be answered with PORT_OPEN 1.
        if (port.stream) control.send(id, ConsoleControlEvent.PORT_OPEN, 1);
        else port.open();
        return;
      case ConsoleControlEvent.PORT_NAME: {
        const end = extra.indexOf(0); // QEMU ends the name with a NUL the spec does not have
        slot.control.name(new TextDecoder().decode(end >= 0 ? extra.subarray(0, end) : extra));
        this.changes.emit('change');
        return;
      }
      case ConsoleControlEvent.PORT_OPEN:
        slot.control.host(value === 1);
        return;
      case ConsoleControlEvent.RESIZE:
        if (extra.length < ConsoleResize.SIZE) {
          this.ignored++;
          return;
        }
        slot.control.resize({ cols: extra[0] | (extra[1] << 8), rows: extra[2] | (extra[3] << 8) });
        return;
      default:
        // DEVICE_READY and PORT_READY are the driver's; anything else is unknown.
        this.ignored++;
    }
  }

  private controlFailed(error: Error): void {
    for (const { control } of this.slots) control.fail(error);
    if (this.events.listenerCount('error') > 0) this.events.emit('error', error);
  }
}

/** §5.3.2: port 0's receiveq and transmitq; with MULTIPORT the control queues, then each further port's pair. */
function consoleQueues(portCount: number, multiport: boolean): number[] {
  if (!multiport) return [ConsoleQueue.RECEIVE0, ConsoleQueue.TRANSMIT0];
  const queues: number[] = [
    ConsoleQueue.RECEIVE0,
    ConsoleQueue.TRANSMIT0,
    ConsoleQueue.CONTROL_RECEIVE,
    ConsoleQueue.CONTROL_TRANSMIT,
  ];
  for (let id = 1; id < portCount; id++) queues.push(portReceiveQueue(id), portTransmitQueue(id));
  return queues;
}
