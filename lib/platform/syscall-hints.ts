import { readFileSync } from 'node:fs';

/** What a failed system call reported, as the addon passes it up. */
export interface SyscallFailure {
  code: string;
  syscall: string;
  path?: string;
}

const UIO_DEVICE = /^\/dev\/uio\d+$/;

function meminfo(key: string, file = '/proc/meminfo'): string {
  try {
    const line = readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith(`${key}:`));
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
export function syscallHint(f: SyscallFailure): string | undefined {
  const denied = f.code === 'EACCES' || f.code === 'EPERM';
  const path = f.path ?? '';
  if (UIO_DEVICE.test(path)) {
    if (denied) {
      return `${path} needs read and write access: run as root, or grant it with a udev rule such as ` +
        `SUBSYSTEM=="uio", GROUP="uio", MODE="0660" and add your user to that group`;
    }
    if (f.code === 'ENOENT') {
      return 'no such UIO device: bind the virtio-mmio nodes to a UIO driver, e.g. ' +
        '`modprobe uio_pdrv_genirq of_id=virtio,mmio` (or insmod uio_pdrv_genirq.ko of_id=virtio,mmio)';
    }
    if (f.code === 'ENOSYS' && f.syscall === 'write') {
      return 'this UIO driver has no irqcontrol, so the interrupt cannot be enabled or disabled from user space';
    }
  }
  if (path === '/dev/mem') {
    if (denied) {
      return '/dev/mem needs root (CAP_SYS_RAWIO); with CONFIG_STRICT_DEVMEM or CONFIG_IO_STRICT_DEVMEM the kernel ' +
        'also refuses ranges that are RAM or claimed by a driver: reserve the range (reserved-memory) or use UIO';
    }
    if (f.code === 'ENOENT') return 'this kernel has no /dev/mem (CONFIG_DEVMEM is off): use UIO';
  }
  if (path === 'hugetlb') {
    if (f.code === 'ENOMEM') {
      return `not enough free hugepages (HugePages_Free ${meminfo('HugePages_Free')} of ` +
        `${meminfo('HugePages_Total')}, Hugepagesize ${meminfo('Hugepagesize')}): reserve more as root, ` +
        'e.g. `echo 64 > /proc/sys/vm/nr_hugepages`';
    }
    if (f.code === 'EPERM' || f.code === 'EAGAIN') {
      return 'the hugepages could not be locked in memory: raise RLIMIT_MEMLOCK (ulimit -l; systemd LimitMEMLOCK=) ' +
        'to cover the hugepages mapped, or grant CAP_IPC_LOCK, or run as root';
    }
  }
  if (path === '/proc/self/pagemap') {
    // EACCES: the open itself was refused, as for a process that changed its uid after it started (no capability helps).
    if (f.code === 'EACCES') {
      return '/proc/self/pagemap could not be opened: a process that starts as root and changes its uid later may not ' +
        'open it; start the process as its final user, with CAP_SYS_ADMIN (e.g. systemd AmbientCapabilities=CAP_SYS_ADMIN)';
    }
    if (f.code === 'EPERM') {
      return 'reading physical addresses from /proc/self/pagemap needs CAP_SYS_ADMIN (the kernel reports page frame 0 ' +
        'without it): run as root or grant CAP_SYS_ADMIN';
    }
  }
  return undefined;
}
