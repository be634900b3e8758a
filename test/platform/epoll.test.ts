import { native } from '../../lib/platform/addon';
import { EpollLoop } from '../../lib/platform/epoll-loop';

const { EPOLLIN } = native.constants;

const settle = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('EpollLoop', () => {
  it('dispatches each fd to its own handler and unwatches cleanly', async () => {
    const loop = new EpollLoop();
    const a = native.eventfdCreate();
    const b = native.eventfdCreate();
    const seen: string[] = [];
    loop.watch(a, EPOLLIN, () => {
      native.eventfdRead(a);
      seen.push('a');
    });
    loop.watch(b, EPOLLIN, () => {
      native.eventfdRead(b);
      seen.push('b');
    });
    expect(() => loop.watch(a, EPOLLIN, () => undefined)).toThrow(/already watched/);
    native.eventfdWrite(b, 1);
    await settle(30);
    expect(seen).toEqual(['b']);
    loop.unwatch(b);
    loop.unwatch(b); // no-op
    native.eventfdWrite(b, 1);
    native.eventfdWrite(a, 1);
    await settle(30);
    expect(seen).toEqual(['b', 'a']);
    expect(loop.size).toBe(1);
    loop.close();
    [a, b].forEach((fd) => native.closeFd(fd));
  });

  it('uses the injected epoll set factory', () => {
    const calls: string[] = [];
    const fake = {
      size: 0,
      closed: false,
      edgeCount: 0,
      add: (fd: number) => calls.push(`add ${fd}`),
      remove: (fd: number) => calls.push(`remove ${fd}`),
      ref() {
        return this;
      },
      unref() {
        return this;
      },
      close: () => calls.push('close'),
    };
    const loop = new EpollLoop(() => fake);
    loop.watch(7, EPOLLIN, () => undefined);
    loop.unwatch(7);
    loop.close();
    expect(calls).toEqual(['add 7', 'remove 7', 'close']);
  });

  it('shares one loop per thread', () => {
    expect(EpollLoop.default()).toBe(EpollLoop.default());
  });
});

describe('the poll set as an async resource', () => {
  test('exists only while an fd is watched, also when the callback removes the last fd', async () => {
    const { createHook } = await import('node:async_hooks');
    const live = new Set<number>();
    const hook = createHook({
      init: (id, type) => void (type === 'VirtioMmioPollSet' && live.add(id)),
      destroy: (id) => void live.delete(id),
    }).enable();
    const fd = native.eventfdCreate(0, false);
    try {
      const set = new native.PollSet(() => {
        native.eventfdRead(fd);
        set.remove(fd);
      });
      expect(live.size).toBe(0);
      set.add(fd);
      expect(live.size).toBe(1);
      native.eventfdWrite(fd, 1);
      await settle(50);
      expect(set.size).toBe(0);
      expect(live.size).toBe(0);
      set.add(fd);
      expect(live.size).toBe(1);
      set.close();
      await settle(10);
      expect(live.size).toBe(0);
    } finally {
      hook.disable();
      native.closeFd(fd);
    }
  });
});
