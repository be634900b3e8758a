import {
  ConsoleControlEvent as Event,
  ConsoleResize,
  decodeConsoleControl,
  encodeConsoleControl,
  type ConsoleControlMessage,
} from '../spec';
import { HeldReceives, fillWritable } from './held-receives';
import type { SimRequest } from './sim-model';
import { invalidArgValue, outOfRange } from '../errors';

/** One port of a multiport console (virtio 1.2 §5.3.6.2). */
export interface ConsolePortSpec {
  /** 0 .. maxPorts-1. */
  id: number;
  /** Sent as PORT_NAME after the driver's PORT_READY. */
  name?: string;
  /** CONSOLE_PORT is sent after the driver's PORT_READY. */
  console?: boolean;
  /** The host side is open (default true): PORT_OPEN value 1 is sent after PORT_READY. */
  hostConnected?: boolean;
  /** Echo this port's transmitted bytes back to it (default: the model's `echo`). */
  echo?: boolean;
}

/** VIRTIO_CONSOLE_F_MULTIPORT for ConsoleModel. */
export interface ConsoleMultiportOptions {
  /** Config max_nr_ports (≥ 1). */
  maxPorts: number;
  /** Ports present at start, announced with DEVICE_ADD after the driver's DEVICE_READY, in this order. */
  ports: ConsolePortSpec[];
  /** Append a NUL after the name in PORT_NAME, as QEMU 7.2 does (default false: §5.3.6.2 has no NUL). */
  nameTerminator?: boolean;
  /** QueueNumMax of the control queues 2 and 3 (default 32). */
  controlQueueSize?: number;
}

/** What the data side does when the control plane opens or removes a port. */
export interface ConsoleMultiportHooks {
  /** The driver opened port `id` (PORT_OPEN 1): deliver what waits for it. */
  opened(id: number): void;
  /** Port `id` was removed: drop what waits for it. */
  removed(id: number): void;
}

/** Largest max_nr_ports: the last transmitq index, 2 * maxPorts + 1, must fit QueueSel's 16-bit queue range. */
const MAX_PORTS = 0x7fff;

const EVENT_NAMES = new Map<number, string>(Object.entries(Event).map(([name, event]) => [event, name]));

function describe(id: number, event: number): string {
  return `${EVENT_NAMES.get(event) ?? `event ${event}`} (port ${id})`;
}

/**
 * The device side of the multiport control queues (virtio 1.2 §5.3.6.2):
 * messages for the driver wait in order for its control receive buffers
 * (queue 2), one message per buffer, never dropped; messages from the
 * driver (queue 3) are logged, checked, and answered the way QEMU's
 * virtio-serial answers them.
 */
export class ConsoleMultiport {
  readonly maxPorts: number;
  readonly controlQueueSize: number;
  /** Every control message the driver sent that had a whole header, in order. */
  readonly controlLog: ConsoleControlMessage[] = [];
  /** What the driver did wrong on the control queues, for people. */
  readonly protocolErrors: string[] = [];
  /** Ports the driver answered with PORT_READY value 0. */
  readonly failedPorts: number[] = [];
  /** The driver sent DEVICE_READY 1 since the last reset. */
  driverReady = false;
  private readonly nameTerminator: boolean;
  /** Present ports (copies), in announcement order. */
  private readonly specs = new Map<number, ConsolePortSpec>();
  private readonly added = new Set<number>();
  private readonly connected = new Set<number>();
  private pending: Buffer[] = [];
  private readonly receives = new HeldReceives(() => this.deliver());

  constructor(
    options: ConsoleMultiportOptions,
    private readonly hooks: ConsoleMultiportHooks,
  ) {
    const { maxPorts } = options;
    if (!Number.isInteger(maxPorts) || maxPorts < 1 || maxPorts > MAX_PORTS)
      throw outOfRange(`maxPorts must be an integer in [1, ${MAX_PORTS}], got ${maxPorts}`);
    this.maxPorts = maxPorts;
    this.controlQueueSize = options.controlQueueSize ?? 32;
    this.nameTerminator = options.nameTerminator ?? false;
    for (const spec of options.ports) this.addSpec(spec);
  }

  /** The echo setting of a present port (undefined: not set, or not present). */
  echoOf(id: number): boolean | undefined {
    return this.specs.get(id)?.echo;
  }

  portAdded(id: number): boolean {
    return this.added.has(id);
  }

  guestConnected(id: number): boolean {
    return this.connected.has(id);
  }

  /** Control receive buffers the driver has posted and the device holds. */
  get postedControlReceives(): number {
    return this.receives.length;
  }

  /** Control messages waiting for a control receive buffer. */
  get pendingControl(): number {
    return this.pending.length;
  }

  /** A chain from the control receiveq (queue 2): held until a message is due. */
  holdControl(request: SimRequest): Promise<number> {
    return this.receives.hold(request);
  }

  /** A chain from the control transmitq (queue 3): its readable bytes are one message. */
  fromDriver(request: SimRequest): void {
    const bytes = Buffer.concat(request.readable.map((b) => Buffer.from(b)));
    const message = decodeConsoleControl(bytes);
    if (!message) {
      this.protocolErrors.push(`short control message: ${bytes.length} bytes, the header is 8 (§5.3.6.2)`);
      return;
    }
    this.controlLog.push(message);
    this.dispatch(message);
  }

