import { DiscoveryError, UsageError } from '../errors';
import {
  DmaPool,
  MmioWindow,
  UioSysfs,
  type InterruptSource,
  type RegisterBlock,
  type UioWindowSource,
} from '../platform';
import {
  BlkModel,
  ConsoleModel,
  InputModel,
  NetModel,
  RngModel,
  SimDevice,
  type SimDeviceModel,
  type SimOptions,
} from '../sim';
import { FeatureBit, features } from '../spec';
import {
  MmioTransport,
  describeSpec,
  discoverUio,
  openTransport,
  parseDeviceSpec,
  type DeviceSpec,
  type OpenTransportOptions,
} from '../transport';

/**
 * What a command works on: a transport bound to UIO (`/dev/uioN`, `uioN`),
 * a /dev/mem window (`<size>@<baseaddr>[:<irq>[:<id>]]`), or a software
 * device made in this process (`sim:<type>[:1|2|packed]`, type rng, blk,
 * console, net, input or empty) — for trying the tool without hardware.
 */
export type Target =
  | { readonly kind: 'device'; readonly spec: DeviceSpec; readonly where: string }
  | { readonly kind: 'sim'; readonly type: SimType; readonly version: 1 | 2 | 'packed'; readonly where: string };

export const SIM_TYPES = ['rng', 'blk', 'console', 'net', 'input', 'empty'] as const;
export type SimType = (typeof SIM_TYPES)[number];

/** Registers (and, for drivers, interrupts and DMA memory) of an opened target; close() releases all of it. */
export interface OpenedTarget {
  readonly where: string;
  readonly regs: RegisterBlock;
  /** UIO targets: where the window's size came from, and why not from the device tree when it did not. */
  readonly windowFrom?: UioWindowSource;
  readonly windowNote?: string;
  close(): void;
}

/** The device name forms, for messages. */
const DEVICE_FORMS = '/dev/uioN, uioN, <size>@<baseaddr>[:<irq>[:<id>]] or sim:<type>';

/**
 * Parses a command-line device name. A name that does not parse is a
 * UsageError (exit 2); a UIO device that is missing, or is not a
 * virtio-mmio transport, is a DiscoveryError (exit 1).
 */
export function parseTarget(text: string, sysfs: UioSysfs = new UioSysfs()): Target {
  if (typeof text !== 'string' || text.length === 0) throw new UsageError(`a device is needed: ${DEVICE_FORMS}`);
  if (text.startsWith('sim:')) return parseSim(text);
  const uio = /^(?:\/dev\/)?uio(\d+)$/.exec(text);
  if (uio) {
    const index = Number(uio[1]);
    const spec = discoverUio(sysfs).find((s) => s.device.index === index);
    if (!spec) {
      const any = sysfs.list().some((d) => d.index === index);
      throw new DiscoveryError(
        any
          ? `/dev/uio${index} is not a virtio-mmio transport (its UIO name and device-tree node say otherwise)`
          : `/dev/uio${index} does not exist: ${NO_UIO_HINT}`,
      );
    }
    return { kind: 'device', spec, where: describeSpec(spec) };
  }
  let spec: DeviceSpec;
  try {
    spec = parseDeviceSpec(text);
  } catch (error) {
    // A window's syntax error says what is wrong with it; anything else is not a name at all.
    const detail = text.includes('@') && error instanceof Error ? `: ${error.message}` : '';
    throw new UsageError(`'${text}' is not a device name${detail}; a device is ${DEVICE_FORMS}`, { cause: error });
  }
  return { kind: 'device', spec, where: describeSpec(spec) };
}

/** How to get virtio-mmio transports onto UIO, for messages. */
export const NO_UIO_HINT =
  'bind the transports to UIO: `modprobe uio_pdrv_genirq of_id=virtio,mmio` (or insmod uio.ko, then ' +
  'uio_pdrv_genirq.ko of_id=virtio,mmio) with the virtio_mmio kernel driver not bound to them, or name a ' +
  '/dev/mem window as <size>@<baseaddr>';

