/**
 * ConsoleModel (virtio 1.2 §5.3) with and without MULTIPORT, driven through
 * a real SimDevice, MmioTransport and SplitQueues: the control queues of
 * §5.3.6.2 and the per-port data queues of §5.3.2.
 */
import { SplitQueue } from '../../lib/queue';
import { ConsoleModel, type ConsoleModelOptions } from '../../lib/sim';
import {
  ConsoleConfig,
  ConsoleControlEvent as E,
  ConsoleFeature,
  FeatureBit,
  decodeConsoleControl,
  encodeConsoleControl,
  feature,
  hasFeature,
} from '../../lib/spec';
import { simRig, turns, type SimRig } from '../support/sim-rig';

const ALL_FEATURES = (1n << 64n) - 1n;
const text = (s: string): Buffer => Buffer.from(s, 'utf8');

/** A control message as a plain object, `extra` in hex, for toEqual. */
interface Msg {
  id: number;
  event: number;
  value: number;
  extra: string;
}
const msg = (id: number, event: number, value: number, extra: Uint8Array = new Uint8Array(0)): Msg => ({
  id,
  event,
  value,
  extra: Buffer.from(extra).toString('hex'),
});

/** A buffer posted on a queue; `value` is set once the device used it. */
interface Posted {
  promise: Promise<Buffer>;
  value?: Buffer;
}

