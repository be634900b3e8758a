import {
  ConsoleConfig,
  ConsoleFeature,
  ConsoleQueue,
  DeviceId,
  feature,
  portOfQueue,
  portReceiveQueue,
  type ConsoleControlMessage,
} from '../spec';
import { ConsoleMultiport, type ConsoleMultiportOptions, type ConsolePortSpec } from './console-multiport';
import { ConsolePortData } from './console-port-data';
import type { SimConfigField, SimDeviceModel, SimRequest } from './sim-model';
import { invalidArgValue, outOfRange } from '../errors';

export interface ConsoleModelOptions {
  /** Offer VIRTIO_CONSOLE_F_SIZE with these columns and rows. */
  size?: { cols: number; rows: number };
  /** Send every byte the driver transmits straight back (default false). */
  echo?: boolean;
  /** QueueNumMax of every data queue (default 64). */
  queueSize?: number;
  /** Offer VIRTIO_CONSOLE_F_MULTIPORT: the control queues and ports 1.. (§5.3.6.2). */
  multiport?: ConsoleMultiportOptions;
}

/**
 * A console device (virtio 1.2 §5.3). What the driver transmits is
 * collected per port (`output` is port 0's, echoed back with `echo`);
 * send() delivers bytes to the driver through the receive buffers it has
 * posted, holding them while none is posted — like a terminal with flow
 * control. Without `multiport` there is port 0 only and its bytes always
 * flow. With it, ports are announced on the control queues (§5.3.6.2) and
 * bytes reach a port only while it is added and the driver has opened it
 * (PORT_OPEN 1), as QEMU's virtio-serial does; until then they wait.
 */
export class ConsoleModel implements SimDeviceModel {
  readonly deviceId = DeviceId.CONSOLE;
  readonly features: bigint;
  readonly queueSizes: readonly number[];
  readonly config = new Uint8Array(ConsoleConfig.SIZE);
  readonly configFields: readonly SimConfigField[] = [
    { offset: ConsoleConfig.cols, width: 2 },
    { offset: ConsoleConfig.rows, width: 2 },
    { offset: ConsoleConfig.max_nr_ports, width: 4 },
    { offset: ConsoleConfig.emerg_wr, width: 4, writable: true },
  ];
  private readonly echo: boolean;
  private readonly ports: ConsolePortData[];
  private readonly multiport?: ConsoleMultiport;

  constructor(options: ConsoleModelOptions = {}) {
    const queueSize = options.queueSize ?? 64;
    this.echo = options.echo ?? false;
    let offered = options.size ? feature(ConsoleFeature.SIZE) : 0n;
    if (options.size) this.setSize(options.size);
    if (options.multiport) {
      const multiport = new ConsoleMultiport(options.multiport, {
        opened: (id) => this.ports[id].deliver(),
        removed: (id) => this.ports[id].dropWaiting(),
      });
      const { maxPorts, controlQueueSize } = multiport;
      this.multiport = multiport;
      offered |= feature(ConsoleFeature.MULTIPORT);
      // receiveq0, transmitq0, control receiveq, control transmitq, then a pair per port 1.. (§5.3.2).
      this.queueSizes = [
        queueSize,
        queueSize,
        controlQueueSize,
        controlQueueSize,
        ...new Array<number>(2 * (maxPorts - 1)).fill(queueSize),
      ];
      this.ports = Array.from(
        { length: maxPorts },
        (_, id) => new ConsolePortData(() => multiport.portAdded(id) && multiport.guestConnected(id)),
      );
      new DataView(this.config.buffer, this.config.byteOffset).setUint32(ConsoleConfig.max_nr_ports, maxPorts, true);
    } else {
      this.queueSizes = [queueSize, queueSize];
      this.ports = [new ConsolePortData(() => true)];
    }
    this.features = offered;
  }

  /** Changes cols/rows (the caller raises the config change on the SimDevice). */
  setSize(size: { cols: number; rows: number }): void {
    const view = new DataView(this.config.buffer, this.config.byteOffset, this.config.byteLength);
    view.setUint16(ConsoleConfig.cols, size.cols, true);
    view.setUint16(ConsoleConfig.rows, size.rows, true);
  }

  // ---- Data (§5.3.6.1) ----

  /** Bytes for the driver on `port`: they fill its posted receive buffers in order. */
  send(data: Uint8Array, port = 0): void {
    this.port(port).send(data);
  }

  /** Everything the driver transmitted on port 0, in order. */
  get output(): Buffer {
    return this.ports[0].output;
  }

  /** Everything the driver transmitted on `id`, in order. */
  portOutput(id: number): Buffer {
    return this.port(id).output;
  }

  /** Resolves once `port`'s output holds at least `bytes` bytes; with those bytes. */
  outputOf(bytes: number, port = 0): Promise<Buffer> {
    return this.port(port).outputOf(bytes);
  }

