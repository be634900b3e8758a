import { ClosedError, DeviceGoneError } from '../../lib/errors';
import { PollingInterruptSource } from '../../lib/platform';
import type { InterruptEvent } from '../../lib/platform/interrupt-source';

const settle = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until `condition` holds (timers run late on a loaded machine), failing after `ms`. */
async function until(condition: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await settle(2);
  }
}

/** Timers that keep the process alive (unref'd ones are not listed). */
const refdTimers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

const sources: PollingInterruptSource[] = [];
function source(options?: ConstructorParameters<typeof PollingInterruptSource>[0]): PollingInterruptSource {
  const s = new PollingInterruptSource(options);
  sources.push(s);
  return s;
}

afterEach(() => {
  for (const s of sources.splice(0)) s.close();
});

describe('PollingInterruptSource', () => {
  it('defaults to a 1 ms interval and a generic label', () => {
    const s = source();
    expect(s.intervalMs).toBe(1);
    expect(s.label).toBe('polled interrupt');
    expect(s.closed).toBe(false);
    expect(s.listening).toBe(false);
    expect(s.ticking).toBe(false);
    expect(source({ intervalMs: 7, label: '0x200@0xa003e00 (polled)' })).toMatchObject({
      intervalMs: 7,
      label: '0x200@0xa003e00 (polled)',
    });
  });

  it.each([0, -1, 1.5, NaN, Infinity, 2 ** 31])('refuses intervalMs %p with RangeError', (intervalMs) => {
    expect(() => new PollingInterruptSource({ intervalMs })).toThrow(RangeError);
    expect(() => new PollingInterruptSource({ intervalMs })).toThrow(
      /intervalMs must be an integer in \[1, 2147483647\]/,
    );
  });

  it('refuses a non-number intervalMs with TypeError', () => {
    expect(() => new PollingInterruptSource({ intervalMs: '5' as unknown as number })).toThrow(TypeError);
  });

  it('delivers { count: 1 } on every tick while listening, and nothing after unlisten()', async () => {
    const s = source({ intervalMs: 2 });
    const events: InterruptEvent[] = [];
    const errors: Error[] = [];
    s.listen(
      (e) => events.push(e),
      (e) => errors.push(e),
    );
    expect(s.listening).toBe(true);
    expect(s.ticking).toBe(true);
    await until(() => events.length >= 3);
    expect(events.every((e) => e.count === 1)).toBe(true);
    s.unlisten();
    expect(s.listening).toBe(false);
    expect(s.ticking).toBe(false);
    const seen = events.length;
    await settle(20);
    expect(events.length).toBe(seen);
    expect(errors).toEqual([]);
  });

  it('does not tick before listen()', async () => {
    const s = source();
    await settle(10);
    expect(s.ticking).toBe(false);
  });

  it('disable() pauses ticking and enable() resumes it, before or after listen()', async () => {
    const s = source();
    let ticks = 0;
    s.disable();
    s.listen(
      () => ticks++,
      () => undefined,
    );
    expect(s.listening).toBe(true);
    expect(s.ticking).toBe(false);
    await settle(15);
    expect(ticks).toBe(0);
    s.enable();
    expect(s.ticking).toBe(true);
    await until(() => ticks > 0);
    s.disable();
    expect(s.ticking).toBe(false);
    const seen = ticks;
    await settle(15);
    expect(ticks).toBe(seen);
    s.enable();
    await until(() => ticks > seen);
  });

  it('ref() and unref() decide whether the ticking timer keeps the process alive', () => {
    const base = refdTimers();
    const s = source();
    s.listen(
      () => undefined,
      () => undefined,
    );
    expect(refdTimers()).toBe(base + 1); // ref'd by default
    s.unref();
    expect(refdTimers()).toBe(base);
    s.ref();
    expect(refdTimers()).toBe(base + 1);
    // The choice survives pausing and re-listening.
    s.unref();
    s.disable();
    s.enable();
    expect(s.ticking).toBe(true);
    expect(refdTimers()).toBe(base);
    s.unlisten();
    s.listen(
      () => undefined,
      () => undefined,
    );
    expect(refdTimers()).toBe(base);
    s.ref();
    expect(refdTimers()).toBe(base + 1);
    s.close();
    expect(refdTimers()).toBe(base);
    // Harmless after close.
    s.ref();
    s.unref();
    expect(refdTimers()).toBe(base);
  });

  it('refuses a second listener', () => {
    const s = source();
    s.listen(
      () => undefined,
      () => undefined,
    );
    expect(() =>
      s.listen(
        () => undefined,
        () => undefined,
      ),
    ).toThrow(/polled interrupt already has a listener/);
  });

  it('close() stops ticking, is idempotent, and later listen/enable/disable throw ClosedError', async () => {
    const s = source({ label: 'dev' });
    let ticks = 0;
    s.listen(
      () => ticks++,
      () => undefined,
    );
    s.close();
    s.close();
    expect(s.closed).toBe(true);
    expect(s.listening).toBe(false);
    expect(s.ticking).toBe(false);
    await settle(10);
    expect(ticks).toBe(0);
    expect(() =>
      s.listen(
        () => undefined,
        () => undefined,
      ),
    ).toThrow(ClosedError);
    expect(() =>
      s.listen(
        () => undefined,
        () => undefined,
      ),
    ).toThrow('dev is closed');
    expect(() => s.enable()).toThrow(ClosedError);
    expect(() => s.disable()).toThrow(ClosedError);
    s.unlisten(); // harmless
  });

  it('a listener that throws stops the ticking and is reported once as DeviceGoneError with the cause', async () => {
    const s = source({ label: 'dev' });
    const cause = new Error('window unmapped');
    let calls = 0;
    const errors: Error[] = [];
    s.listen(
      () => {
        calls++;
        throw cause;
      },
      (e) => errors.push(e),
    );
    await until(() => errors.length > 0);
    await settle(10);
    expect(calls).toBe(1);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(DeviceGoneError);
    expect(errors[0].message).toBe('dev: the interrupt handler threw: window unmapped');
    expect(errors[0].cause).toBe(cause);
    expect(s.listening).toBe(false);
    expect(s.ticking).toBe(false);
    expect(s.closed).toBe(false);
    // It can be listened to again.
    s.listen(
      () => undefined,
      () => undefined,
    );
    expect(s.ticking).toBe(true);
  });

  describe('events()', () => {
    it('iterates over ticks and stops listening when the loop breaks', async () => {
      const s = source();
      let n = 0;
      for await (const event of s.events()) {
        expect(event.count).toBeGreaterThanOrEqual(1);
        if (++n === 3) break;
      }
      expect(n).toBe(3);
      expect(s.listening).toBe(false);
      expect(s.ticking).toBe(false);
      expect(s.closed).toBe(false);
    });

    it('coalesces ticks nobody has taken yet into one event', async () => {
      const s = source();
      let ticks = 0;
      const probe = source();
      probe.listen(
        () => ticks++,
        () => undefined,
      );
      const it = s.events();
      await until(() => ticks >= 5); // s has ticked about as often meanwhile
      const first = await it.next();
      expect(first.done).toBe(false);
      expect((first.value as InterruptEvent).count).toBeGreaterThan(1);
      await it.return?.();
      expect(s.listening).toBe(false);
      expect(await it.next()).toEqual({ value: undefined, done: true });
    });

    it('ends when the source closes, also for a consumer already waiting', async () => {
      const s = source({ intervalMs: 1000 });
      const it = s.events();
      const waiting = it.next();
      s.close();
      expect(await waiting).toEqual({ value: undefined, done: true });
      expect(await it.next()).toEqual({ value: undefined, done: true });
    });

    it('ends a for-await loop that closes the source', async () => {
      const s = source();
      const seen: number[] = [];
      for await (const event of s.events()) {
        seen.push(event.count);
        if (seen.length === 2) s.close();
      }
      expect(seen).toHaveLength(2);
      expect(s.closed).toBe(true);
    });

    it('refuses to start while someone else listens, and on a closed source', () => {
      const s = source();
      s.listen(
        () => undefined,
        () => undefined,
      );
      expect(() => s.events()).toThrow(/already has a listener/);
      s.close();
      expect(() => s.events()).toThrow(ClosedError);
    });

    it('return() after the iterator ended does not take away a later listener', async () => {
      const s = source();
      const it = s.events();
      await it.return?.();
      let ticks = 0;
      s.listen(
        () => ticks++,
        () => undefined,
      );
      await it.return?.();
      expect(s.listening).toBe(true);
      await until(() => ticks > 0);
    });
  });
});
