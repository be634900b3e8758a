import { closeSync, readSync, writeSync } from 'node:fs';

import { ClosedError, DeviceGoneError, SyscallError } from '../../lib/errors';
import { native } from '../../lib/platform/addon';
import { EpollLoop } from '../../lib/platform/epoll-loop';
import { EventfdInterruptSource } from '../../lib/platform/eventfd-interrupt-source';
import type { InterruptEvent } from '../../lib/platform/interrupt-source';
import { UioInterruptSource } from '../../lib/platform/uio-interrupt-source';

const settle = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value >>> 0);
  return b;
}

/** Reads every pending 4-byte message the driver side wrote to the fake device. */
function drain(fd: number): number[] {
  const values: number[] = [];
  const buf = Buffer.alloc(16);
  for (;;) {
    try {
      const n = readSync(fd, buf, 0, 16, null);
      if (n === 0) return values;
      expect(n).toBe(4); // the UIO protocol: 4-byte writes
      values.push(buf.readUInt32LE(0));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EAGAIN') return values;
      throw error;
    }
  }
}

/**
 * A UIO device stand-in: a SOCK_SEQPACKET socketpair keeps 4-byte message
 * boundaries both ways, like /dev/uioN (reads give the count, writes 1/0).
 */
function fakeUio(): { file: InstanceType<typeof native.UioFile>; device: number } {
  const [driverSide, deviceSide] = native.socketpair();
  return { file: new native.UioFile(driverSide, 'fake uio'), device: deviceSide };
}

