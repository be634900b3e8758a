import { readSync, writeSync } from 'node:fs';

import { ClosedError } from '../../lib/errors';
import { native } from '../../lib/platform/addon';

const { EPOLLIN, EPOLLOUT, EPOLLET, EPOLLHUP } = native.constants;
const EDGE = (EPOLLIN | EPOLLET) >>> 0;

const settle = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

type Wake = { fd: number; events: number };

describe('native poll set (fds on the event loop’s own epoll set)', () => {
  it('delivers a level-triggered fd until it is read, never with EPOLLET', async () => {
    const wakes: Wake[] = [];
    const fd = native.eventfdCreate();
    const set = new native.PollSet((f, events) => {
      wakes.push({ fd: f, events });
      if (wakes.length === 3) native.eventfdRead(f);
    });
    set.add(fd);
    native.eventfdWrite(fd, 1);
    await settle(50);
    expect(wakes).toEqual([
      { fd, events: EPOLLIN },
      { fd, events: EPOLLIN },
      { fd, events: EPOLLIN },
    ]);
    expect(set.edgeCount).toBe(0);
    set.close();
    native.closeFd(fd);
  });

  it('turns an EPOLLET fd edge-triggered after its first wake-up: one wake-up per write, unread', async () => {
    const wakes: number[] = [];
    const fd = native.eventfdCreate();
    const set = new native.PollSet((_f, events) => {
      wakes.push(events >>> 0);
      if (!(events & EPOLLET)) native.eventfdRead(fd); // level-triggered still: read it
    });
    set.add(fd, EDGE);
    expect(set.edgeCount).toBe(0);
    native.eventfdWrite(fd, 1);
    await settle(30);
    expect(wakes).toEqual([EPOLLIN]);
    expect(set.edgeCount).toBe(1);
    for (let i = 1; i <= 3; i++) {
      native.eventfdWrite(fd, 1); // never read from here on
      await settle(30);
      expect(wakes).toHaveLength(1 + i);
      expect(wakes[i]).toBe(EDGE);
    }
    set.close();
    native.closeFd(fd);
  });

  it('starts level-triggered again when an fd is removed and added back', async () => {
    const wakes: number[] = [];
    const fd = native.eventfdCreate();
    const set = new native.PollSet((_f, events) => {
      wakes.push(events >>> 0);
      if (!(events & EPOLLET)) native.eventfdRead(fd);
    });
    set.add(fd, EDGE);
    native.eventfdWrite(fd, 1);
    await settle(30);
    expect(set.edgeCount).toBe(1);
    set.remove(fd);
    expect(set.size).toBe(0);
    set.add(fd, EDGE);
    expect(set.edgeCount).toBe(0);
    native.eventfdWrite(fd, 1);
    await settle(30);
    expect(wakes).toEqual([EPOLLIN, EPOLLIN]);
    set.close();
    native.closeFd(fd);
  });

  it('lets a callback remove another fd ready in the same turn (it is not delivered)', async () => {
    const seen: number[] = [];
    const a = native.eventfdCreate();
    const b = native.eventfdCreate();
    const set = new native.PollSet((fd) => {
      seen.push(fd);
      native.eventfdRead(fd);
      set.remove(fd === a ? b : a);
    });
    set.add(a);
    set.add(b);
    native.eventfdWrite(a, 1);
    native.eventfdWrite(b, 1);
    await settle(30);
    expect(seen).toHaveLength(1);
    expect(set.size).toBe(1);
    set.close();
    [a, b].forEach((fd) => native.closeFd(fd));
  });

  it('reports a pipe whose writer closed as EPOLLHUP, and EPOLLOUT for a writable end', async () => {
    const wakes: Wake[] = [];
    const [readFd, writeFd] = native.pipe();
    const set = new native.PollSet((fd, events) => {
      wakes.push({ fd, events });
      set.remove(fd);
    });
    set.add(writeFd, EPOLLOUT);
    await settle(30);
    expect(wakes).toEqual([{ fd: writeFd, events: EPOLLOUT }]);
    writeSync(writeFd, 'x');
    readSync(readFd, Buffer.alloc(1));
    native.closeFd(writeFd);
    set.add(readFd, EPOLLIN);
    await settle(30);
    expect(wakes[1].fd).toBe(readFd);
    expect(wakes[1].events & EPOLLHUP).toBe(EPOLLHUP);
    set.close();
    native.closeFd(readFd);
  });

  it('runs microtasks queued by the callback right after it, before immediates', async () => {
    const order: string[] = [];
    const fd = native.eventfdCreate();
    const done = new Promise<void>((resolve) => {
      const set = new native.PollSet(() => {
        native.eventfdRead(fd);
        Promise.resolve().then(() => {
          order.push('microtask');
          set.close();
          resolve();
        });
        setImmediate(() => order.push('immediate'));
        order.push('callback');
      });
      set.add(fd);
    });
    native.eventfdWrite(fd, 1);
    await done;
    expect(order.slice(0, 2)).toEqual(['callback', 'microtask']);
    native.closeFd(fd);
  });

  it('tolerates remove() after the fd was closed, and refuses a closed fd', () => {
    const set = new native.PollSet(() => undefined);
    const fd = native.eventfdCreate();
    set.add(fd);
    native.closeFd(fd);
    expect(() => set.remove(fd)).not.toThrow();
    expect(() => set.add(987654)).toThrow(/EBADF/);
    set.close();
  });

  it('uses the Linux values for the epoll constants', () => {
    expect([EPOLLIN, EPOLLOUT, native.constants.EPOLLERR, EPOLLHUP, EPOLLET >>> 0]).toEqual([1, 4, 8, 16, 0x80000000]);
  });

  it('refuses bad arguments and use after close', () => {
    const fd = native.eventfdCreate();
    const set = new native.PollSet(() => undefined);
    expect(() => set.add(fd, 0)).toThrow(RangeError);
    expect(() => set.add(fd, EPOLLHUP)).toThrow(RangeError);
    expect(() => set.add(-1)).toThrow(RangeError);
    expect(() => set.remove(fd)).toThrow(/not in this poll set/);
    set.add(fd);
    expect(() => set.add(fd)).toThrow(/already in this poll set/);
    set.close();
    set.close(); // idempotent
    expect(set.closed).toBe(true);
    expect(set.size).toBe(0);
    expect(() => set.add(fd)).toThrow(ClosedError);
    expect(() => new native.PollSet(undefined as unknown as () => void)).toThrow(TypeError);
    native.closeFd(fd);
  });
});
