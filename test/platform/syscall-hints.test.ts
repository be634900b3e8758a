import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { ClosedError, DmaError, SyscallError, VirtioError } from '../../lib/errors';
import { makeNativeError, native } from '../../lib/platform/addon';
import { MmioWindow } from '../../lib/platform/mmio-window';
import { syscallHint, type SyscallFailure } from '../../lib/platform/syscall-hints';

describe('syscallHint', () => {
  it.each<[string, SyscallFailure, string[] | undefined]>([
    [
      'EACCES open /dev/uio3',
      { code: 'EACCES', syscall: 'open', path: '/dev/uio3' },
      ['/dev/uio3', 'udev', 'root', 'SUBSYSTEM=="uio"'],
    ],
    ['EPERM open /dev/uio3', { code: 'EPERM', syscall: 'open', path: '/dev/uio3' }, ['udev', 'root']],
    ['EACCES mmap /dev/uio12', { code: 'EACCES', syscall: 'mmap', path: '/dev/uio12' }, ['/dev/uio12', 'udev', 'root']],
    [
      'ENOENT open /dev/uio3',
      { code: 'ENOENT', syscall: 'open', path: '/dev/uio3' },
      ['uio_pdrv_genirq of_id=virtio,mmio'],
    ],
    ['ENOSYS write /dev/uio3', { code: 'ENOSYS', syscall: 'write', path: '/dev/uio3' }, ['irqcontrol']],
    [
      'ENOSYS read /dev/uio3 (only write means irqcontrol)',
      { code: 'ENOSYS', syscall: 'read', path: '/dev/uio3' },
      undefined,
    ],
    ['EACCES open /dev/mem', { code: 'EACCES', syscall: 'open', path: '/dev/mem' }, ['CAP_SYS_RAWIO', 'STRICT_DEVMEM']],
    ['EPERM mmap /dev/mem', { code: 'EPERM', syscall: 'mmap', path: '/dev/mem' }, ['CAP_SYS_RAWIO', 'STRICT_DEVMEM']],
    ['ENOENT open /dev/mem', { code: 'ENOENT', syscall: 'open', path: '/dev/mem' }, ['CONFIG_DEVMEM']],
    ['ENOMEM mmap hugetlb', { code: 'ENOMEM', syscall: 'mmap', path: 'hugetlb' }, ['nr_hugepages', 'HugePages_Free']],
    ['EPERM mlock hugetlb', { code: 'EPERM', syscall: 'mlock', path: 'hugetlb' }, ['RLIMIT_MEMLOCK', 'CAP_IPC_LOCK']],
    ['EAGAIN mlock hugetlb', { code: 'EAGAIN', syscall: 'mlock', path: 'hugetlb' }, ['RLIMIT_MEMLOCK', 'CAP_IPC_LOCK']],
    [
      'EPERM read /proc/self/pagemap',
      { code: 'EPERM', syscall: 'read', path: '/proc/self/pagemap' },
      ['CAP_SYS_ADMIN', 'page frame 0'],
    ],
    // EACCES is the open refused (a uid changed after start): no capability helps, starting as that user does.
    [
      'EACCES open /proc/self/pagemap',
      { code: 'EACCES', syscall: 'open', path: '/proc/self/pagemap' },
      ['start the process as its final user', 'CAP_SYS_ADMIN'],
    ],
    ['EIO read /dev/uio3', { code: 'EIO', syscall: 'read', path: '/dev/uio3' }, undefined],
    ['ENOENT open /dev/uio3x (not a UIO node)', { code: 'ENOENT', syscall: 'open', path: '/dev/uio3x' }, undefined],
    ['EACCES open /dev/uio (no number)', { code: 'EACCES', syscall: 'open', path: '/dev/uio' }, undefined],
    ['EACCES open /tmp/dev/uio3 (not /dev)', { code: 'EACCES', syscall: 'open', path: '/tmp/dev/uio3' }, undefined],
    ['ENOMEM mmap /dev/mem', { code: 'ENOMEM', syscall: 'mmap', path: '/dev/mem' }, undefined],
    ['ENOENT read /proc/self/pagemap', { code: 'ENOENT', syscall: 'read', path: '/proc/self/pagemap' }, undefined],
    ['EACCES with no path', { code: 'EACCES', syscall: 'epoll_ctl' }, undefined],
  ])('%s', (_label, failure, expected) => {
    const hint = syscallHint(failure);
    if (expected === undefined) {
      expect(hint).toBeUndefined();
    } else {
      expect(typeof hint).toBe('string');
      for (const part of expected) expect(hint).toContain(part);
    }
  });
});

