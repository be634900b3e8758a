/** VirtioConsole with MULTIPORT (virtio 1.2 §5.3.6.2) on the sim, both versions. */
import { VirtioConsole, type VirtioConsoleOptions } from '../../lib/devices';
import { PortError } from '../../lib/errors';
import { ConsoleModel, type ConsoleModelOptions } from '../../lib/sim';
import { ConsoleControlEvent as E, ConsoleFeature, hasFeature } from '../../lib/spec';
import { consoleMultiportContract, type ConsoleSubject } from '../support/contracts/console-contract';
import { turns, type SimRig, SIM_VARIANTS, driverOnSim } from '../support/sim-rig';

const ECHO_PORT = 'org.virtio-mmio.echo';
const PORTS = [
  { id: 0, console: true },
  { id: 1, name: ECHO_PORT },
  { id: 3, name: 'second' },
];

describe.each(SIM_VARIANTS)('virtio-console MULTIPORT on a %s sim', (_label, version) => {
  const violations: unknown[] = [];
  afterEach(() => expect(violations.splice(0)).toEqual([]));

  /** A console on a multiport model; closes both at the end of `body`. */
  async function withMultiport(
    body: (console: VirtioConsole, model: ConsoleModel, rig: SimRig) => Promise<void>,
    modelOptions: Partial<ConsoleModelOptions> = {},
    consoleOptions: Partial<VirtioConsoleOptions> = {},
  ): Promise<void> {
    const model = new ConsoleModel({ echo: true, multiport: { maxPorts: 8, ports: PORTS }, ...modelOptions });
    const {
      driver: console,
      rig,
      close,
    } = driverOnSim(
      version,
      model,
      (r) => VirtioConsole.open(r.transport, { memory: r.pool, ...consoleOptions }),
      violations,
    );
    try {
      await body(console, model, rig);
    } finally {
      close();
    }
  }

  const subject: ConsoleSubject = {
    label: `multiport sim v${version}`,
    async open(options) {
      const model = new ConsoleModel({ echo: true, multiport: { maxPorts: 8, ports: PORTS } });
      const { driver: console, close } = driverOnSim(
        version,
        model,
        (r) => VirtioConsole.open(r.transport, { memory: r.pool, ...options }),
        violations,
      );
      return { console, stream: console.stream, close };
    },
  };
  const expected = {
    ports: [
      { id: 0, isConsole: true },
      { id: 1, name: ECHO_PORT, isConsole: false },
      { id: 3, name: 'second', isConsole: false },
    ],
    echoPort: ECHO_PORT,
  };
  test.each(consoleMultiportContract(subject, expected).map((c) => [c.name, c] as const))('%s', async (_n, c) => {
    await c.run();
  });

  test('the driver speaks first, in order: DEVICE_READY, PORT_READY per port, PORT_OPEN 1 for the console port', () =>
    withMultiport(async (console, model) => {
      await console.waitForPort('second', { timeoutMs: 2000 });
      await turns(5);
      const log = model.controlLog.map((m) => [m.id, m.event, m.value]);
      expect(log[0]).toEqual([0, E.DEVICE_READY, 1]);
      for (const { id } of PORTS) expect(log).toContainEqual([id, E.PORT_READY, 1]);
      // §5.3.6.2: a console port MUST be answered with PORT_OPEN 1.
      const ready0 = log.findIndex((m) => m[0] === 0 && m[1] === E.PORT_READY);
      expect(log.findIndex((m, i) => i > ready0 && m[0] === 0 && m[1] === E.PORT_OPEN && m[2] === 1)).toBeGreaterThan(
        ready0,
      );
      // Ports nobody opened are not opened.
      expect(log).not.toContainEqual([3, E.PORT_OPEN, 1]);
      expect(model.protocolErrors).toEqual([]);
      expect(console.multiport).toBe(true);
      expect(hasFeature(console.features, ConsoleFeature.MULTIPORT)).toBe(true);
    }));

  test('the device sends nothing to a port the driver has not opened; open() lets it through', () =>
    withMultiport(async (console, model) => {
      const port = await console.waitForPort('second', { timeoutMs: 2000 });
      model.send(Buffer.from('early'), 3);
      await turns(5);
      expect(model.undeliveredOf(3)).toBe(5);
      expect(port.stream).toBeUndefined();
      const stream = port.open();
      const got = await new Promise<Buffer>((resolve) => stream.once('data', resolve));
      expect(got.toString()).toBe('early');
      expect(model.guestConnected(3)).toBe(true);
    }));

  test('hot-plug: a port added later is announced, and a removed port ends its stream and refuses writes', () =>
    withMultiport(async (console, model) => {
      await console.waitForPort('second', { timeoutMs: 2000 });
      const added = new Promise((resolve) => console.events.once('add', resolve));
      expect(model.addPort({ id: 5, name: 'late' })).toBe(true);
      const port = await console.waitForPort('late', { timeoutMs: 2000 });
      expect(await added).toBe(port);
      const stream = port.open();
      const ended = new Promise((resolve) => stream.once('end', resolve));
      stream.resume();
      const removed = new Promise((resolve) => port.once('remove', resolve));
      expect(model.removePort(5)).toBe(true);
      await removed;
      await ended;
      expect(port.added).toBe(false);
      expect(console.port(5)).toBeUndefined();
      expect(() => port.open()).toThrow(expect.objectContaining({ code: PortError.ABSENT, port: 5 }));
    }));

  test('the host end opening and closing, and RESIZE, reach the port as events', () =>
    withMultiport(async (console, model) => {
      const port = await console.waitForPort('second', { timeoutMs: 2000 });
      await turns(5);
      expect(port.hostConnected).toBe(true);
      const host = new Promise((resolve) => port.once('host', resolve));
      model.setHostConnected(3, false);
      expect(await host).toBe(false);
      expect(port.hostConnected).toBe(false);
      const resized = new Promise((resolve) => port.once('resize', resolve));
      model.resizePort(3, { cols: 100, rows: 30 });
      expect(await resized).toEqual({ cols: 100, rows: 30 });
      expect(port.size).toEqual({ cols: 100, rows: 30 });
    }));

  test('a port beyond maxPorts is refused with PORT_READY 0; nonsense from the device is counted and ignored', () =>
    withMultiport(
      async (console, model) => {
        await console.waitForPort('second', { timeoutMs: 2000 });
        model.sendControl(6, E.DEVICE_ADD, 0); // < the device's max_nr_ports 8, ≥ our maxPorts 4
        model.sendControl(2, E.PORT_NAME, 0, Buffer.from('never added'));
        model.sendControl(1, 99, 0);
        model.sendControl(1, E.DEVICE_ADD, 0); // already added
        model.sendControl(3, E.RESIZE, 0, Buffer.from([1])); // size cut short
        model.sendControl(0xffffffff, E.DEVICE_REMOVE, 0);
        await turns(10);
        expect(model.controlLog.map((m) => [m.id, m.event, m.value])).toContainEqual([6, E.PORT_READY, 0]);
        expect(console.ignoredControlMessages).toBe(6);
        expect(console.ports.map((p) => p.id)).toEqual([0, 1, 3]);
        expect(console.port(2)).toBeUndefined();
        expect(console.port(1)?.name).toBe(ECHO_PORT);
      },
      {},
      { maxPorts: 4 },
    ));

  test('maxPorts bounds the queues set up; a NUL after the name (QEMU) is not part of it', () =>
    withMultiport(
      async (console, _model, rig) => {
        const port = await console.waitForPort(ECHO_PORT, { timeoutMs: 2000 });
        expect(port.name).toBe(ECHO_PORT);
        // Port 3 has no queues with maxPorts 2: refused.
        await turns(10);
        expect(console.ports.map((p) => p.id)).toEqual([0, 1]);
        expect(rig.sim.queueState(4).ready).toBe(true);
        expect(rig.sim.queueState(5).ready).toBe(true);
        expect(rig.sim.queueState(6).ready).toBe(false);
      },
      { multiport: { maxPorts: 8, ports: PORTS, nameTerminator: true } },
      { maxPorts: 2 },
    ));

  test('waitForPort: times out with NOT_FOUND, honours an AbortSignal, and rejects when the console closes', () =>
    withMultiport(async (console) => {
      await expect(console.waitForPort('nobody', { timeoutMs: 50 })).rejects.toMatchObject({
        code: PortError.NOT_FOUND,
      });
      const controller = new AbortController();
      const aborted = console.waitForPort('nobody', { signal: controller.signal });
      controller.abort(new Error('stop'));
      await expect(aborted).rejects.toMatchObject({ code: 'ABORT_ERR' });
      const closing = console.waitForPort('nobody');
      console.close();
      await expect(closing).rejects.toMatchObject({ code: PortError.ABSENT });
    }));

  test('without MULTIPORT (multiport: false) only port 0 exists', () =>
    withMultiport(
      async (console, model) => {
        expect(console.multiport).toBe(false);
        expect(console.ports.map((p) => p.id)).toEqual([0]);
        await expect(console.waitForPort(1)).rejects.toMatchObject({ code: PortError.NO_MULTIPORT });
        await expect(console.waitForPort(0)).resolves.toBe(console.port(0));
        expect(model.controlLog).toEqual([]);
      },
      { multiport: undefined },
      { multiport: false },
    ));

  test('closing the console frees every port buffer and control buffer back to the pool', () =>
    withMultiport(async (console, _model, rig) => {
      const port = await console.waitForPort('second', { timeoutMs: 2000 });
      const stream = port.open();
      stream.write(Buffer.alloc(10_000, 7));
      await turns(5);
      expect(rig.pool.stats().regions).toBeGreaterThan(0);
      console.close();
      expect(rig.pool.stats().regions).toBe(0);
      expect(stream.destroyed).toBe(true);
    }));
});