  /** Receive buffers the driver has posted on port 0 and the device holds. */
  get postedReceives(): number {
    return this.ports[0].posted;
  }

  /** Bytes sent to port 0 and not yet delivered. */
  get undelivered(): number {
    return this.ports[0].undelivered;
  }

  postedReceivesOf(port: number): number {
    return this.port(port).posted;
  }

  undeliveredOf(port: number): number {
    return this.port(port).undelivered;
  }

  // ---- Multiport control (§5.3.6.2) ----

  /** The driver sent DEVICE_READY 1 since the last reset (always false without multiport). */
  get driverReady(): boolean {
    return this.multiport?.driverReady ?? false;
  }

  /** Control messages the driver sent, in order (empty without multiport). */
  get controlLog(): ConsoleControlMessage[] {
    return this.multiport?.controlLog ?? [];
  }

  /** Control-queue misbehaviour of the driver, for people (empty without multiport). */
  get protocolErrors(): string[] {
    return this.multiport?.protocolErrors ?? [];
  }

  /** Ports the driver answered with PORT_READY value 0. */
  get failedPorts(): number[] {
    return this.multiport?.failedPorts ?? [];
  }

  /** Announced with DEVICE_ADD since the driver's DEVICE_READY (without multiport: port 0, always). */
  portAdded(id: number): boolean {
    return this.multiport ? this.multiport.portAdded(id) : id === 0;
  }

  /** The driver opened the port with PORT_OPEN 1 (without multiport: port 0, always). */
  guestConnected(id: number): boolean {
    return this.multiport ? this.multiport.guestConnected(id) : id === 0;
  }

  /** Control receive buffers the driver has posted (queue 2) and the device holds. */
  get postedControlReceives(): number {
    return this.multiport?.postedControlReceives ?? 0;
  }

  /** Control messages waiting for a control receive buffer. */
  get pendingControl(): number {
    return this.multiport?.pendingControl ?? 0;
  }

  /** Hot-plugs a port: DEVICE_ADD now if the driver is ready, else at its DEVICE_READY. True if sent. */
  addPort(spec: ConsolePortSpec): boolean {
    return this.control('addPort').addPort(spec);
  }

  /** Unplugs a port: DEVICE_REMOVE if it was added; bytes waiting for it are dropped. True if sent. */
  removePort(id: number): boolean {
    return this.control('removePort').removePort(id);
  }

  /** The host side opens or closes the port: PORT_OPEN 1/0 if it is added. True if sent. */
  setHostConnected(id: number, connected: boolean): boolean {
    return this.control('setHostConnected').setHostConnected(id, connected);
  }

  /** RESIZE with struct virtio_console_resize, if the port is added. True if sent. */
  resizePort(id: number, size: { cols: number; rows: number }): boolean {
    return this.control('resizePort').resizePort(id, size);
  }

  /** Sends any control message, unchecked, whenever a control receive buffer is posted (tests of hostile devices). */
  sendControl(id: number, event: number, value: number, extra?: Uint8Array): void {
    this.control('sendControl').send(id, event, value, extra);
  }

  // ---- SimDeviceModel ----

  handle(request: SimRequest): number | Promise<number> {
    const { queue } = request;
    if (this.multiport && queue === ConsoleQueue.CONTROL_RECEIVE) return this.multiport.holdControl(request);
    if (this.multiport && queue === ConsoleQueue.CONTROL_TRANSMIT) {
      this.multiport.fromDriver(request);
      return 0;
    }
    const id = portOfQueue(queue);
    if (id === undefined || id >= this.ports.length) return 0;
    const port = this.ports[id];
    if (queue === portReceiveQueue(id)) return port.hold(request);
    const data = Buffer.concat(request.readable.map((b) => Buffer.from(b)));
    if (this.multiport && !this.multiport.portAdded(id))
      this.multiport.protocolErrors.push(`transmit on port ${id}, which is not added`);
    port.transmitted(data);
    if (this.multiport?.echoOf(id) ?? this.echo) port.send(data);
    return 0;
  }

  reset(): void {
    for (const port of this.ports) {
      port.dropReceives();
      port.dropWaiting();
    }
    this.multiport?.reset();
  }

  resetQueue(queue: number): void {
    if (this.multiport && queue === ConsoleQueue.CONTROL_RECEIVE) return this.multiport.dropControlReceives();
    const id = portOfQueue(queue);
    if (id !== undefined && id < this.ports.length && queue === portReceiveQueue(id)) this.ports[id].dropReceives();
  }

  private port(id: number): ConsolePortData {
    if (!Number.isInteger(id) || id < 0 || id >= this.ports.length)
      throw outOfRange(`port must be an integer in [0, ${this.ports.length - 1}], got ${id}`);
    return this.ports[id];
  }

  private control(method: string): ConsoleMultiport {
    if (!this.multiport) throw invalidArgValue(`ConsoleModel.${method}() needs the multiport option`);
    return this.multiport;
  }
}
