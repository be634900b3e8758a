/** InterruptDispatch on its own: fake registers, a fake interrupt line, plain endpoints. */
import { DeviceBrokenError, TransportError } from '../../lib/errors';
import type { InterruptSource } from '../../lib/platform';
import { DeviceStatus, MmioInterrupt } from '../../lib/spec';
import { InterruptDispatch, type InterruptRegisters } from '../../lib/transport/interrupt-dispatch';
import type { QueueEndpoint, TransportStats } from '../../lib/transport';

/** Registers whose InterruptStatus and Status the test sets; every access is logged. */
class FakeRegisters implements InterruptRegisters {
  interruptStatus = 0;
  status = DeviceStatus.DRIVER_OK;
  readonly log: string[] = [];
  readInterruptStatus(): number {
    this.log.push('read InterruptStatus');
    return this.interruptStatus;
  }
  ackInterrupt(bits: number): void {
    this.log.push(`ack ${bits}`);
  }
  readStatus(): number {
    this.log.push('read Status');
    return this.status;
  }
}

/** An interrupt line that counts ref/unref and hands its listeners to the test. */
class FakeLine {
  closed = false;
  listening = false;
  reffed = true;
  refs = 0;
  unrefs = 0;
  unlistens = 0;
  fire?: () => void;
  lose?: (error: Error) => void;
  listen(onInterrupt: () => void, onError: (error: Error) => void): void {
    this.listening = true;
    this.fire = onInterrupt;
    this.lose = onError;
  }
  unlisten(): void {
    this.listening = false;
    this.unlistens++;
  }
  ref(): void {
    this.reffed = true;
    this.refs++;
  }
  unref(): void {
    this.reffed = false;
    this.unrefs++;
  }
  /** Logged into the registers' log when the test gives one (the order against the register accesses). */
  log?: string[];
  acknowledged(): void {
    this.log?.push('line acknowledged');
  }
}