function parseSim(text: string): Target {
  const [, type, version = '2', ...rest] = text.split(':');
  if (!(SIM_TYPES as readonly string[]).includes(type) || rest.length > 0 || !['1', '2', 'packed'].includes(version)) {
    throw new UsageError(`bad sim device '${text}': sim:<${SIM_TYPES.join('|')}>[:1|2|packed]`);
  }
  return {
    kind: 'sim',
    type: type as SimType,
    version: version === 'packed' ? 'packed' : (Number(version) as 1 | 2),
    where: text,
  };
}

function simModel(type: SimType): SimDeviceModel | undefined {
  switch (type) {
    case 'rng':
      return new RngModel();
    case 'blk':
      return new BlkModel();
    case 'console':
      return new ConsoleModel({ echo: true });
    case 'net':
      return new NetModel({ loopback: true });
    case 'input':
      return new InputModel({ echoStatus: true });
    case 'empty':
      return undefined;
  }
}

const PACKED_TRANSPORT = features(
  FeatureBit.VERSION_1,
  FeatureBit.INDIRECT_DESC,
  FeatureBit.EVENT_IDX,
  FeatureBit.RING_RESET,
  FeatureBit.RING_PACKED,
);

/** A software device for a sim target, with its own memory; close() closes both. */
export function openSim(
  target: Extract<Target, { kind: 'sim' }>,
  extra: Partial<SimOptions> = {},
): { sim: SimDevice; memory: DmaPool; close(): void } {
  const memory = DmaPool.anonymous();
  const packed = target.version === 'packed';
  const sim = new SimDevice({
    memory,
    model: simModel(target.type),
    version: packed ? 2 : target.version,
    label: target.where,
    ...(packed ? { transportFeatures: PACKED_TRANSPORT } : {}),
    ...extra,
  });
  return {
    sim,
    memory,
    close() {
      sim.close();
      memory.close();
    },
  };
}

/** The register window of `target` alone (no interrupt fd, no register written). */
export function openRegisters(target: Target): OpenedTarget {
  if (target.kind === 'sim') {
    const opened = openSim(target);
    return { where: target.where, regs: opened.sim, close: () => opened.close() };
  }
  const { spec } = target;
  if (spec.kind === 'physical') {
    const regs = MmioWindow.openPhysical(spec.base, spec.size);
    return { where: target.where, regs, close: () => regs.close() };
  }
  const window = MmioWindow.uioWindow(spec.device, spec.map ?? 0, { windowSize: spec.windowSize });
  const regs = MmioWindow.openUio(spec.device, spec.map ?? 0, { windowSize: spec.windowSize });
  return {
    where: target.where,
    regs,
    windowFrom: window.from,
    ...(window.note ? { windowNote: window.note } : {}),
    close: () => regs.close(),
  };
}

export interface OpenForDriverOptions {
  /** Sim targets only: more SimOptions (e.g. `hostile`). */
  sim?: Partial<SimOptions>;
  /** A layer between the registers and the transport (selftest --strict watches the device through one). */
  wrapRegisters?: (regs: RegisterBlock) => RegisterBlock;
  /** Per-transport options (time limits). */
  transport?: Pick<OpenTransportOptions, 'resetTimeoutMs' | 'queueResetTimeoutMs'>;
}

/** A transport on `target` with DMA memory for a driver: hugetlb pages for hardware, plain memory for the sim. */
export function openForDriver(
  target: Target,
  options: OpenForDriverOptions = {},
): { where: string; transport: MmioTransport; memory: DmaPool; close(): void } {
  if (target.kind === 'sim') {
    const opened = openSim(target, options.sim);
    let transport: MmioTransport;
    try {
      transport = new MmioTransport(options.wrapRegisters ? options.wrapRegisters(opened.sim) : opened.sim, {
        ...options.transport,
        interrupts: opened.sim.interrupt as InterruptSource,
      });
    } catch (error) {
      opened.close();
      throw error;
    }
    return {
      where: target.where,
      transport,
      memory: opened.memory,
      close() {
        transport.close();
        opened.close();
      },
    };
  }
  const transport = openTransport(target.spec, { ...options.transport, wrapRegisters: options.wrapRegisters });
  let memory: DmaPool;
  try {
    memory = DmaPool.hugetlb();
  } catch (error) {
    transport.close();
    throw error;
  }
  return {
    where: target.where,
    transport,
    memory,
    close() {
      transport.close();
      memory.close();
    },
  };
}
