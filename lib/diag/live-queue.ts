import { DmaError, invalidArgValue, outOfRange, TransportError, VirtioError } from '../errors';
import type { DeviceMemory, RegisterBlock } from '../platform';
import {
  EMPTY_DEVICE_ID,
  MMIO_MAGIC_VALUE,
  MmioRegister,
  PackedDesc,
  PackedRing,
  SplitRing,
  availEventOffset,
  availRingBytes,
  describeStatus,
  descTableBytes,
  isPowerOfTwo,
  legacyQueueAreas,
  QUEUE_AREA_LOW,
  queueLiveRegister,
  usedEventOffset,
  usedRingBytes,
} from '../spec';
import { hex } from '../util/hex';
import {
  eventSuppression,
  packedSlotState,
  walkPackedChain,
  walkSplitChain,
  type OutstandingDump,
  type RingFormat,
  type RingState,
  type TableReader,
} from '../queue/queue-dump';

/**
 * Bytes of DMA memory by device address, for reading rings someone else
 * drives. `read` returns a copy; it throws a typed error (DmaError
 * NOT_PRESENT, SyscallError for /dev/mem) when the bytes cannot be read.
 */
export interface RingMemory {
  read(address: bigint, length: number): Uint8Array;
}

/** The most bytes one read may ask for (a descriptor table of 2^15 entries is 512 KiB). */
const MAX_READ = 1 << 20;

/** Ring memory seen the way a software device sees it (DmaPool, or any DeviceMemory). */
export function deviceRingMemory(memory: DeviceMemory): RingMemory {
  return {
    read(address, length) {
      if (!Number.isInteger(length) || length < 0 || length > MAX_READ)
        throw outOfRange(`length must be an integer in [0, ${MAX_READ}], got ${length}`);
      const bytes = memory.resolve(address, length);
      if (!bytes) throw new DmaError(DmaError.NOT_PRESENT, `no memory at ${hex(address)} (+${length} bytes)`);
      return bytes.slice();
    },
  };
}

export interface LiveQueueOptions {
  /** Queue Size (QueueNum is write-only); default QueueNumMax, where the spec lets it be read. */
  size?: number;
  /** Ring format (DriverFeatures is write-only, so VIRTIO_F_RING_PACKED cannot be read back); default 'split'. */
  format?: RingFormat;
  /** Version 1: the GuestPageSize the driver wrote (write-only; default 4096). */
  pageSize?: number;
  /** Version 1: the QueueAlign the driver wrote (write-only; default 4096, as Linux uses). */
  align?: number;
  /** Version 2: the areas' device addresses, when known from elsewhere; the address registers are then not read. */
  addresses?: { desc: bigint; driver: bigint; device: bigint };
}

/** What the rings in memory say: the same ring words as QueueDump, and the buffers they show available. */
export interface LiveRingDump {
  ring: RingState;
  /** Split: avail ring entries from used.idx to avail.idx; packed: chains whose flags mark them available. */
  outstanding: OutstandingDump[];
  /** Packed: where the driver's next descriptor goes, as inferred from the AVAIL bits. */
  inferred?: { nextAvail: number; availWrap: number };
  /** Values that break the ring's rules, found while reading. */
  problems: string[];
}

export interface LiveQueueDump {
  where: string;
  index: number;
  version: 1 | 2;
  deviceId: number;
  status: number;
  statusBits: string;
  /** Registers read after QueueSel ← index. */
  registers: {
    QueueNumMax?: number;
    QueueReady?: number;
    QueuePFN?: number;
    QueueDesc?: string;
    QueueDriver?: string;
    QueueDevice?: string;
  };
  /** QueueReady 1 (Version 2) or QueuePFN ≠ 0 (Version 1). */
  live: boolean;
  size?: number;
  sizeFrom: 'option' | 'QueueNumMax' | 'unknown';
  format: RingFormat;
  formatFrom: 'option' | 'default' | 'Version 1';
  addresses?: { desc: string; driver: string; device: string };
  addressesFrom: 'option' | 'registers' | 'QueuePFN' | 'not readable';
  /** QueueSel is write-only: it cannot be put back, and is left at `index`. */
  queueSelLeftAt: number;
  notes: string[];
  memory: LiveRingDump | { error: { code?: string; message: string; hint?: string } } | { skipped: string };
}

const DEFAULT_PAGE = 4096;