class FakeEndpoint implements QueueEndpoint {
  used = 0;
  settles = 0;
  readonly stats = { completed: 0 };
  onUsedBuffer(): number {
    this.used++;
    this.stats.completed += this.settles;
    return this.settles;
  }
  detach(): void {}
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function setup(options: { stormLimit?: number; line?: boolean } = {}) {
  const registers = new FakeRegisters();
  const line = new FakeLine();
  const device = { label: 'fake', live: true, handleInterrupt: (): void => dispatch.handle() };
  const endpoints = new Map<number, QueueEndpoint>();
  const configListeners = new Set<() => void>();
  const stats: TransportStats = {
    interrupts: 0,
    spuriousInterrupts: 0,
    unknownInterruptBits: 0,
    ignoredInterrupts: 0,
    configChanges: 0,
  };
  const failures: Error[] = [];
  const dispatch = new InterruptDispatch({
    device,
    registers,
    source: options.line === false ? undefined : (line as unknown as InterruptSource),
    endpoints,
    configListeners,
    stats,
    stormLimit: options.stormLimit ?? 10_000,
    fail: (error) => failures.push(error),
  });
  return { dispatch, registers, line, device, endpoints, configListeners, stats, failures };
}

describe('InterruptDispatch', () => {
  test('acknowledges exactly the defined bits read; used buffers to every queue, config changes to listeners', () => {
    const { dispatch, registers, endpoints, configListeners, stats } = setup();
    const a = new FakeEndpoint();
    const b = new FakeEndpoint();
    endpoints.set(0, a).set(3, b);
    let changes = 0;
    configListeners.add(() => changes++);
    registers.interruptStatus = MmioInterrupt.VRING | MmioInterrupt.CONFIG | 0x10;
    dispatch.handle();
    expect(registers.log).toEqual([
      'read InterruptStatus',
      `ack ${MmioInterrupt.VRING | MmioInterrupt.CONFIG}`,
      'read Status',
    ]);
    expect([a.used, b.used, changes]).toEqual([1, 1, 1]);
    expect(stats).toEqual({
      interrupts: 1,
      spuriousInterrupts: 0,
      unknownInterruptBits: 1,
      ignoredInterrupts: 0,
      configChanges: 1,
    });

    registers.log.length = 0;
    registers.interruptStatus = MmioInterrupt.VRING;
    dispatch.handle();
    expect(registers.log).toEqual(['read InterruptStatus', `ack ${MmioInterrupt.VRING}`]);
    expect([a.used, b.used, changes]).toEqual([2, 2, 1]);
  });

  test('the line hears acknowledged() after the InterruptACK write, before any used buffer is dispatched', () => {
    const { dispatch, registers, endpoints, line } = setup();
    line.log = registers.log;
    const endpoint = new FakeEndpoint();
    endpoint.onUsedBuffer = (): number => {
      registers.log.push('used buffers');
      return 0;
    };
    endpoints.set(0, endpoint);
    registers.interruptStatus = MmioInterrupt.VRING;
    dispatch.handle();
    expect(registers.log).toEqual([
      'read InterruptStatus',
      `ack ${MmioInterrupt.VRING}`,
      'line acknowledged',
      'used buffers',
    ]);
    // Nothing acknowledged (spurious): the line is not told; it re-arms when the listener returns.
    registers.log.length = 0;
    registers.interruptStatus = 0;
    dispatch.handle();
    expect(registers.log).toEqual(['read InterruptStatus']);
  });

  test('a wake-up with no defined bit is spurious: counted, not acknowledged; unknown bits never acknowledged', () => {
    const { dispatch, registers, stats } = setup();
    dispatch.handle();
    registers.interruptStatus = 0x80;
    dispatch.handle();
    expect(registers.log).toEqual(['read InterruptStatus', 'read InterruptStatus']);
    expect(stats).toMatchObject({ interrupts: 0, spuriousInterrupts: 2, unknownInterruptBits: 1 });
  });

  test('while the device is not live nothing is read: the interrupt is counted as ignored', () => {
    const { dispatch, registers, device, stats } = setup();
    device.live = false;
    registers.interruptStatus = MmioInterrupt.VRING;
    dispatch.handle();
    expect(registers.log).toEqual([]);
    expect(stats.ignoredInterrupts).toBe(1);
  });

  test('DEVICE_NEEDS_RESET with a config change fails the device instead of telling the listeners', () => {
    const { dispatch, registers, configListeners, failures } = setup();
    let changes = 0;
    configListeners.add(() => changes++);
    registers.status |= DeviceStatus.DEVICE_NEEDS_RESET;
    registers.interruptStatus = MmioInterrupt.CONFIG;
    dispatch.handle();
    expect(changes).toBe(0);
    expect(failures).toEqual([expect.objectContaining({ reason: 'needs-reset' })]);
    expect(failures[0]).toBeInstanceOf(DeviceBrokenError);
  });

  test('a listener that takes the device out of live ends the dispatch: no storm counting after it', () => {
    const { dispatch, registers, device, configListeners, failures } = setup({ stormLimit: 1 });
    configListeners.add(() => {
      device.live = false;
    });
    registers.interruptStatus = MmioInterrupt.CONFIG;
    dispatch.handle();
    expect(failures).toEqual([]);
  });

  test('stormLimit interrupts in a row with no work fail the device once; any completion restarts the count', () => {
    const { dispatch, registers, endpoints, failures } = setup({ stormLimit: 3 });
    const queue = new FakeEndpoint();
    endpoints.set(0, queue);
    dispatch.handle();
    dispatch.handle();
    queue.stats.completed++; // completed by polling, between two interrupts
    dispatch.handle();
    dispatch.handle();
    expect(failures).toEqual([]);
    // A config change is dispatched, but is no work.
    registers.interruptStatus = MmioInterrupt.CONFIG;
    dispatch.handle();
    expect(failures).toEqual([expect.objectContaining({ reason: 'interrupt-storm' })]);
    expect(failures[0].message).toMatch(/fake: 3 interrupts in a row found no work/);

    // Used buffers that settle requests are work: the count starts again.
    dispatch.clearIdle();
    queue.settles = 1;
    registers.interruptStatus = MmioInterrupt.VRING;
    for (let i = 0; i < 10; i++) dispatch.handle();
    expect(failures).toHaveLength(1);
  });

  test('start() listens once, refuses a line another listens to, leaves the line unref’d while nothing is busy', () => {
    const { dispatch, registers, line, failures, device } = setup();
    // The line's wake-ups go through the device's public handleInterrupt() (what a profiler wraps).
    let viaDevice = 0;
    const handle = device.handleInterrupt;
    device.handleInterrupt = () => {
      viaDevice++;
      handle();
    };
    dispatch.start();
    dispatch.start();
    expect(line.listening).toBe(true);
    expect(line.unrefs).toBe(1);
    registers.interruptStatus = MmioInterrupt.VRING;
    line.fire?.();
    expect(registers.log).toEqual(['read InterruptStatus', `ack ${MmioInterrupt.VRING}`]);
    expect(viaDevice).toBe(1);
    const lost = new Error('line lost');
    line.lose?.(lost);
    expect(failures).toEqual([lost]);
    dispatch.stop();
    dispatch.stop();
    expect(line.unlistens).toBe(1);

    const other = setup();
    other.line.listening = true;
    expect(() => other.dispatch.start()).toThrow(expect.objectContaining({ code: TransportError.STATE }));
    other.dispatch.stop();
    expect(other.line.unlistens).toBe(0); // never another's listener
  });

  test('busy queues keep the line ref’d; unref’d a turn after the last goes idle, unless one is busy', async () => {
    const { dispatch, line } = setup();
    dispatch.setBusy(0, true);
    dispatch.setBusy(1, true);
    expect([line.reffed, line.unrefs]).toEqual([true, 0]);
    dispatch.setBusy(0, false);
    dispatch.setBusy(1, false);
    expect([line.reffed, line.unrefs]).toEqual([true, 0]);
    const refs = line.refs;
    dispatch.setBusy(1, true); // resubmitted from the completion: the line stayed ref'd, no native call
    await turn();
    expect([line.reffed, line.refs, line.unrefs]).toEqual([true, refs, 0]);
    dispatch.setBusy(1, false);
    dispatch.setBusy(1, false); // no change: nothing scheduled twice
    await turn();
    expect([line.reffed, line.unrefs]).toEqual([false, 1]);

    dispatch.setBusy(2, true);
    dispatch.setBusy(3, true);
    dispatch.setAllIdle();
    expect(line.reffed).toBe(true);
    dispatch.unrefNow(); // closing: at once, not a turn later
    expect([line.reffed, line.unrefs]).toEqual([false, 2]);
    await turn();
    expect(line.unrefs).toBe(2);
  });

  test('without a line, or with a closed one, busy tracking touches nothing', async () => {
    const none = setup({ line: false });
    none.dispatch.setBusy(0, true);
    none.dispatch.setBusy(0, false);
    none.dispatch.start();
    await turn();
    expect([none.line.refs, none.line.unrefs, none.line.listening]).toEqual([0, 0, false]);

    const closed = setup();
    closed.line.closed = true;
    closed.dispatch.setBusy(0, true);
    closed.dispatch.setBusy(0, false);
    await turn();
    expect([closed.line.refs, closed.line.unrefs]).toEqual([0, 0]);
  });
});
