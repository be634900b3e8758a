/** The virtio-console contract on the sim, for both versions. */
import { VirtioConsole } from '../../lib/devices';
import { ConsoleModel } from '../../lib/sim';
import { consoleContract, consoleEchoContract, type ConsoleSubject } from '../support/contracts/console-contract';
import { simRig, turns, SIM_VARIANTS, driverOnSim } from '../support/sim-rig';

describe.each(SIM_VARIANTS)('virtio-console on a %s sim', (_label, version) => {
  const violations: unknown[] = [];
  const subject: ConsoleSubject = {
    label: `sim v${version}`,
    async open(options) {
      const model = new ConsoleModel();
      const { driver: console, close } = driverOnSim(
        version,
        model,
        (r) => VirtioConsole.open(r.transport, { memory: r.pool, ...options }),
        violations,
      );
      return {
        console,
        stream: console.stream,
        peer: { send: (data) => model.send(data), received: (bytes) => model.outputOf(bytes) },
        close,
      };
    },
  };
  afterEach(() => expect(violations.splice(0)).toEqual([]));

  test.each(consoleContract(subject).map((c) => [c.name, c] as const))('%s', async (_n, c) => {
    await c.run();
  });

  const echoing: ConsoleSubject = {
    label: `echoing sim v${version}`,
    async open(options) {
      const { driver: console, close } = driverOnSim(
        version,
        new ConsoleModel({ echo: true }),
        (r) => VirtioConsole.open(r.transport, { memory: r.pool, ...options }),
        violations,
      );
      return { console, stream: console.stream, close };
    },
  };
  test.each(consoleEchoContract(echoing).map((c) => [c.name, c] as const))('echo: %s', async (_n, c) => {
    await c.run();
  });

  test('the size comes from config, and a config change emits resize', async () => {
    const model = new ConsoleModel({ size: { cols: 80, rows: 25 } });
    const rig = simRig(version, model);
    const console = VirtioConsole.open(rig.transport, { memory: rig.pool });
    try {
      expect(console.size).toEqual({ cols: 80, rows: 25 });
      const resized = new Promise((resolve) => console.stream.once('resize', resolve));
      rig.sim.raiseConfigChange(() => model.setSize({ cols: 132, rows: 43 }));
      await expect(resized).resolves.toEqual({ cols: 132, rows: 43 });
    } finally {
      console.close();
      violations.push(...rig.close());
    }
  });

  test('receive buffers stay posted while idle, and are held back while the reader is full', async () => {
    const model = new ConsoleModel();
    const rig = simRig(version, model);
    const console = VirtioConsole.open(rig.transport, { memory: rig.pool, receiveBuffers: 4, receiveBufferBytes: 256 });
    try {
      await turns();
      expect(model.postedReceives).toBe(4);
      console.stream.pause();
      model.send(Buffer.alloc(64 * 1024, 1)); // far more than the stream's buffer
      await turns(10);
      expect(model.postedReceives).toBe(0);
      expect(model.undelivered).toBeGreaterThan(0); // the device waits: nothing is dropped
    } finally {
      console.close();
      violations.push(...rig.close());
    }
  });
});
