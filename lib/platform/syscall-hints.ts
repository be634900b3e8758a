import { readFileSync } from 'node:fs';

/** What a failed system call reported, as the addon passes it up. */
export interface SyscallFailure {
  code: string;
  syscall: string;
  path?: string;
  /** /dev/mem: the physical range that was asked for (its end exclusive). */
  range?: { start: bigint; end: bigint };
}

/** Where the kernel lists physical address ranges and who holds them. */
const IOMEM = '/proc/iomem';

function readIomem(): string {
  try {
    return readFileSync(IOMEM, 'utf8');
  } catch {
    return '';
  }
}

const UIO_DEVICE = /^\/dev\/uio\d+$/;

function meminfo(key: string, file = '/proc/meminfo'): string {
  try {
    const line = readFileSync(file, 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`${key}:`));
    return line ? line.slice(key.length + 1).trim() : '?';
  } catch {
    return '?';
  }
}

/**
 * How to fix a failed system call, for the cases users of a hardware
 * library meet: permissions on /dev/uioN and /dev/mem, no UIO driver bound,
 * no hugepages, no CAP_SYS_ADMIN for pagemap, no irqcontrol.
 */
export function syscallHint(f: SyscallFailure, iomem: () => string = readIomem): string | undefined {
  const denied = f.code === 'EACCES' || f.code === 'EPERM';
  const path = f.path ?? '';
  if (UIO_DEVICE.test(path)) {
    if (denied) {
      return (
        `${path} needs read and write access: run as root, or grant it with a udev rule such as ` +
        `SUBSYSTEM=="uio", GROUP="uio", MODE="0660" and add your user to that group`
      );
    }
    if (f.code === 'ENOENT') {
      return (
        'no such UIO device: bind the virtio-mmio nodes to a UIO driver, e.g. ' +
        '`modprobe uio_pdrv_genirq of_id=virtio,mmio` (or insmod uio_pdrv_genirq.ko of_id=virtio,mmio)'
      );
    }
    if (f.code === 'ENOSYS' && f.syscall === 'write') {
      return 'this UIO driver has no irqcontrol, so the interrupt cannot be enabled or disabled from user space';
    }
  }
  if (path === '/dev/mem') {
    // drivers/char/mem.c: mmap_mem refuses a range devmem_is_allowed() rejects with EPERM, whichever the reason;
    // /proc/iomem tells which.
    const holder = f.code === 'EPERM' && f.syscall === 'mmap' && f.range ? iomemHolder(iomem(), f.range) : undefined;
    if (holder?.kind === 'ram') {
      return (
        `${hexRange(f.range!)} is RAM the kernel owns ("${holder.name}" in ${IOMEM}` +
        `) and STRICT_DEVMEM refuses it: for DMA memory, keep the kernel off a ` +
        `range (mem=, memmap=, or a reserved-memory node with no-map) and map that`
      );
    }
    if (holder?.kind === 'claimed') {
      return (
        `${hexRange(f.range!)} is claimed by a driver ("${holder.name}" in ${IOMEM}) and IO_STRICT_DEVMEM ` +
        `refuses busy ranges: ` +
        'unbind that driver (e.g. echo <device> > /sys/bus/platform/drivers/<driver>/unbind) or reach the ' +
        'device through UIO'
      );
    }
    if (f.code === 'EINVAL' && f.syscall === 'mmap') {
      return (
        'the kernel cannot map that physical range through /dev/mem (beyond the physical address space, or an offset ' +
        'its mmap cannot take): check the base address'
      );
    }
    if (denied) {
      return (
        '/dev/mem needs root (CAP_SYS_RAWIO); with CONFIG_STRICT_DEVMEM or CONFIG_IO_STRICT_DEVMEM the kernel ' +
        'also refuses ranges that are RAM or claimed by a driver: reserve the range (reserved-memory) or use UIO'
      );
    }
    if (f.code === 'ENOENT') return 'this kernel has no /dev/mem (CONFIG_DEVMEM is off): use UIO';
  }
  if (path === 'hugetlb') {
    if (f.code === 'ENOMEM') {
      return (
        `not enough free hugepages (HugePages_Free ${meminfo('HugePages_Free')} of ` +
        `${meminfo('HugePages_Total')}, Hugepagesize ${meminfo('Hugepagesize')}): reserve more as root, ` +
        'e.g. `echo 64 > /proc/sys/vm/nr_hugepages`'
      );
    }
    if (f.code === 'EPERM' || f.code === 'EAGAIN') {
      return (
        'the hugepages could not be locked in memory: raise RLIMIT_MEMLOCK (ulimit -l; systemd LimitMEMLOCK=) ' +
        'to cover the hugepages mapped, or grant CAP_IPC_LOCK, or run as root'
      );
    }
  }
  if (path === '/proc/self/pagemap') {
    // EACCES: the open itself was refused, as for a process that changed its uid after it started (no capability
    // helps).
    if (f.code === 'EACCES') {
      return (
        '/proc/self/pagemap could not be opened: a process that starts as root and changes its uid later may not ' +
        'open it; start the process as its final user, with CAP_SYS_ADMIN (e.g. systemd ' +
        'AmbientCapabilities=CAP_SYS_ADMIN)'
      );
    }
    if (f.code === 'EPERM') {
      return (
        'reading physical addresses from /proc/self/pagemap needs CAP_SYS_ADMIN (the kernel reports page frame 0 ' +
        'without it): run as root or grant CAP_SYS_ADMIN'
      );
    }
  }
  return undefined;
}

const hexRange = (r: { start: bigint; end: bigint }): string =>
  `physical 0x${r.start.toString(16)}-0x${(r.end - 1n).toString(16)}`;

/**
 * Who holds physical `range` in /proc/iomem's text: RAM the kernel owns
 * ("System RAM", a top-level entry), or a driver (an entry nested inside a
 * device's own resource: request_mem_region's busy child). Undefined when
 * neither, or when the text shows no addresses (read without root, the
 * kernel prints zeros).
 */
export function iomemHolder(
  text: string,
  range: { start: bigint; end: bigint },
): { kind: 'ram' | 'claimed'; name: string } | undefined {
  const entries: { depth: number; start: bigint; end: bigint; name: string }[] = [];
  for (const line of text.split('\n')) {
    const m = /^( *)([0-9a-f]+)-([0-9a-f]+) : (.*)$/i.exec(line);
    if (m)
      entries.push({ depth: m[1].length / 2, start: BigInt(`0x${m[2]}`), end: BigInt(`0x${m[3]}`) + 1n, name: m[4] });
  }
  const overlaps = (e: { start: bigint; end: bigint }): boolean =>
    e.start < range.end && range.start < e.end && e.end > 1n;
  let parent: (typeof entries)[number] | undefined;
  for (const e of entries) {
    if (e.depth === 0) parent = e;
    if (!overlaps(e)) continue;
    if (e.depth === 0 && e.name === 'System RAM') return { kind: 'ram', name: e.name };
    if (e.depth > 0 && parent && parent.name !== 'System RAM' && overlaps(parent))
      return { kind: 'claimed', name: e.name };
  }
  return undefined;
}
