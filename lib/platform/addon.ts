import '../disposable';
/**
 * The only file that loads the C++ addon (native/), and the TypeScript
 * declaration of everything it exports. Native failures are thrown as the
 * library's typed errors through the factory installed here.
 */
import { existsSync, readdirSync } from 'node:fs';
import { arch as osArch } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';

import {
  ClosedError,
  DmaError,
  invalidArgType,
  invalidArgValue,
  outOfRange,
  SyscallError,
  VirtioError,
} from '../errors';
import type { RegisterBlock } from './register-block';
import { syscallHint } from './syscall-hints';

/** A mapped register window: the addon's object is the RegisterBlock itself. */
export interface NativeMmioRegion extends RegisterBlock {
  /** Benchmark probes: the same readl/writel through node-addon-api's method dispatch. */
  readlViaWrapper(offset: number): number;
  writelViaWrapper(offset: number, value: number): void;
  /** The env cleanup hook's write (native/exit_write.cc); see RegisterBlock.armExitWrite. */
  armExitWrite(offset: number, value: number, pollMs?: number): void;
  disarmExitWrite(): void;
  /** Whether a write is armed for this thread's teardown. */
  readonly exitWriteArmed: boolean;
  /** close(), keyed Symbol.for('nodejs.dispose') by the addon (= Symbol.dispose): for `using`. */
  [Symbol.dispose](): void;
}

export type DmaKind = 'hugetlb' | 'physical' | 'anonymous';

/**
 * The barrier set the addon was built with: 'arm64' (DSB/DMB, MMIO as Linux
 * arm64), 'armv7' (DSB around MMIO, as Linux arm), 'x86' (mfence/lfence/sfence,
 * MMIO with compiler barriers only), 'fences' (full thread fences elsewhere).
 */
export type BarrierKind = 'arm64' | 'armv7' | 'x86' | 'fences';

export interface NativeDmaMemory {
  /**
   * External ArrayBuffer over the memory; detached by free(). The memory is
   * unmapped only once the garbage collector finds nothing that can reach it
   * (a buffer made by transfer(), a thread-pool job writing into a view).
   */
  readonly view: ArrayBuffer;
  /** Device (bus) address of view[0]. */
  readonly iova: bigint;
  readonly size: number;
  readonly kind: DmaKind;
  readonly freed: boolean;
  /** Device address of byte `offset` (hugetlb: read again from pagemap). */
  translate(offset: number): bigint;
  free(): void;
}

export interface NativeUioFile {
  readonly fd: number;
  readonly path: string;
  readonly closed: boolean;
  enable(): void;
  disable(): void;
  /** Total interrupt count, or null when none is pending. */
  readCount(): number | null;
  close(): void;
}

/**
 * Fds watched on the event loop's own epoll set, one libuv poll handle
 * each: a wake-up costs libuv's epoll wait alone. An fd added with EPOLLET
 * becomes edge-triggered after its first wake-up when libuv's registration
 * allows it; its wake-ups then carry EPOLLET (the fd need not be read),
 * and until then they do not (the fd must be read, as level-triggered).
 */
export interface NativePollSet {
  readonly size: number;
  readonly closed: boolean;
  /** Watched fds whose registration is edge-triggered now. */
  readonly edgeCount: number;
  add(fd: number, events?: number): void;
  remove(fd: number): void;
  ref(): this;
  unref(): this;
  close(): void;
}

export interface EpollConstants {
  EPOLLIN: number;
  EPOLLPRI: number;
  EPOLLOUT: number;
  EPOLLERR: number;
  EPOLLHUP: number;
  EPOLLRDHUP: number;
  EPOLLET: number;
}

/**
 * What the bench addon (build/Release/virtio_mmio_bench.node) exports: built
 * from bench/native in a checkout, loaded only by bench/ programs and their
 * test, never by the library nor shipped with it.
 */
export interface NativeBenchProbes {
  rawNoop(): void;
  wrappedNoop(): void;
  /** Nanoseconds for `iterations` readl-equivalent loads done in C; a TypeError unless `region` is an MmioRegion. */
  cReadLoop(region: NativeMmioRegion, offset: number, iterations: number): number;
  cWriteLoop(region: NativeMmioRegion, offset: number, iterations: number): number;
  /** A second shared mapping of a file's first `size` bytes. */
  mapFileView(path: string, size: number): ArrayBuffer;
}