function checkOptions(index: number, options: LiveQueueOptions): void {
  if (!Number.isInteger(index) || index < 0 || index > 0xffff)
    throw outOfRange(`queue index must be an integer in [0, 65535], got ${String(index)}`);
  const { size, format, pageSize, align } = options;
  if (size !== undefined && (!Number.isInteger(size) || size < 1 || size > SplitRing.MAX_SIZE))
    throw outOfRange(`size must be an integer in [1, ${SplitRing.MAX_SIZE}], got ${String(size)}`);
  if (format !== undefined && format !== 'split' && format !== 'packed')
    throw invalidArgValue(`format must be 'split' or 'packed', got ${String(format)}`);
  for (const [name, value] of [
    ['pageSize', pageSize],
    ['align', align],
  ] as const) {
    if (value !== undefined && (!isPowerOfTwo(value) || value > 1 << 30))
      throw invalidArgValue(`${name} must be a power of two up to 2^30, got ${String(value)}`, 'range');
  }
}

/**
 * Reads the state of queue `index` of a device driven by someone else
 * (another process, the kernel, firmware): the registers a driver may
 * read, then the rings in `memory`. The only register written is QueueSel
 * (write-only, so it is left at `index`). Version 2 address registers are
 * write-only too (§4.2.2); some devices answer reads of them, QEMU answers
 * 0 — all zero is reported as not readable. Everything read from memory is
 * untrusted: every index is checked before it is used, chains are bounded
 * and cycle-safe, and a bad ring gives `problems`, never an exception.
 * A window without a virtio device throws TransportError.
 */