describe('UioFile (4-byte protocol, against a socketpair)', () => {
  it('enable() and disable() write 1 and 0 as 4 bytes', () => {
    const { file, device } = fakeUio();
    file.enable();
    file.disable();
    file.enable();
    expect(drain(device)).toEqual([1, 0, 1]);
    file.close();
    closeSync(device);
  });

  it('readCount() returns the 4-byte count, or null when nothing is pending', () => {
    const { file, device } = fakeUio();
    expect(file.readCount()).toBeNull();
    writeSync(device, u32(41));
    expect(file.readCount()).toBe(41);
    writeSync(device, u32(0xfffffffe));
    expect(file.readCount()).toBe(0xfffffffe);
    expect(file.readCount()).toBeNull();
    file.close();
    closeSync(device);
  });

  it('a short read is an EIO error, end of file says the device is gone', () => {
    const { file, device } = fakeUio();
    writeSync(device, Buffer.from([1, 2]));
    expect(() => file.readCount()).toThrow(expect.objectContaining({ code: 'EIO', syscall: 'read' }));
    closeSync(device);
    expect(() => file.readCount()).toThrow(/device is gone/);
    file.close();
  });

  it('after close() every call throws ClosedError; opening a missing node says how to bind UIO', () => {
    const { file, device } = fakeUio();
    file.close();
    expect(file.closed).toBe(true);
    expect(() => file.enable()).toThrow(ClosedError);
    expect(() => file.readCount()).toThrow(ClosedError);
    closeSync(device);
    let thrown: unknown;
    try {
      new native.UioFile('/dev/uio4095');
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(SyscallError);
    expect(thrown).toMatchObject({ code: 'ENOENT', syscall: 'open', path: '/dev/uio4095' });
    expect((thrown as SyscallError).hint).toMatch(/uio_pdrv_genirq of_id=virtio,mmio/);
  });

  it('rejects a bad fd or path type', () => {
    expect(() => new native.UioFile({} as unknown as string)).toThrow(TypeError);
    expect(() => new native.UioFile(-3)).toThrow(RangeError);
  });
});

describe('UioInterruptSource', () => {
  it('reads the counter on a wake-up without EPOLLET (level-triggered so far) and not on one with it', () => {
    const { EPOLLIN, EPOLLET, EPOLLHUP } = native.constants;
    let onReady: ((fd: number, events: number) => void) | undefined;
    const loop = new EpollLoop((callback) => {
      onReady = callback;
      return {
        size: 0,
        closed: false,
        edgeCount: 0,
        add: () => undefined,
        remove: () => undefined,
        ref() {
          return this;
        },
        unref() {
          return this;
        },
        close: () => undefined,
      };
    });
    const counts = [null, 7, 9, null];
    const reads: number[] = [];
    const file = {
      fd: 42,
      path: 'fake uio',
      closed: false,
      enable: () => undefined,
      disable: () => undefined,
      readCount: () => {
        reads.push(reads.length);
        return counts.shift() ?? null;
      },
      close: () => undefined,
    };
    const source = new UioInterruptSource(file, loop);
    const events: InterruptEvent[] = [];
    const errors: Error[] = [];
    source.listen(
      (e) => events.push(e),
      (e) => errors.push(e),
    );
    expect(reads).toHaveLength(1); // listen() drains what was counted before
    onReady!(42, EPOLLIN);
    expect(reads).toHaveLength(2);
    onReady!(42, (EPOLLIN | EPOLLET) >>> 0);
    onReady!(42, (EPOLLIN | EPOLLET) >>> 0);
    expect(reads).toHaveLength(2);
    onReady!(42, EPOLLIN);
    expect(reads).toHaveLength(3);
    expect(events).toEqual([{ count: 1 }, { count: 1 }, { count: 1 }, { count: 2 }]);
    // A hang-up reported as readable with nothing to read: the line is gone.
    onReady!(42, (EPOLLIN | EPOLLHUP | EPOLLET) >>> 0);
    expect(reads).toHaveLength(4);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(DeviceGoneError);
    expect(errors[0].message).toMatch(/EPOLLHUP/);
    expect(source.listening).toBe(false);
    source.close();
  });

  it('each wake-up is one event, counter unread (edge-triggered), re-armed (1 written); total reads it', async () => {
    const { file, device } = fakeUio();
    const source = new UioInterruptSource(file, new EpollLoop());
    const events: InterruptEvent[] = [];
    source.listen(
      (e) => events.push(e),
      (e) => {
        throw e;
      },
    );
    writeSync(device, u32(10));
    await settle(30);
    expect(events).toEqual([{ count: 1 }]);
    expect(drain(device)).toEqual([1, 1]); // unmasked when listening starts, then re-armed after the interrupt
    expect(source.total).toBe(10); // read now, not by the delivery
    writeSync(device, u32(13));
    await settle(30);
    writeSync(device, u32(14));
    await settle(30);
    expect(events).toEqual([{ count: 1 }, { count: 1 }, { count: 1 }]);
    expect(drain(device)).toEqual([1, 1]);
    source.close();
    closeSync(device);
  });

  it('acknowledged() re-arms once during a delivery (the return then does not), and not outside one', async () => {
    const { file, device } = fakeUio();
    const source = new UioInterruptSource(file, new EpollLoop());
    const seenInListener: number[][] = [];
    source.listen(
      () => {
        source.acknowledged();
        source.acknowledged();
        seenInListener.push(drain(device));
      },
      (e) => {
        throw e;
      },
    );
    expect(drain(device)).toEqual([1]); // unmasked when listening starts
    source.acknowledged();
    expect(drain(device)).toEqual([]);
    writeSync(device, u32(1));
    await settle(30);
    expect(seenInListener).toEqual([[1]]);
    expect(drain(device)).toEqual([]);
    source.close();
    closeSync(device);
  });

  it('a re-arm that fails in acknowledged() is reported when the listener returns, as DeviceGoneError', async () => {
    const { file, device } = fakeUio();
    // The file with a re-arm write that fails once told to (EIO, as once the device is unbound).
    let failing = false;
    const flaky = new Proxy(file, {
      get(target, key) {
        if (key === 'enable' && failing) {
          return () => {
            throw new SyscallError({ message: 'write failed', errno: 5, code: 'EIO', syscall: 'write' });
          };
        }
        const value: unknown = Reflect.get(target, key, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const source = new UioInterruptSource(flaky, new EpollLoop());
    const errors: Error[] = [];
    let after = 'not run';
    source.listen(
      () => {
        failing = true;
        source.acknowledged();
        after = source.listening ? 'still listening' : 'stopped early';
      },
      (e) => errors.push(e),
    );
    writeSync(device, u32(1));
    await settle(30);
    expect(after).toBe('still listening');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(DeviceGoneError);
    expect(source.listening).toBe(false);
    source.close();
    closeSync(device);
  });

  it('an interrupt counted before listen() is read then, not delivered as a new one', async () => {
    const { file, device } = fakeUio();
    const source = new UioInterruptSource(file, new EpollLoop());
    writeSync(device, u32(5));
    const events: InterruptEvent[] = [];
    source.listen(
      (e) => events.push(e),
      (e) => {
        throw e;
      },
    );
    await settle(30);
    expect(events).toEqual([]);
    expect(source.total).toBe(5);
    writeSync(device, u32(6));
    await settle(30);
    expect(events).toEqual([{ count: 1 }]);
    source.close();
    closeSync(device);
  });

  it('reports the device going away as DeviceGoneError and stops listening', async () => {
    const { file, device } = fakeUio();
    const source = new UioInterruptSource(file, new EpollLoop());
    const errors: Error[] = [];
    const events: InterruptEvent[] = [];
    source.listen(
      (e) => events.push(e),
      (e) => errors.push(e),
    );
    closeSync(device);
    await settle(30);
    // Edge-triggered, but the hang-up is checked by a read: the listener (which would touch the device's registers)
    // never runs.
    expect(events).toEqual([]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(DeviceGoneError);
    expect((errors[0] as DeviceGoneError).code).toBe('ERR_VIRTIO_DEVICE_GONE');
    expect(source.listening).toBe(false);
    source.close();
  });

  it('iterates interrupts asynchronously, and ends on close()', async () => {
    const { file, device } = fakeUio();
    const source = new UioInterruptSource(file, new EpollLoop());
    const seen: number[] = [];
    const consumer = (async () => {
      for await (const event of source.events()) {
        seen.push(event.count);
        if (seen.length === 2) source.close();
      }
    })();
    writeSync(device, u32(1));
    await settle(20);
    writeSync(device, u32(3));
    await consumer;
    expect(seen).toEqual([1, 1]);
    expect(source.closed).toBe(true);
    closeSync(device);
  });

  it('refuses a second listener and listening after close', () => {
    const { file, device } = fakeUio();
    const source = new UioInterruptSource(file, new EpollLoop());
    source.listen(
      () => undefined,
      () => undefined,
    );
    expect(() =>
      source.listen(
        () => undefined,
        () => undefined,
      ),
    ).toThrow(/already has a listener/);
    source.close();
    expect(() =>
      source.listen(
        () => undefined,
        () => undefined,
      ),
    ).toThrow(ClosedError);
    closeSync(device);
  });
});

describe('EventfdInterruptSource', () => {
  // Watched edge-triggered, the counter never read: the interrupts raised and not yet delivered are counted in JS.
  it('delivers raised interrupts, coalescing those raised together', async () => {
    const source = new EventfdInterruptSource('sim irq', new EpollLoop());
    const events: InterruptEvent[] = [];
    try {
      source.listen(
        (e) => events.push(e),
        () => undefined,
      );
      source.raise();
      await settle(20);
      source.raise(2);
      source.raise(1);
      await settle(20);
      expect(events).toEqual([{ count: 1 }, { count: 3 }]);
      // Each later raise is a new edge: the counter left unread neither silences the line nor keeps it firing.
      source.raise();
      await settle(20);
      expect(events).toEqual([{ count: 1 }, { count: 3 }, { count: 1 }]);
    } finally {
      source.close();
    }
    expect(() => source.raise()).toThrow(ClosedError);
  });

  it('holds interrupts while disabled and delivers them on enable()', async () => {
    const source = new EventfdInterruptSource('sim irq', new EpollLoop());
    const events: InterruptEvent[] = [];
    try {
      source.listen(
        (e) => events.push(e),
        () => undefined,
      );
      source.disable();
      source.raise(4);
      await settle(30);
      expect(events).toEqual([]);
      source.enable();
      await settle(30);
      expect(events).toEqual([{ count: 4 }]);
    } finally {
      source.close();
    }
  });

  it('a new listener hears only what is raised from then on, though the fd (never read) stays readable', async () => {
    const source = new EventfdInterruptSource('sim irq', new EpollLoop());
    const first: InterruptEvent[] = [];
    const second: InterruptEvent[] = [];
    try {
      source.listen(
        (e) => first.push(e),
        () => undefined,
      );
      source.raise(2);
      await settle(20);
      expect(first).toEqual([{ count: 2 }]);
      source.unlisten();
      source.listen(
        (e) => second.push(e),
        () => undefined,
      );
      await settle(20);
      expect(second).toEqual([]);
      source.raise();
      await settle(20);
      expect(second).toEqual([{ count: 1 }]);
    } finally {
      source.close();
    }
  });
});