export interface NativeAddon {
  MmioRegion: new (
    path: string,
    mmapOffset: number | bigint,
    windowOffset: number,
    size: number,
    sync?: boolean,
  ) => NativeMmioRegion;
  UioFile: new (pathOrFd: string | number, label?: string) => NativeUioFile;
  PollSet: new (callback: (fd: number, events: number) => void) => NativePollSet;
  allocHugetlb(size: number): NativeDmaMemory;
  mapPhysical(phys: bigint | number, size: number, cached?: boolean): NativeDmaMemory;
  allocAnonymous(size: number, iova: bigint | number): NativeDmaMemory;
  mb(): void;
  rmb(): void;
  wmb(): void;
  dmaRmb(): void;
  dmaWmb(): void;
  eventfdCreate(initval?: number, semaphore?: boolean): number;
  eventfdWrite(fd: number, value?: number | bigint): void;
  eventfdRead(fd: number): bigint | null;
  pipe(): [number, number];
  socketpair(): [number, number];
  closeFd(fd: number): void;
  setErrorFactory(factory: (kind: string, message: string, props: Record<string, unknown>) => Error): void;
  /** Which barrier set native/io_access.h compiled in (see BarrierKind). */
  readonly barrierKind: BarrierKind;
  readonly pageSize: number;
  readonly constants: EpollConstants;
}

/** The physical range of a failed /dev/mem mmap, from the addon's "(offset|physical 0x…, length 0x…)" detail. */
function mappedRange(message: string): { start: bigint; end: bigint } | undefined {
  const m = /\((?:offset|physical) 0x([0-9a-f]+), length 0x([0-9a-f]+)\)/i.exec(message);
  if (!m) return undefined;
  const start = BigInt(`0x${m[1]}`);
  return { start, end: start + BigInt(`0x${m[2]}`) };
}

/** Turns the addon's (kind, message, props) into the library's error classes. */
export function makeNativeError(kind: string, message: string, props: Record<string, unknown>): Error {
  switch (kind) {
    case 'syscall': {
      const code = String(props.code);
      const syscall = String(props.syscall);
      const path = typeof props.path === 'string' ? props.path : undefined;
      return new SyscallError({
        message,
        errno: Number(props.errno),
        code,
        syscall,
        path,
        hint: syscallHint({ code, syscall, path, range: path === '/dev/mem' ? mappedRange(message) : undefined }),
      });
    }
    case 'range':
      // The addon's bounds and alignment checks on an access (offset, width, value).
      return /align/i.test(message) ? invalidArgValue(message, 'range') : outOfRange(message);
    case 'type':
      return invalidArgType(message);
    case 'closed':
      return new ClosedError(message);
    case 'dma':
      return new DmaError(DmaError.NOT_PRESENT, message);
    case 'dma-contiguity':
      return new DmaError(DmaError.NOT_CONTIGUOUS, message);
    default:
      return new VirtioError('ERR_VIRTIO_NATIVE', message);
  }
}

/** No build from source and no prebuild for this platform, arch, ARM version and libc. */
export const ADDON_NOT_FOUND = 'ERR_VIRTIO_ADDON_NOT_FOUND';
/** An addon was found but could not be loaded (another glibc or libstdc++, another architecture, a damaged file). */
export const ADDON_LOAD_FAILED = 'ERR_VIRTIO_ADDON_LOAD';

/** The addon's file in a build from source (node-gyp's build/Release; cmake-js's, copied there). */
const ADDON_FILE = 'virtio_mmio.node';
const BUILD_DIRS = ['build/Release', 'build/Debug'];

const buildFromSource =
  'install a C++ compiler, make and python3 (Debian, Ubuntu, Raspberry Pi OS: apt-get install g++ make python3), ' +
  'then run `npm rebuild virtio-mmio --build-from-source` in your project';

/**
 * The package's root: the nearest directory holding a package.json above `from` (dist/platform/ installed,
 * lib/platform/ in a checkout).
 */
export function addonPackageRoot(from: string = __dirname): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) return from;
  }
}

/** This machine as node-gyp-build matches prebuilds (same variables, same overrides), for messages. */
function machineTags(): { tuple: string; armv: string; libc: string } {
  const arch = process.env.npm_config_arch || osArch();
  const platform = process.env.npm_config_platform || process.platform;
  const variables = (process.config?.variables ?? {}) as { arm_version?: string };
  const armv =
    process.env.ARM_VERSION || (arch === 'arm64' ? '8' : arch === 'arm' ? String(variables.arm_version ?? '') : '');
  const libc = process.env.LIBC || (platform === 'linux' && existsSync('/etc/alpine-release') ? 'musl' : 'glibc');
  return { tuple: `${platform}-${arch}`, armv, libc };
}