export function readLiveQueue(
  regs: RegisterBlock,
  index: number,
  memory: RingMemory,
  options: LiveQueueOptions = {},
): LiveQueueDump {
  checkOptions(index, options);
  const magic = regs.readl(MmioRegister.MagicValue);
  if (magic !== MMIO_MAGIC_VALUE)
    throw new TransportError(TransportError.BAD_MAGIC, `${regs.label}: MagicValue ${hex(magic)} is not "virt"`);
  const version = regs.readl(MmioRegister.Version);
  if (version !== 1 && version !== 2)
    throw new TransportError(TransportError.BAD_VERSION, `${regs.label}: Version ${version} is neither 1 nor 2`);
  const deviceId = regs.readl(MmioRegister.DeviceID);
  if (deviceId === EMPTY_DEVICE_ID)
    throw new TransportError(TransportError.EMPTY_SLOT, `${regs.label}: empty virtio-mmio slot (DeviceID 0)`);
  const status = regs.readl(MmioRegister.Status);
  regs.writel(MmioRegister.QueueSel, index);

  const notes: string[] = [];
  const dump: LiveQueueDump = {
    where: regs.label,
    index,
    version,
    deviceId,
    status,
    statusBits: describeStatus(status),
    registers: {},
    live: false,
    size: undefined,
    sizeFrom: 'unknown',
    format: 'split',
    formatFrom: 'default',
    addresses: undefined,
    addressesFrom: 'not readable',
    queueSelLeftAt: index,
    notes,
    memory: { skipped: '' },
  };
  if (version === 1) {
    dump.formatFrom = 'Version 1';
    if (options.format === 'packed') notes.push('the legacy interface has no packed ring (§4.2.4): read as split');
  } else if (options.format) {
    dump.format = options.format;
    dump.formatFrom = 'option';
  } else
    notes.push(
      'DriverFeatures is write-only, so VIRTIO_F_RING_PACKED cannot be read back: read as split (give the ' +
        'format if the driver negotiated packed)',
    );

  let desc = 0n;
  let driver = 0n;
  let device = 0n;
  let numMax: number | undefined;
  if (version === 2) {
    numMax = regs.readl(MmioRegister.QueueNumMax);
    dump.registers.QueueNumMax = numMax;
    const ready = regs.readl(queueLiveRegister(version));
    dump.registers.QueueReady = ready;
    dump.live = ready === 1;
    if (options.addresses) {
      ({ desc, driver, device } = options.addresses);
      dump.addressesFrom = 'option';
    } else if (numMax !== 0) {
      const pair = (low: number): bigint => (BigInt(regs.readl(low + 4)) << 32n) | BigInt(regs.readl(low));
      desc = pair(QUEUE_AREA_LOW.desc);
      driver = pair(QUEUE_AREA_LOW.driver);
      device = pair(QUEUE_AREA_LOW.device);
      Object.assign(dump.registers, { QueueDesc: hex(desc), QueueDriver: hex(driver), QueueDevice: hex(device) });
      if (desc === 0n && driver === 0n && device === 0n) {
        notes.push(
          'QueueDesc/QueueDriver/QueueDevice are write-only (§4.2.2) and read 0 here (QEMU answers 0): give ' +
            'the addresses to read the rings',
        );
      } else dump.addressesFrom = 'registers';
    }
  } else {
    const pfn = regs.readl(queueLiveRegister(version));
    dump.registers.QueuePFN = pfn;
    dump.live = pfn !== 0;
    // §4.2.4: QueueNumMax may be read only while QueuePFN is 0.
    if (pfn === 0) {
      numMax = regs.readl(MmioRegister.QueueNumMax);
      dump.registers.QueueNumMax = numMax;
    }
  }

  if (options.size !== undefined) {
    dump.size = options.size;
    dump.sizeFrom = 'option';
  } else if (numMax !== undefined && numMax !== 0) {
    dump.size = numMax;
    dump.sizeFrom = 'QueueNumMax';
    notes.push(
      'QueueNum is write-only: the size shown is QueueNumMax, which the driver may have lowered (give the size if so)',
    );
  }

  if (version === 1 && dump.live && dump.size !== undefined) {
    const pageSize = options.pageSize ?? DEFAULT_PAGE;
    const align = options.align ?? DEFAULT_PAGE;
    if (options.pageSize === undefined || options.align === undefined)
      notes.push(`GuestPageSize and QueueAlign are write-only: assumed ${pageSize} and ${align}`);
    ({ desc, driver, device } = legacyQueueAreas(dump.registers.QueuePFN!, pageSize, dump.size, align));
    dump.addressesFrom = 'QueuePFN';
  }
  if (dump.addressesFrom !== 'not readable')
    dump.addresses = { desc: hex(desc), driver: hex(driver), device: hex(device) };

  if (numMax === 0) {
    const error = new TransportError(
      TransportError.QUEUE_UNAVAILABLE,
      `${regs.label}: queue ${index} does not exist (QueueNumMax 0)`,
    );
    dump.memory = { error: { code: error.code, message: error.message } };
  } else if (!dump.live)
    dump.memory = {
      skipped:
        `queue ${index} is not live (${version === 2 ? 'QueueReady 0' : 'QueuePFN 0'}` +
        `): the device uses no rings for it`,
    };
  else if (dump.size === undefined) {
    const error = new TransportError(
      TransportError.STATE,
      'the ring size is unknown: QueueNum is write-only and QueueNumMax may not be read while QueuePFN is set ' +
        '(§4.2.4); give the size',
    );
    dump.memory = { error: { code: error.code, message: error.message } };
  } else if (dump.addressesFrom === 'not readable') {
    const error = new TransportError(
      TransportError.STATE,
      'the ring addresses are unknown (write-only registers that read 0); give them',
    );
    dump.memory = { error: { code: error.code, message: error.message } };
  } else {
    const size = dump.size;
    try {
      dump.memory =
        dump.format === 'packed'
          ? readPacked(memory, size, desc, driver, device)
          : readSplit(memory, size, desc, driver, device);
    } catch (error) {
      dump.memory = { error: describeFailure(error) };
    }
  }
  return dump;
}

function describeFailure(error: unknown): { code?: string; message: string; hint?: string } {
  const code = error instanceof VirtioError ? error.code : (error as { code?: unknown })?.code;
  const hint = (error as { hint?: unknown })?.hint;
  return {
    ...(typeof code === 'string' ? { code } : {}),
    message: error instanceof Error ? error.message : String(error),
    ...(typeof hint === 'string' ? { hint } : {}),
  };
}

const view = (bytes: Uint8Array): DataView => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);

const tableReader =
  (memory: RingMemory): TableReader =>
  (address, length) =>
    view(memory.read(address, length));

/**
 * Split ring (§2.7): the buffers between used.idx and avail.idx are the
 * ones the device has not returned. Their heads are the avail ring entries
 * at those positions — exact for a device that uses buffers in order; one
 * that completes out of order leaves the count right but may show other heads.
 */