describe('makeNativeError', () => {
  it('turns kind "syscall" into a SyscallError with every field and the hint in the message', () => {
    const error = makeNativeError('syscall', "EACCES: Permission denied, open '/dev/uio3'", {
      errno: -13,
      code: 'EACCES',
      syscall: 'open',
      path: '/dev/uio3',
    });
    expect(error).toBeInstanceOf(SyscallError);
    expect(error).toBeInstanceOf(VirtioError);
    expect(error).toBeInstanceOf(Error);
    const e = error as SyscallError;
    const hint = syscallHint({ code: 'EACCES', syscall: 'open', path: '/dev/uio3' });
    expect(hint).toContain('udev');
    expect(e.name).toBe('SyscallError');
    expect(e.errno).toBe(-13);
    expect(e.code).toBe('EACCES');
    expect(e.syscall).toBe('open');
    expect(e.path).toBe('/dev/uio3');
    expect(e.hint).toBe(hint);
    expect(e.message).toBe(`EACCES: Permission denied, open '/dev/uio3': ${hint}`);
  });

  it('a syscall error without a known hint or path has neither, and keeps the plain message', () => {
    const error = makeNativeError('syscall', 'EBADF: Bad file descriptor, epoll_ctl', {
      errno: -9,
      code: 'EBADF',
      syscall: 'epoll_ctl',
    });
    expect(error).toBeInstanceOf(SyscallError);
    const e = error as SyscallError;
    expect(e.errno).toBe(-9);
    expect(e.code).toBe('EBADF');
    expect(e.syscall).toBe('epoll_ctl');
    expect(e.path).toBeUndefined();
    expect(e.hint).toBeUndefined();
    expect(e.message).toBe('EBADF: Bad file descriptor, epoll_ctl');
  });

  it('turns kind "closed" into a ClosedError', () => {
    const error = makeNativeError('closed', '/dev/uio0@0x0 is closed', {});
    expect(error).toBeInstanceOf(ClosedError);
    expect(error).toBeInstanceOf(VirtioError);
    expect(error).toBeInstanceOf(Error);
    expect((error as ClosedError).code).toBe('ERR_VIRTIO_CLOSED');
    expect(error.message).toBe('/dev/uio0@0x0 is closed');
    expect(error.name).toBe('ClosedError');
  });

  it('turns kind "dma-contiguity" into a DmaError ERR_VIRTIO_DMA_NOT_CONTIGUOUS', () => {
    const error = makeNativeError('dma-contiguity', 'hugepage is not physically contiguous', {});
    expect(error).toBeInstanceOf(DmaError);
    expect(error).toBeInstanceOf(VirtioError);
    expect(error).toBeInstanceOf(Error);
    expect((error as DmaError).code).toBe('ERR_VIRTIO_DMA_NOT_CONTIGUOUS');
    expect((error as DmaError).code).toBe(DmaError.NOT_CONTIGUOUS);
    expect(error.message).toBe('hugepage is not physically contiguous');
  });

  it('turns kind "dma" into a DmaError ERR_VIRTIO_DMA_NOT_PRESENT', () => {
    const error = makeNativeError('dma', 'page not present', {});
    expect(error).toBeInstanceOf(DmaError);
    expect((error as DmaError).code).toBe('ERR_VIRTIO_DMA_NOT_PRESENT');
  });

  it.each(['something-new', '', 'SYSCALL'])('turns unknown kind %p into VirtioError ERR_VIRTIO_NATIVE', (kind) => {
    const error = makeNativeError(kind, 'odd', { code: 'EACCES' });
    expect(error).toBeInstanceOf(VirtioError);
    expect(error).toBeInstanceOf(Error);
    expect(error).not.toBeInstanceOf(SyscallError);
    expect(error).not.toBeInstanceOf(ClosedError);
    expect(error).not.toBeInstanceOf(DmaError);
    expect((error as VirtioError).code).toBe('ERR_VIRTIO_NATIVE');
    expect(error.message).toBe('odd');
  });

  it('is the factory the addon uses: a failed open of a missing /dev/uioN is a SyscallError with the hint', () => {
    const path = '/dev/uio987654';
    let caught: unknown;
    try {
      new native.MmioRegion(path, 0, 0, 4, false).close();
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(SyscallError);
    const e = caught as SyscallError;
    expect(e.code).toBe('ENOENT');
    expect(e.errno).toBe(-2);
    expect(e.syscall).toBe('open');
    expect(e.path).toBe(path);
    expect(e.hint).toContain('uio_pdrv_genirq of_id=virtio,mmio');
    expect(e.message).toContain(e.hint!);
  });

  it('the addon reports a missing regular file as SyscallError without a hint, use after close as ClosedError', () => {
    const dir = mkdtempSync(join(tmpdir(), 'virtio-mmio-hints-'));
    try {
      const missing = join(dir, 'missing');
      let caught: unknown;
      try {
        MmioWindow.openFile(missing, 0, 4).close();
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(SyscallError);
      expect((caught as SyscallError).code).toBe('ENOENT');
      expect((caught as SyscallError).path).toBe(missing);
      expect((caught as SyscallError).hint).toBeUndefined();

      const file = join(dir, 'regs');
      writeFileSync(file, Buffer.alloc(native.pageSize));
      const region = MmioWindow.openFile(file, 0, 16);
      region.close();
      let closed: unknown;
      try {
        region.readl(0);
      } catch (error) {
        closed = error;
      }
      expect(closed).toBeInstanceOf(ClosedError);
      expect((closed as ClosedError).code).toBe('ERR_VIRTIO_CLOSED');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('SyscallError fields', () => {
  it('leaves path and hint absent, not undefined, when unknown (like fs errors)', () => {
    const e = new SyscallError({
      message: 'EBADF: bad file descriptor, close',
      errno: -9,
      code: 'EBADF',
      syscall: 'close',
    });
    expect('path' in e).toBe(false);
    expect('hint' in e).toBe(false);
    expect(e).toMatchObject({ errno: -9, code: 'EBADF', syscall: 'close' });
  });
});

describe('/dev/mem refusals: which one, from /proc/iomem', () => {
  // /proc/iomem of the arm64 lab guest booted with mem=3G (abridged): the PL011
  // claimed by its driver (the nested entry), a transport nobody claimed, the kernel's RAM.
  const IOMEM = [
    '09000000-09000fff : 9000000.pl011',
    '  09000000-09000fff : 9000000.pl011',
    '0a000000-0a0001ff : a000000.virtio_mmio',
    '0a003e00-0a003fff : a003e00.virtio_mmio',
    '40000000-ffffffff : System RAM',
    '  40210000-4163ffff : Kernel code',
    '',
  ].join('\n');
  const iomem = (): string => IOMEM;
  const mmap = (start: bigint, length: bigint, code = 'EPERM'): SyscallFailure => ({
    code,
    syscall: 'mmap',
    path: '/dev/mem',
    range: { start, end: start + length },
  });

  it('RAM the kernel owns: STRICT_DEVMEM, and how to keep the kernel off a carve-out', () => {
    const hint = syscallHint(mmap(0x4000_0000n, 0x1000n), iomem);
    expect(hint).toContain('physical 0x40000000-0x40000fff is RAM the kernel owns ("System RAM" in /proc/iomem)');
    expect(hint).toContain('STRICT_DEVMEM');
    expect(hint).toContain('mem=');
    expect(hint).toContain('reserved-memory');
  });

  it('a range a driver has claimed: IO_STRICT_DEVMEM, and unbinding', () => {
    const hint = syscallHint(mmap(0x0900_0000n, 0x1000n), iomem);
    expect(hint).toContain('claimed by a driver ("9000000.pl011" in /proc/iomem)');
    expect(hint).toContain('IO_STRICT_DEVMEM');
    expect(hint).toContain('unbind');
  });

  it('EPERM on a range /proc/iomem does not explain (or without root: zeros) keeps the general /dev/mem hint', () => {
    for (const text of [IOMEM, IOMEM.replace(/[0-9a-f]{8}/g, '00000000')]) {
      const hint = syscallHint(mmap(0x0a00_0000n, 0x1000n), () => text);
      expect(hint).toContain('CAP_SYS_RAWIO');
      expect(hint).not.toContain('in /proc/iomem');
    }
  });

  it('EINVAL from mmap: a range /dev/mem cannot map', () => {
    expect(syscallHint(mmap(0xffff_ffff_ffff_f000n, 0x1000n, 'EINVAL'), iomem)).toContain('check the base address');
  });

  it("makeNativeError reads the range from the addon's message (register windows and carve-outs)", () => {
    for (const detail of ['offset 0x9000000, length 0x1000', 'physical 0x9000000, length 0x1000']) {
      const error = makeNativeError('syscall', `EPERM: Operation not permitted, mmap '/dev/mem' (${detail})`, {
        errno: -1,
        code: 'EPERM',
        syscall: 'mmap',
        path: '/dev/mem',
      }) as SyscallError;
      // The host's own /proc/iomem decides which hint; whichever it is, it is a /dev/mem hint.
      expect(error.hint).toMatch(/IO_STRICT_DEVMEM|STRICT_DEVMEM/);
    }
  });
});