function listPrebuilds(root: string): string[] {
  const list = (dir: string): string[] => {
    try {
      return readdirSync(dir);
    } catch {
      return [];
    }
  };
  return list(join(root, 'prebuilds')).flatMap((tuple) =>
    list(join(root, 'prebuilds', tuple))
      .filter((file) => file.endsWith('.node'))
      .map((file) => `${tuple}/${file}`),
  );
}

/**
 * The addon's path: a build from source first (build/Release/virtio_mmio.node
 * by name: a checkout also builds the bench addon there), then the prebuild
 * node-gyp-build picks from prebuilds/<platform>-<arch>/ (prebuildify's names:
 * node.napi[.armv<N>][.glibc|.musl].node), the choice its install script made
 * when it skipped the build. Throws ADDON_NOT_FOUND saying what was looked for.
 */
export function locateAddon(root: string = addonPackageRoot()): string {
  for (const dir of BUILD_DIRS) {
    const built = join(root, dir, ADDON_FILE);
    if (existsSync(built)) return built;
  }
  let nodeGypBuild: { path(dir: string): string };
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- lazy: a source build needs no node-gyp-build
    nodeGypBuild = require('node-gyp-build');
  } catch (err) {
    throw new VirtioError(
      ADDON_NOT_FOUND,
      `virtio-mmio: no build from source (${join(root, BUILD_DIRS[0], ADDON_FILE)}), and node-gyp-build, which finds ` +
        `the prebuilds, cannot be loaded (${String((err as Error).message).split('\n')[0]}): reinstall ` +
        `virtio-mmio with its dependencies.`,
      { cause: err },
    );
  }
  let cause: unknown;
  try {
    const found = nodeGypBuild.path(root);
    // Anything but a prebuild would be another addon (bench) left in a build directory.
    if (dirname(dirname(found)).split(sep).pop() === 'prebuilds') return found;
    cause = new Error(`node-gyp-build offered ${found}, which is not ${ADDON_FILE} nor a prebuild`);
  } catch (err) {
    cause = err;
  }
  const { tuple, armv, libc } = machineTags();
  const wanted = ['node', 'napi', armv && `armv${armv}`, libc].filter(Boolean).join('.');
  const armVersion = armv
    ? `, armv${armv}`
    : tuple.endsWith('-arm')
      ? ', ARM version unknown (ARM_VERSION, process.config.variables.arm_version)'
      : '';
  const shipped = listPrebuilds(root);
  throw new VirtioError(
    ADDON_NOT_FOUND,
    `virtio-mmio: no native addon for this machine (${tuple}${armVersion}, ${libc}). ` +
      `Looked for a build from source, ${join(root, BUILD_DIRS[0], ADDON_FILE)}, and for a prebuild, ` +
      `${join(root, 'prebuilds', tuple, `${wanted}.node`)} (or a less specific node.napi*.node there); ` +
      (shipped.length > 0
        ? `the package's prebuilds (${shipped.join(', ')}) match none of this platform, arch and libc. `
        : `the package has no prebuilds. `) +
      `To build it from source, ${buildFromSource}.`,
    { cause },
  );
}

/** Loads the addon that locateAddon() finds; ADDON_LOAD_FAILED when the file is there but will not load. */
export function loadAddon(root: string = addonPackageRoot()): { addon: NativeAddon; path: string } {
  const path = locateAddon(root);
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- the addon's path is only known at run time
    return { addon: require(path) as NativeAddon, path };
  } catch (err) {
    const what = relative(root, path).split(sep)[0] === 'prebuilds' ? 'the prebuild' : 'the build';
    throw new VirtioError(
      ADDON_LOAD_FAILED,
      `virtio-mmio: ${what} ${path} does not load here: ${(err as Error).message}. ` +
        `If this system's glibc or libstdc++ is older than the one it was built with, or the file is from ` +
        `another machine, ` +
        `build it from source: ${buildFromSource}.`,
      { cause: err },
    );
  }
}

const loaded = loadAddon();
/** Where the addon was loaded from: build/Release/virtio_mmio.node, or prebuilds/<platform>-<arch>/node.napi*.node. */
export const addonPath: string = loaded.path;
export const native: NativeAddon = loaded.addon;
native.setErrorFactory(makeNativeError);