function readSplit(memory: RingMemory, size: number, desc: bigint, driver: bigint, device: bigint): LiveRingDump {
  const table = view(memory.read(desc, descTableBytes(size)));
  const avail = view(memory.read(driver, availRingBytes(size)));
  const used = view(memory.read(device, usedRingBytes(size)));
  const ring: RingState = {
    format: 'split',
    availFlags: avail.getUint16(SplitRing.AVAIL_FLAGS, true),
    availIdx: avail.getUint16(SplitRing.AVAIL_IDX, true),
    usedFlags: used.getUint16(SplitRing.USED_FLAGS, true),
    usedIdx: used.getUint16(SplitRing.USED_IDX, true),
    // Meaningful only with VIRTIO_F_EVENT_IDX, which cannot be read back; shown always.
    usedEvent: avail.getUint16(usedEventOffset(size), true),
    availEvent: used.getUint16(availEventOffset(size), true),
  };
  const problems: string[] = [];
  if (!isPowerOfTwo(size)) problems.push(`a split ring's size is a power of two (§2.7); ${size} is not`);
  const ahead = (ring.availIdx - ring.usedIdx) & 0xffff;
  const outstanding: OutstandingDump[] = [];
  if (ahead > size) {
    problems.push(
      `avail.idx ${ring.availIdx} is ${ahead} ahead of used.idx ${ring.usedIdx}, more than the ${size} ` +
        `entries of the ring (§2.7.6, §2.7.8)`,
    );
  } else {
    const read = tableReader(memory);
    for (let n = 0; n < ahead; n++) {
      const position = (ring.usedIdx + n) & 0xffff;
      const head = avail.getUint16(SplitRing.AVAIL_RING + 2 * (position % size), true);
      outstanding.push(walkSplitChain(table, size, head, read, size));
    }
  }
  for (const chain of outstanding)
    if (chain.problem) problems.push(`avail ring entry for head ${chain.id}: ${chain.problem}`);
  return { ring, outstanding, problems };
}

/**
 * Packed ring (§2.8): the AVAIL bit of every slot is the wrap counter of
 * the round in which the driver last wrote it (§2.8.1), so the slot where
 * it changes is the driver's next one. Walking the ring from there (the
 * oldest slot), chains whose head is available for its round are the
 * buffers the device has not used. A chain whose head the device already
 * overwrote with a used descriptor may leave its later descriptors looking
 * available: the result is inferred.
 */
function readPacked(memory: RingMemory, size: number, desc: bigint, driver: bigint, device: bigint): LiveRingDump {
  const ringBytes = view(memory.read(desc, size * PackedRing.DESC_SIZE));
  const ring: RingState = {
    format: 'packed',
    driverEvent: eventSuppression(view(memory.read(driver, PackedRing.EVENT_SIZE)), 0),
    deviceEvent: eventSuppression(view(memory.read(device, PackedRing.EVENT_SIZE)), 0),
  };
  const availBit = (slot: number): boolean =>
    (ringBytes.getUint16(slot * PackedRing.DESC_SIZE + PackedRing.DESC_FLAGS, true) & PackedDesc.F_AVAIL) !== 0;
  const firstWrap = availBit(0);
  let nextAvail = 0;
  for (let slot = 1; slot < size; slot++) {
    if (availBit(slot) !== firstWrap) {
      nextAvail = slot;
      break;
    }
  }
  // No change anywhere: the driver's next slot is 0, in the round after the one every slot was written in.
  const availWrap = nextAvail === 0 ? !firstWrap : firstWrap;
  const read = tableReader(memory);
  const outstanding: OutstandingDump[] = [];
  const problems: string[] = [];
  let slot = nextAvail;
  let wrap = !availWrap;
  for (let left = size; left > 0;) {
    const flags = ringBytes.getUint16(slot * PackedRing.DESC_SIZE + PackedRing.DESC_FLAGS, true);
    let step = 1;
    if (packedSlotState(flags, wrap) === 'available') {
      const chain = walkPackedChain(ringBytes, size, slot, wrap, left, read, size);
      const id = chain[chain.length - 1].id!;
      const entry: OutstandingDump = { id, descriptors: chain };
      const problem = chain.find((d) => d.problem)?.problem;
      if (problem) problems.push(`chain at slot ${slot}: ${problem}`);
      if (id >= size) {
        entry.problem = `Buffer ID ${id} is not below the queue size ${size}`;
        problems.push(`chain at slot ${slot}: ${entry.problem}`);
      }
      outstanding.push(entry);
      step = chain.length;
    }
    left -= step;
    slot += step;
    if (slot >= size) {
      slot -= size;
      wrap = !wrap;
    }
  }
  return { ring, outstanding, inferred: { nextAvail, availWrap: availWrap ? 1 : 0 }, problems };
}