  addPort(spec: ConsolePortSpec): boolean {
    this.addSpec(spec);
    if (!this.driverReady) return false;
    this.announce(spec.id);
    return true;
  }

  removePort(id: number): boolean {
    this.present(id);
    this.specs.delete(id);
    const wasAdded = this.added.delete(id);
    this.connected.delete(id);
    this.hooks.removed(id);
    if (wasAdded) this.send(id, Event.DEVICE_REMOVE, 0);
    return wasAdded;
  }

  setHostConnected(id: number, connected: boolean): boolean {
    this.present(id).hostConnected = connected;
    if (!this.added.has(id)) return false;
    this.send(id, Event.PORT_OPEN, connected ? 1 : 0);
    return true;
  }

  resizePort(id: number, size: { cols: number; rows: number }): boolean {
    this.present(id);
    for (const [name, n] of Object.entries(size)) {
      if (!Number.isInteger(n) || n < 0 || n > 0xffff)
        throw outOfRange(`${name} must be an integer in [0, 65535], got ${n}`);
    }
    if (!this.added.has(id)) return false;
    // struct virtio_console_resize after the header: le16 cols, le16 rows (§5.3.6.2).
    const resize = Buffer.alloc(ConsoleResize.SIZE);
    resize.writeUInt16LE(size.cols, ConsoleResize.cols);
    resize.writeUInt16LE(size.rows, ConsoleResize.rows);
    this.send(id, Event.RESIZE, 0, resize);
    return true;
  }

  /** Queues any message for the driver, unchecked and even before DEVICE_READY (for tests of hostile devices). */
  send(id: number, event: number, value: number, extra?: Uint8Array): void {
    this.pending.push(encodeConsoleControl(id, event, value, extra));
    this.deliver();
  }

  /** Device reset: nothing added or open, nothing waiting or held; the port list and the logs stay. */
  reset(): void {
    this.driverReady = false;
    this.added.clear();
    this.connected.clear();
    this.pending = [];
    this.receives.clear();
  }

  /** Queue reset of the control receiveq: its held buffers go. */
  dropControlReceives(): void {
    this.receives.clear();
  }

  private addSpec(spec: ConsolePortSpec): void {
    const { id } = spec;
    if (!Number.isInteger(id) || id < 0 || id >= this.maxPorts)
      throw outOfRange(`port id must be an integer in [0, ${this.maxPorts - 1}], got ${id}`);
    if (this.specs.has(id)) throw invalidArgValue(`port ${id} is already present`, 'range');
    this.specs.set(id, { ...spec });
  }

  private present(id: number): ConsolePortSpec {
    const spec = this.specs.get(id);
    if (!spec) throw invalidArgValue(`port ${id} is not present`, 'range');
    return spec;
  }

  private announce(id: number): void {
    this.added.add(id);
    this.send(id, Event.DEVICE_ADD, 0);
  }

  private dispatch({ id, event, value }: ConsoleControlMessage): void {
    switch (event) {
      case Event.DEVICE_READY:
        if (value === 0) return; // the driver failed to set up (§5.3.6.2)
        if (value !== 1) return this.error(`${describe(id, event)} with value ${value}`);
        if (this.driverReady) return this.error(`${describe(id, event)} again without a reset`);
        this.driverReady = true;
        for (const port of this.specs.keys()) this.announce(port);
        return;
      case Event.PORT_READY: {
        if (!this.added.has(id)) return this.error(`${describe(id, event)}: port ${id} is not added`);
        if (value === 0) {
          this.failedPorts.push(id);
          return;
        }
        if (value !== 1) return this.error(`${describe(id, event)} with value ${value}`);
        const spec = this.present(id);
        if (spec.console) this.send(id, Event.CONSOLE_PORT, 1);
        if (spec.name !== undefined) {
          const name = Buffer.from(spec.name, 'utf8');
          this.send(id, Event.PORT_NAME, 1, this.nameTerminator ? Buffer.concat([name, Buffer.of(0)]) : name);
        }
        if (spec.hostConnected ?? true) this.send(id, Event.PORT_OPEN, 1);
        return;
      }
      case Event.PORT_OPEN:
        if (!this.added.has(id)) return this.error(`${describe(id, event)}: port ${id} is not added`);
        if (value > 1) return this.error(`${describe(id, event)} with value ${value}`);
        if (value === 0) {
          this.connected.delete(id);
          return;
        }
        this.connected.add(id);
        this.hooks.opened(id);
        return;
      case Event.DEVICE_ADD:
      case Event.DEVICE_REMOVE:
      case Event.CONSOLE_PORT:
      case Event.RESIZE:
      case Event.PORT_NAME:
        return this.error(`${describe(id, event)} is sent by the device, not the driver (§5.3.6.2)`);
      default:
        return this.error(`unknown control event ${event} (port ${id})`);
    }
  }

  private error(message: string): void {
    this.protocolErrors.push(message);
  }

  /** One message per posted control receive buffer, oldest first. */
  private deliver(): void {
    while (this.pending.length > 0 && this.receives.length > 0) {
      const room = this.receives.room(0);
      const [{ request, complete }] = this.receives.take();
      const message = this.pending.shift()!;
      const written = fillWritable(request, message);
      if (written < message.length) {
        const decoded = decodeConsoleControl(message);
        const what = decoded ? describe(decoded.id, decoded.event) : 'control message';
        this.error(`truncated: ${what} is ${message.length} bytes, the control receive buffer holds ${room}`);
      }
      complete(written);
    }
  }
}