async function within<T>(promise: Promise<T>, what: string, ms = 2000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A minimal driver on the real transport and queues: posts, transmits, and reads the control queue in order. */
class ConsoleBench {
  readonly rig: SimRig;
  private readonly queues = new Map<number, SplitQueue>();
  private controlPosted: Posted[] = [];
  private taken = 0;

  constructor(
    version: 1 | 2,
    readonly model: ConsoleModel,
    private readonly indices: number[],
  ) {
    this.rig = simRig(version, model);
    this.start();
  }

  /** §3.1.1 from the reset on: negotiate everything offered, set up `indices` (16 entries each), DRIVER_OK. */
  start(): bigint {
    const { transport, pool } = this.rig;
    // A live device is reset explicitly before it is negotiated again.
    if (transport.live) transport.reset();
    const features = transport.negotiate(ALL_FEATURES);
    this.queues.clear();
    this.controlPosted = [];
    this.taken = 0;
    for (const index of this.indices) {
      const queue = new SplitQueue({ index, size: 16, memory: pool, layout: transport.queueLayout, features });
      queue.attach(transport);
      this.queues.set(index, queue);
    }
    transport.driverOk();
    return features;
  }

  /** A device-writable buffer of `bytes` on `queue`. */
  receive(queue: number, bytes = 64): Posted {
    const region = this.rig.pool.allocate(bytes);
    const posted: Posted = { promise: Promise.resolve(Buffer.alloc(0)) };
    posted.promise = this.queue(queue)
      .submit({ writable: [{ region }] })
      .then((len) => (posted.value = Buffer.from(new Uint8Array(region.view, region.offset, len))));
    posted.promise.catch(() => undefined); // canceled by a reset or close in some tests
    return posted;
  }

  /** A device-readable buffer holding `data` on `queue`; resolves with the used len. */
  transmit(queue: number, data: Uint8Array): Promise<number> {
    const region = this.rig.pool.allocate(Math.max(data.length, 1));
    new Uint8Array(region.view, region.offset, data.length).set(data);
    return within(
      this.queue(queue).submit({ readable: [{ region, length: data.length }] }),
      `transmit on queue ${queue}`,
    );
  }

  /** A control message from the driver (control transmitq, queue 3). */
  control(id: number, event: number, value: number, extra?: Uint8Array): Promise<number> {
    return this.transmit(3, encodeConsoleControl(id, event, value, extra));
  }

  /** Posts `n` control receive buffers of `bytes` each (queue 2). */
  postControl(n: number, bytes = 64): void {
    for (let i = 0; i < n; i++) this.controlPosted.push(this.receive(2, bytes));
  }

  /** The next `n` control receive buffers in posting order, once the device filled them. */
  async takeControl(n: number): Promise<Msg[]> {
    const next = this.controlPosted.slice(this.taken, this.taken + n);
    if (next.length < n) throw new Error(`only ${next.length} control buffers posted and not taken`);
    this.taken += n;
    const buffers = await within(Promise.all(next.map((p) => p.promise)), `${n} control message(s)`);
    return buffers.map((b) => {
      const m = decodeConsoleControl(b);
      if (!m) throw new Error(`control buffer of ${b.length} bytes has no header`);
      return msg(m.id, m.event, m.value, m.extra);
    });
  }

  /** Control buffers posted, not taken, and filled already. */
  get filledControl(): number {
    return this.controlPosted.slice(this.taken).filter((p) => p.value !== undefined).length;
  }

  private queue(index: number): SplitQueue {
    const queue = this.queues.get(index);
    if (!queue) throw new Error(`queue ${index} is not set up`);
    return queue;
  }
}

describe.each([1, 2] as const)('ConsoleModel on a Version %i sim', (version) => {
  let bench: ConsoleBench | undefined;
  afterEach(() => {
    const violations = bench?.rig.close() ?? [];
    bench = undefined;
    expect(violations).toEqual([]);
  });
  const open = (options: ConsoleModelOptions, indices: number[]): ConsoleBench => {
    bench = new ConsoleBench(version, new ConsoleModel(options), indices);
    return bench;
  };

  test('without multiport nothing changes: two queues, no MULTIPORT, port 0 bytes flow at once, echo', async () => {
    const model = new ConsoleModel({ echo: true, size: { cols: 80, rows: 24 } });
    expect(model.features).toBe(feature(ConsoleFeature.SIZE));
    expect(model.queueSizes).toEqual([64, 64]);
    expect(new ConsoleModel().features).toBe(0n);
    const rig = simRig(version, model);
    bench = undefined;
    try {
      const features = rig.transport.negotiate(ALL_FEATURES);
      expect(hasFeature(features, ConsoleFeature.MULTIPORT)).toBe(false);
      expect(rig.transport.config.read32(ConsoleConfig.max_nr_ports)).toBe(0);
      expect(rig.transport.queueNumMax(2)).toBe(0);
      expect(rig.transport.queueNumMax(3)).toBe(0);
      expect(rig.transport.queueNumMax(1)).toBe(64);
    } finally {
      expect(rig.close()).toEqual([]);
    }

    const b = open({ echo: true }, [0, 1]);
    const first = b.receive(0);
    b.model.send(text('hi'));
    await expect(within(first.promise, 'receive')).resolves.toEqual(text('hi'));
    expect(await b.transmit(1, text('typed'))).toBe(0);
    expect(b.model.output).toEqual(text('typed'));
    expect(b.model.portOutput(0)).toEqual(text('typed'));
    const echoed = b.receive(0);
    await expect(within(echoed.promise, 'echo')).resolves.toEqual(text('typed'));
    expect(b.model.driverReady).toBe(false);
    expect(b.model.portAdded(0)).toBe(true);
    expect(b.model.guestConnected(0)).toBe(true);
    expect(b.model.controlLog).toEqual([]);
    expect(b.model.protocolErrors).toEqual([]);
    expect(() => b.model.addPort({ id: 1 })).toThrow(TypeError);
    expect(() => b.model.send(text('x'), 1)).toThrow(RangeError);
  });

  test('multiport: MULTIPORT offered, max_nr_ports in config, control queues sized apart from the data queues', () => {
    const model = new ConsoleModel({
      queueSize: 32,
      size: { cols: 1, rows: 2 },
      multiport: { maxPorts: 3, ports: [{ id: 0 }], controlQueueSize: 16 },
    });
    expect(model.features).toBe(feature(ConsoleFeature.MULTIPORT) | feature(ConsoleFeature.SIZE));
    expect(model.queueSizes).toEqual([32, 32, 16, 16, 32, 32, 32, 32]);
    expect(new ConsoleModel({ multiport: { maxPorts: 1, ports: [] } }).queueSizes).toEqual([64, 64, 32, 32]);
    const rig = simRig(version, model);
    try {
      const features = rig.transport.negotiate(ALL_FEATURES);
      expect(hasFeature(features, ConsoleFeature.MULTIPORT)).toBe(true);
      expect(rig.transport.config.read32(ConsoleConfig.max_nr_ports)).toBe(3);
      expect(rig.transport.config.read16(ConsoleConfig.cols)).toBe(1);
      expect([2, 3, 4, 7, 8].map((q) => rig.transport.queueNumMax(q))).toEqual([16, 16, 32, 32, 0]);
    } finally {
      expect(rig.close()).toEqual([]);
    }
  });

  test('nothing is sent before DEVICE_READY 1; then DEVICE_ADD for each port in the order given', async () => {
    const b = open({ multiport: { maxPorts: 4, ports: [{ id: 2 }, { id: 0 }] } }, [0, 1, 2, 3]);
    b.postControl(3);
    await turns(5);
    expect(b.model.postedControlReceives).toBe(3);
    expect(b.model.pendingControl).toBe(0);
    expect(await b.control(0, E.DEVICE_READY, 0)).toBe(0); // the driver failed: nothing happens
    await turns(5);
    expect(b.model.driverReady).toBe(false);
    expect(b.model.postedControlReceives).toBe(3);
    expect(b.filledControl).toBe(0);

    await b.control(0, E.DEVICE_READY, 1);
    expect(await b.takeControl(2)).toEqual([msg(2, E.DEVICE_ADD, 0), msg(0, E.DEVICE_ADD, 0)]);
    await turns(5);
    expect(b.filledControl).toBe(0); // one message per buffer, and only two were due
    expect(b.model.postedControlReceives).toBe(1);
    expect(b.model.driverReady).toBe(true);
    expect([0, 1, 2, 3].map((id) => b.model.portAdded(id))).toEqual([true, false, true, false]);
    expect(b.model.controlLog.map((m) => msg(m.id, m.event, m.value, m.extra))).toEqual([
      msg(0, E.DEVICE_READY, 0),
      msg(0, E.DEVICE_READY, 1),
    ]);
    expect(b.model.protocolErrors).toEqual([]);
  });

  test.each([
    ['without a terminator (the spec)', false, ''],
    ['with a NUL terminator (QEMU 7.2)', true, '00'],
  ])(
    'PORT_READY is answered with CONSOLE_PORT, PORT_NAME, PORT_OPEN in that order, %s',
    async (_name, nameTerminator, tail) => {
      const ports = [
        { id: 0, console: true, name: 'console0' },
        { id: 1, name: 'org.example.ünï' },
        { id: 2, hostConnected: false },
        { id: 3 },
      ];
      const b = open({ multiport: { maxPorts: 4, ports, nameTerminator } }, [0, 1, 2, 3]);
      b.postControl(12);
      await b.control(0, E.DEVICE_READY, 1);
      expect(await b.takeControl(4)).toEqual([0, 1, 2, 3].map((id) => msg(id, E.DEVICE_ADD, 0)));

      await b.control(0, E.PORT_READY, 1);
      const name0 = Buffer.from(text('console0').toString('hex') + tail, 'hex');
      expect(await b.takeControl(3)).toEqual([
        msg(0, E.CONSOLE_PORT, 1),
        msg(0, E.PORT_NAME, 1, name0),
        msg(0, E.PORT_OPEN, 1),
      ]);

      await b.control(1, E.PORT_READY, 1);
      const name1 = Buffer.from(text('org.example.ünï').toString('hex') + tail, 'hex');
      expect(await b.takeControl(2)).toEqual([msg(1, E.PORT_NAME, 1, name1), msg(1, E.PORT_OPEN, 1)]);

      // No host side connected, no name, no console: PORT_READY gets no answer.
      await b.control(2, E.PORT_READY, 1);
      // PORT_READY 0: the driver could not set the port up.
      await b.control(3, E.PORT_READY, 0);
      await turns(5);
      expect(b.model.pendingControl).toBe(0);
      expect(b.filledControl).toBe(0);
      expect(b.model.failedPorts).toEqual([3]);
      expect(b.model.protocolErrors).toEqual([]);
    },
  );

  test('bytes for a port wait until the driver opens it with PORT_OPEN 1, and wait again once it closes', async () => {
    const b = open({ multiport: { maxPorts: 2, ports: [{ id: 0 }, { id: 1 }] } }, [0, 1, 2, 3, 4, 5]);
    b.postControl(8);
    const rx1 = b.receive(4);
    const rx0 = b.receive(0);
    b.model.send(text('early'), 1);
    b.model.send(text('zero'));
    await turns(5);
    expect(b.model.postedReceivesOf(1)).toBe(1);
    expect(b.model.undeliveredOf(1)).toBe(5);
    expect(b.model.postedReceives).toBe(1);
    expect(b.model.undelivered).toBe(4);

    await b.control(0, E.DEVICE_READY, 1);
    await b.control(1, E.PORT_READY, 1);
    expect(await b.takeControl(3)).toEqual([msg(0, E.DEVICE_ADD, 0), msg(1, E.DEVICE_ADD, 0), msg(1, E.PORT_OPEN, 1)]);
    await turns(5);
    // Added and host-connected, but the guest has not opened it: still waiting.
    expect(b.model.guestConnected(1)).toBe(false);
    expect(rx1.value).toBeUndefined();
    expect(b.model.undeliveredOf(1)).toBe(5);

    await b.control(1, E.PORT_OPEN, 1);
    expect(b.model.guestConnected(1)).toBe(true);
    await expect(within(rx1.promise, 'port 1 receive')).resolves.toEqual(text('early'));
    expect(b.model.undeliveredOf(1)).toBe(0);
    expect(rx0.value).toBeUndefined(); // port 0 is not open yet
    expect(b.model.undelivered).toBe(4);

    await b.control(0, E.PORT_OPEN, 1);
    await expect(within(rx0.promise, 'port 0 receive')).resolves.toEqual(text('zero'));

    await b.control(1, E.PORT_OPEN, 0);
    expect(b.model.guestConnected(1)).toBe(false);
    const late = b.receive(4);
    b.model.send(text('late'), 1);
    await turns(5);
    expect(late.value).toBeUndefined();
    expect(b.model.undeliveredOf(1)).toBe(4);
    expect(b.model.postedReceivesOf(1)).toBe(1);
    expect(b.model.protocolErrors).toEqual([]);
  });

  test('transmitted bytes are kept and echoed per port (the port setting over the model default)', async () => {
    const b = open(
      { echo: true, multiport: { maxPorts: 3, ports: [{ id: 0, echo: false }, { id: 1 }, { id: 2, echo: false }] } },
      [0, 1, 2, 3, 4, 5, 6, 7],
    );
    b.postControl(8);
    await b.control(0, E.DEVICE_READY, 1);
    await b.takeControl(3);
    for (const id of [0, 1, 2]) await b.control(id, E.PORT_OPEN, 1);
    const rx = [b.receive(0), b.receive(4), b.receive(6)];
    const two = b.model.outputOf(5, 2);
    expect(await b.transmit(1, text('zero'))).toBe(0);
    expect(await b.transmit(5, text('one'))).toBe(0);
    expect(await b.transmit(7, text('two!!'))).toBe(0);
    await expect(two).resolves.toEqual(text('two!!'));
    expect(b.model.output).toEqual(text('zero'));
    expect([0, 1, 2].map((id) => b.model.portOutput(id).toString())).toEqual(['zero', 'one', 'two!!']);
    await expect(b.model.outputOf(3, 1)).resolves.toEqual(text('one'));
    await expect(within(rx[1].promise, 'port 1 echo')).resolves.toEqual(text('one'));
    await turns(5);
    expect(rx[0].value).toBeUndefined();
    expect(rx[2].value).toBeUndefined();
    expect([0, 1, 2].map((id) => b.model.undeliveredOf(id))).toEqual([0, 0, 0]);
    expect(b.model.protocolErrors).toEqual([]);
  });

  test('control messages wait while no control receive buffer is posted and arrive in order later', async () => {
    const b = open(
      { multiport: { maxPorts: 4, ports: [{ id: 0, console: true }, { id: 3 }, { id: 1 }] } },
      [0, 1, 2, 3],
    );
    await b.control(0, E.DEVICE_READY, 1);
    await b.control(0, E.PORT_READY, 1);
    b.model.sendControl(7, 99, 5);
    await turns(5);
    expect(b.model.pendingControl).toBe(6);
    b.postControl(1);
    expect(await b.takeControl(1)).toEqual([msg(0, E.DEVICE_ADD, 0)]);
    expect(b.model.pendingControl).toBe(5);
    b.postControl(6);
    expect(await b.takeControl(5)).toEqual([
      msg(3, E.DEVICE_ADD, 0),
      msg(1, E.DEVICE_ADD, 0),
      msg(0, E.CONSOLE_PORT, 1),
      msg(0, E.PORT_OPEN, 1),
      msg(7, 99, 5),
    ]);
    await turns(5);
    expect(b.model.pendingControl).toBe(0);
    expect(b.model.postedControlReceives).toBe(1);
    expect(b.filledControl).toBe(0);
  });

  test('a message longer than the control receive buffer is cut to fit and recorded as truncated', async () => {
    const b = open({ multiport: { maxPorts: 2, ports: [{ id: 1, name: 'a-rather-long-port-name' }] } }, [0, 1, 2, 3]);
    b.postControl(1);
    await b.control(0, E.DEVICE_READY, 1);
    await b.takeControl(1);
    b.postControl(1, 12);
    b.postControl(1);
    await b.control(1, E.PORT_READY, 1);
    expect(await b.takeControl(2)).toEqual([msg(1, E.PORT_NAME, 1, text('a-ra')), msg(1, E.PORT_OPEN, 1)]);
    expect(b.model.protocolErrors).toHaveLength(1);
    expect(b.model.protocolErrors[0]).toMatch(
      /^truncated: PORT_NAME \(port 1\) is 31 bytes, the control receive buffer holds 12$/,
    );
  });

  test('hot-plug and host events: addPort, resizePort, setHostConnected, removePort, sendControl', async () => {
    const b = open({ multiport: { maxPorts: 4, ports: [{ id: 0 }] } }, [0, 1, 2, 3, 4, 5]);
    b.postControl(16);
    expect(b.model.addPort({ id: 3, name: 'late' })).toBe(false); // before DEVICE_READY: announced with the others
    await turns(5);
    expect(b.filledControl).toBe(0);
    await b.control(0, E.DEVICE_READY, 1);
    expect(await b.takeControl(2)).toEqual([msg(0, E.DEVICE_ADD, 0), msg(3, E.DEVICE_ADD, 0)]);

    expect(b.model.addPort({ id: 1, hostConnected: true })).toBe(true);
    expect(await b.takeControl(1)).toEqual([msg(1, E.DEVICE_ADD, 0)]);
    expect(() => b.model.addPort({ id: 4 })).toThrow(RangeError);
    expect(() => b.model.addPort({ id: 1 })).toThrow(RangeError);
    await b.control(1, E.PORT_READY, 1);
    expect(await b.takeControl(1)).toEqual([msg(1, E.PORT_OPEN, 1)]);
    await b.control(1, E.PORT_OPEN, 1);

    expect(b.model.resizePort(1, { cols: 132, rows: 43 })).toBe(true);
    const [resize] = await b.takeControl(1);
    expect(resize).toEqual(msg(1, E.RESIZE, 0, Uint8Array.of(132, 0, 43, 0)));
    expect(b.model.setHostConnected(1, false)).toBe(true);
    expect(b.model.setHostConnected(1, true)).toBe(true);
    expect(await b.takeControl(2)).toEqual([msg(1, E.PORT_OPEN, 0), msg(1, E.PORT_OPEN, 1)]);

    b.model.send(text('bye'), 1); // no receive buffer posted on port 1
    expect(b.model.undeliveredOf(1)).toBe(3);
    expect(b.model.removePort(1)).toBe(true);
    expect(await b.takeControl(1)).toEqual([msg(1, E.DEVICE_REMOVE, 0)]);
    expect(b.model.portAdded(1)).toBe(false);
    expect(b.model.guestConnected(1)).toBe(false);
    expect(b.model.undeliveredOf(1)).toBe(0);
    expect(() => b.model.removePort(1)).toThrow(RangeError);
    expect(() => b.model.resizePort(2, { cols: 1, rows: 1 })).toThrow(RangeError);

    b.model.sendControl(1000, 77, 0xbeef, text('xyz'));
    expect(await b.takeControl(1)).toEqual([msg(1000, 77, 0xbeef, text('xyz'))]);
    expect(b.model.protocolErrors).toEqual([]);
  });

  test('protocol errors: short message, PORT_READY/PORT_OPEN for a port not added, unknown, device-only', async () => {
    const b = open({ multiport: { maxPorts: 4, ports: [{ id: 0 }] } }, [0, 1, 2, 3, 6, 7]);
    b.postControl(4);
    expect(await b.transmit(3, Uint8Array.of(1, 2, 3, 4))).toBe(0);
    expect(await b.control(0, E.PORT_READY, 1)).toBe(0); // before DEVICE_READY: nothing is added
    await b.control(0, E.DEVICE_READY, 1);
    expect(await b.takeControl(1)).toEqual([msg(0, E.DEVICE_ADD, 0)]);
    await b.control(2, E.PORT_READY, 1);
    await b.control(2, E.PORT_OPEN, 1);
    await b.control(0, 42, 1);
    await b.control(0, E.DEVICE_ADD, 0);
    expect(await b.transmit(7, text('stray'))).toBe(0);
    expect(b.model.protocolErrors).toEqual([
      'short control message: 4 bytes, the header is 8 (§5.3.6.2)',
      'PORT_READY (port 0): port 0 is not added',
      'PORT_READY (port 2): port 2 is not added',
      'PORT_OPEN (port 2): port 2 is not added',
      'unknown control event 42 (port 0)',
      'DEVICE_ADD (port 0) is sent by the device, not the driver (§5.3.6.2)',
      'transmit on port 2, which is not added',
    ]);
    // The short one is not in the log; every decoded one is, in order.
    expect(b.model.controlLog.map((m) => [m.id, m.event, m.value])).toEqual([
      [0, E.PORT_READY, 1],
      [0, E.DEVICE_READY, 1],
      [2, E.PORT_READY, 1],
      [2, E.PORT_OPEN, 1],
      [0, 42, 1],
      [0, E.DEVICE_ADD, 0],
    ]);
    expect(b.model.guestConnected(2)).toBe(false);
    await turns(5);
    expect(b.filledControl).toBe(0); // none of them was answered
    expect(b.model.pendingControl).toBe(0);
  });

  test('reset drops held buffers and pending messages, un-adds every port, keeps the port list and logs', async () => {
    const b = open({ multiport: { maxPorts: 3, ports: [{ id: 0 }, { id: 1 }] } }, [0, 1, 2, 3, 4, 5, 6, 7]);
    b.postControl(2);
    await b.control(0, E.DEVICE_READY, 1);
    await b.takeControl(2);
    b.model.addPort({ id: 2 }); // pending: no control buffer posted
    b.model.removePort(0); // pending too
    await b.control(1, E.PORT_OPEN, 1);
    b.model.send(text('waiting'), 1);
    b.receive(6);
    await turns(5);
    expect(b.model.pendingControl).toBe(2);
    expect(b.model.undeliveredOf(1)).toBe(7);
    expect(b.model.postedReceivesOf(2)).toBe(1);
    expect(b.model.guestConnected(1)).toBe(true);
    const logged = b.model.controlLog.length;

    b.start(); // negotiate() resets the device first
    expect(b.model.driverReady).toBe(false);
    expect([0, 1, 2].map((id) => [b.model.portAdded(id), b.model.guestConnected(id)])).toEqual([
      [false, false],
      [false, false],
      [false, false],
    ]);
    expect(b.model.pendingControl).toBe(0);
    expect(b.model.postedControlReceives).toBe(0);
    expect(b.model.postedReceivesOf(2)).toBe(0);
    expect(b.model.undeliveredOf(1)).toBe(0);
    expect(b.model.controlLog).toHaveLength(logged);

    // A driver starting again sees the same ports: 1, then 2 added by addPort, not the removed 0.
    b.postControl(3);
    await b.control(0, E.DEVICE_READY, 1);
    expect(await b.takeControl(2)).toEqual([msg(1, E.DEVICE_ADD, 0), msg(2, E.DEVICE_ADD, 0)]);
    expect(b.model.driverReady).toBe(true);
    expect(b.model.controlLog).toHaveLength(logged + 1);
    expect(b.model.protocolErrors).toEqual([]);
  });

  if (version === 2) {
    test('QueueReset of the control receiveq drops the buffers it held; messages then wait', async () => {
      const b = open({ multiport: { maxPorts: 2, ports: [{ id: 0 }, { id: 1 }] } }, [0, 1, 2, 3]);
      expect(b.rig.transport.hasFeature(FeatureBit.RING_RESET)).toBe(true);
      b.postControl(2);
      await turns(5);
      expect(b.model.postedControlReceives).toBe(2);
      b.rig.transport.resetQueue(2);
      expect(b.model.postedControlReceives).toBe(0);
      await b.control(0, E.DEVICE_READY, 1);
      expect(b.model.pendingControl).toBe(2);
    });
  }
});

describe('ConsoleModel options', () => {
  test('bad multiport options are RangeErrors', () => {
    expect(() => new ConsoleModel({ multiport: { maxPorts: 0, ports: [] } })).toThrow(RangeError);
    expect(() => new ConsoleModel({ multiport: { maxPorts: 1.5, ports: [] } })).toThrow(RangeError);
    expect(() => new ConsoleModel({ multiport: { maxPorts: 2, ports: [{ id: 2 }] } })).toThrow(RangeError);
    expect(() => new ConsoleModel({ multiport: { maxPorts: 2, ports: [{ id: 1 }, { id: 1 }] } })).toThrow(RangeError);
    const model = new ConsoleModel({ multiport: { maxPorts: 2, ports: [{ id: 0 }] } });
    expect(() => model.send(text('x'), 2)).toThrow(RangeError);
    expect(() => model.portOutput(-1)).toThrow(RangeError);
    expect(() => model.resizePort(0, { cols: 70000, rows: 1 })).toThrow(RangeError);
  });
});
