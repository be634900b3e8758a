import { closeSync, readSync, writeSync } from 'node:fs';

import { ClosedError } from '../../lib/errors';
import { native, type EpollEvent } from '../../lib/platform/addon';
import { EpollLoop } from '../../lib/platform/epoll-loop';

const { EPOLLIN, EPOLLHUP, EPOLLERR } = native.constants;

/** Resolves with the next batch the set delivers, or rejects after `ms`. */
function nextBatch(sink: EpollEvent[][], ms = 2000): Promise<EpollEvent[]> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const check = (): void => {
      const batch = sink.shift();
      if (batch) resolve(batch);
      else if (Date.now() - started > ms) reject(new Error(`no epoll batch within ${ms} ms`));
      else setTimeout(check, 2);
    };
    check();
  });
}

const settle = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('native epoll set', () => {
  it('wakes on an eventfd with EPOLLIN and delivers the fd', async () => {
    const batches: EpollEvent[][] = [];
    const set = new native.EpollSet((b) => {
      batches.push(b);
      for (const { fd } of b) native.eventfdRead(fd); // consume so level-triggering stops
    });
    const efd = native.eventfdCreate();
    set.add(efd);
    expect(set.size).toBe(1);
    native.eventfdWrite(efd, 5);
    const batch = await nextBatch(batches);
    expect(batch).toEqual([{ fd: efd, events: EPOLLIN }]);
    set.close();
    native.closeFd(efd);
  });

  it('reports a pipe becoming readable, then EPOLLHUP when the writer closes', async () => {
    const batches: EpollEvent[][] = [];
    const [readFd, writeFd] = native.pipe();
    const set = new native.EpollSet((b) => {
      batches.push(b);
      for (const { fd, events } of b) {
        if (events & EPOLLHUP) set.remove(fd);
        else if (events & EPOLLIN) {
          try {
            readSync(fd, Buffer.alloc(64));
          } catch {
            /* EAGAIN */
          }
        }
      }
    });
    set.add(readFd, EPOLLIN);
    writeSync(writeFd, 'x');
    expect((await nextBatch(batches))[0]).toEqual({ fd: readFd, events: EPOLLIN });
    closeSync(writeFd);
    const hup = (await nextBatch(batches))[0];
    expect(hup.fd).toBe(readFd);
    expect(hup.events & EPOLLHUP).toBe(EPOLLHUP);
    set.close();
    closeSync(readFd);
  });

  it('delivers several ready fds in one batch', async () => {
    const batches: EpollEvent[][] = [];
    const set = new native.EpollSet((b) => {
      batches.push(b);
      for (const { fd } of b) native.eventfdRead(fd);
    });
    const fds = [native.eventfdCreate(), native.eventfdCreate(), native.eventfdCreate()];
    for (const fd of fds) set.add(fd);
    for (const fd of fds) native.eventfdWrite(fd, 1);
    const batch = await nextBatch(batches);
    expect(batch.map((e) => e.fd).sort()).toEqual([...fds].sort());
    set.close();
    fds.forEach((fd) => native.closeFd(fd));
  });

  it('stops delivering for a removed fd', async () => {
    const batches: EpollEvent[][] = [];
    const set = new native.EpollSet((b) => batches.push(b));
    const efd = native.eventfdCreate();
    set.add(efd);
    set.remove(efd);
    expect(set.size).toBe(0);
    native.eventfdWrite(efd, 1); // stays pending: nobody consumes it
    await settle(50);
    expect(batches).toEqual([]);
    set.close();
    native.closeFd(efd);
  });

  it('honours modify() (EPOLLOUT on an eventfd is always ready)', async () => {
    const batches: EpollEvent[][] = [];
    const efd = native.eventfdCreate();
    const set = new native.EpollSet((b) => {
      batches.push(b);
      set.modify(efd, EPOLLIN); // stop the level-triggered EPOLLOUT storm
    });
    set.add(efd, EPOLLIN);
    set.modify(efd, native.constants.EPOLLOUT);
    expect((await nextBatch(batches))[0]).toEqual({ fd: efd, events: native.constants.EPOLLOUT });
    set.close();
    native.closeFd(efd);
  });

  it('tolerates remove() after the fd was closed', () => {
    const set = new native.EpollSet(() => undefined);
    const efd = native.eventfdCreate();
    set.add(efd);
    native.closeFd(efd);
    expect(() => set.remove(efd)).not.toThrow();
    set.close();
  });

  it.each<[string, (set: ReturnType<typeof makeSet>) => unknown, RegExp | typeof Error]>([
    ['adding a closed fd', (s) => s.add(987654), /EBADF/],
    [
      'adding twice',
      (s) => {
        const fd = native.eventfdCreate();
        s.add(fd);
        s.add(fd);
      },
      /EEXIST/,
    ],
    ['modifying an unknown fd', (s) => s.modify(3, EPOLLIN), /not in this epoll set/],
    ['removing an unknown fd', (s) => s.remove(3), /not in this epoll set/],
    ['a negative fd', (s) => s.add(-1), RangeError],
    ['a non-number fd', (s) => s.add('3' as unknown as number), TypeError],
  ])('rejects %s', (_name, call, expected) => {
    const set = makeSet();
    expect(() => call(set)).toThrow(expected);
    set.close();
  });

  it('throws ClosedError after close(), and close() is idempotent', () => {
    const set = makeSet();
    set.close();
    set.close();
    expect(set.closed).toBe(true);
    expect(() => set.add(native.eventfdCreate())).toThrow(ClosedError);
  });

  it('needs a callback', () => {
    expect(() => new native.EpollSet(undefined as unknown as () => void)).toThrow(TypeError);
  });

  it('runs microtasks queued by the callback right after it', async () => {
    const order: string[] = [];
    const efd = native.eventfdCreate();
    const done = new Promise<void>((resolve) => {
      const set = new native.EpollSet(() => {
        native.eventfdRead(efd);
        Promise.resolve().then(() => {
          order.push('microtask');
          set.close();
          resolve();
        });
        setImmediate(() => order.push('immediate'));
        order.push('callback');
      });
      set.add(efd);
    });
    native.eventfdWrite(efd, 1);
    await done;
    expect(order.slice(0, 2)).toEqual(['callback', 'microtask']);
    native.closeFd(efd);
  });

  it('error constants are the Linux values', () => {
    expect([EPOLLIN, native.constants.EPOLLOUT, EPOLLERR, EPOLLHUP]).toEqual([1, 4, 8, 16]);
  });
});

function makeSet(): ReturnType<typeof native.EpollSet.prototype.constructor> {
  return new native.EpollSet(() => undefined);
}

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

describe('the epoll set as an async resource', () => {
  test('exists only while an fd is watched, also when the callback removes the last fd', async () => {
    const { createHook } = await import('node:async_hooks');
    const live = new Set<number>();
    const hook = createHook({
      init: (id, type) => void (type === 'VirtioMmioEpollSet' && live.add(id)),
      destroy: (id) => void live.delete(id),
    }).enable();
    const fd = native.eventfdCreate(0, false);
    try {
      const set = new native.EpollSet(() => {
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
