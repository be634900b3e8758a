/**
 * A deliberately tiny driver for the sim tests: raw register accesses and a
 * hand-built split ring, independent of lib/transport and lib/queue.
 */
import { echoRequest } from '../support/echo-request';
import { DmaPool, type DeviceMemory, type DmaRegion } from '../../lib/platform';
import { SimDevice, type SimDeviceModel, type SimOptions, type SimRequest } from '../../lib/sim';
import {
  availEventOffset,
  availRingBytes,
  descTableBytes,
  DeviceStatus,
  FeatureBit,
  feature,
  legacyLayout,
  MmioRegister as R,
  SplitRing,
  nextAvailNotificationData,
  usedEventOffset,
  usedRingBytes,
  VirtqDesc,
} from '../../lib/spec';

export const { ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK, FAILED, DEVICE_NEEDS_RESET } = DeviceStatus;

/** A model that records requests and echoes readable bytes into writable ones (or runs `handle`). */
export class TestModel implements SimDeviceModel {
  readonly deviceId: number;
  readonly features: bigint;
  readonly queueSizes: readonly number[];
  readonly config: Uint8Array;
  readonly configFields?: SimDeviceModel['configFields'];
  readonly requests: SimRequest[] = [];
  readonly calls: string[] = [];
  handler?: (request: SimRequest) => number | Promise<number>;

  constructor(
    options: Partial<Pick<SimDeviceModel, 'deviceId' | 'features' | 'queueSizes' | 'config' | 'configFields'>> = {},
  ) {
    this.deviceId = options.deviceId ?? 42;
    this.features = options.features ?? 0n;
    this.queueSizes = options.queueSizes ?? [8];
    this.config = options.config ?? new Uint8Array(0);
    this.configFields = options.configFields;
  }

  handle(request: SimRequest): number | Promise<number> {
    this.requests.push(request);
    if (this.handler) return this.handler(request);
    return echoRequest(request);
  }

  configWritten(offset: number, width: number): void {
    this.calls.push(`configWritten ${offset} ${width}`);
  }

  driverOk(features: bigint): void {
    this.calls.push(`driverOk 0x${features.toString(16)}`);
  }

  reset(): void {
    this.calls.push('reset');
  }

  resetQueue(queue: number): void {
    this.calls.push(`resetQueue ${queue}`);
  }
}

export interface Descriptor {
  addr: bigint;
  len: number;
  flags?: number;
  next?: number;
}

/** `bytes` of ring memory at device address `iova`, as a DataView. */
export function ringView(pool: DmaPool, iova: bigint, bytes: number): DataView {
  const u8 = pool.resolve(iova, bytes);
  if (!u8) throw new Error(`ring memory at 0x${iova.toString(16)} is not in the pool`);
  return new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
}

/** The driver's view of one split ring in DMA memory. */
export class TestRing {
  readonly desc: DataView;
  readonly avail: DataView;
  readonly used: DataView;
  private availIdx = 0;

  constructor(
    readonly index: number,
    readonly size: number,
    readonly addresses: { desc: bigint; driver: bigint; device: bigint },
    pool: DmaPool,
  ) {
    const view = (iova: bigint, bytes: number): DataView => ringView(pool, iova, bytes);
    this.desc = view(addresses.desc, descTableBytes(size));
    this.avail = view(addresses.driver, availRingBytes(size));
    this.used = view(addresses.device, usedRingBytes(size));
  }

  setDesc(i: number, d: Descriptor, table: DataView = this.desc): void {
    const at = i * SplitRing.DESC_SIZE;
    table.setBigUint64(at + SplitRing.DESC_ADDR, d.addr, true);
    table.setUint32(at + SplitRing.DESC_LEN, d.len, true);
    table.setUint16(at + SplitRing.DESC_FLAGS, d.flags ?? 0, true);
    table.setUint16(at + SplitRing.DESC_NEXT, d.next ?? 0, true);
  }

  /** Puts heads in the avail ring and publishes the new idx. */
  publish(...heads: number[]): number {
    for (const head of heads) {
      this.avail.setUint16(SplitRing.AVAIL_RING + 2 * (this.availIdx % this.size), head, true);
      this.availIdx = (this.availIdx + 1) & 0xffff;
    }
    this.avail.setUint16(SplitRing.AVAIL_IDX, this.availIdx, true);
    return this.availIdx;
  }

  get availIdxWritten(): number {
    return this.availIdx;
  }

  /** Sets avail.idx directly (for jump tests). */
  setAvailIdx(idx: number): void {
    this.availIdx = idx & 0xffff;
    this.avail.setUint16(SplitRing.AVAIL_IDX, this.availIdx, true);
  }

  get availFlags(): number {
    return this.avail.getUint16(SplitRing.AVAIL_FLAGS, true);
  }

  set availFlags(flags: number) {
    this.avail.setUint16(SplitRing.AVAIL_FLAGS, flags, true);
  }

  set usedEvent(value: number) {
    this.avail.setUint16(usedEventOffset(this.size), value, true);
  }

  get usedIdx(): number {
    return this.used.getUint16(SplitRing.USED_IDX, true);
  }

  get usedFlags(): number {
    return this.used.getUint16(SplitRing.USED_FLAGS, true);
  }

  get availEvent(): number {
    return this.used.getUint16(availEventOffset(this.size), true);
  }

  usedElement(i: number): { id: number; len: number } {
    const at = SplitRing.USED_RING + SplitRing.USED_ELEM_SIZE * (i % this.size);
    return { id: this.used.getUint32(at, true), len: this.used.getUint32(at + 4, true) };
  }
}

export const TRANSPORT_V2 =
  feature(FeatureBit.VERSION_1) |
  feature(FeatureBit.INDIRECT_DESC) |
  feature(FeatureBit.EVENT_IDX) |
  feature(FeatureBit.RING_RESET) |
  feature(FeatureBit.NOTIFICATION_DATA);
export const TRANSPORT_V1 = feature(FeatureBit.INDIRECT_DESC) | feature(FeatureBit.EVENT_IDX);

/** A sim on anonymous DMA memory plus register-level driver steps. */
export class TestDriver {
  readonly pool: DmaPool;
  readonly sim: SimDevice;
  readonly version: 1 | 2;
  /** What init() accepted. */
  negotiated = 0n;
  private readonly rings = new Map<number, TestRing>();

  /** `memoryFor` lets a test put its own DeviceMemory in front of the pool. */
  constructor(
    model: SimDeviceModel | undefined,
    options: Partial<SimOptions> = {},
    memoryFor?: (pool: DmaPool) => DeviceMemory,
  ) {
    this.pool = DmaPool.anonymous();
    this.sim = new SimDevice({ memory: memoryFor ? memoryFor(this.pool) : this.pool, model, ...options });
    this.version = this.sim.version;
  }

  close(): void {
    this.sim.close();
    this.pool.close();
  }

  get rules(): string[] {
    return this.sim.violations.map((v) => v.rule);
  }

  probe(): { magic: number; version: number; deviceId: number } {
    return {
      magic: this.sim.readl(R.MagicValue),
      version: this.sim.readl(R.Version),
      deviceId: this.sim.readl(R.DeviceID),
    };
  }

  status(): number {
    return this.sim.readl(R.Status);
  }

  addStatus(bit: number): number {
    this.sim.writel(R.Status, this.status() | bit);
    return this.status();
  }

  deviceFeatures(): bigint {
    let value = 0n;
    for (let sel = 0; sel < 2; sel++) {
      this.sim.writel(R.DeviceFeaturesSel, sel);
      value |= BigInt(this.sim.readl(R.DeviceFeatures)) << BigInt(32 * sel);
    }
    return value;
  }

  writeDriverFeatures(value: bigint): void {
    for (let sel = 0; sel < 2; sel++) {
      this.sim.writel(R.DriverFeaturesSel, sel);
      this.sim.writel(R.DriverFeatures, Number((value >> BigInt(32 * sel)) & 0xffff_ffffn));
    }
  }

  /** §3.1.1 steps 1–6 (legacy: without FEATURES_OK, with GuestPageSize). Accepts `wanted` ∩ offered. */
  init(wanted: bigint = -1n): bigint {
    this.probe();
    this.sim.writel(R.Status, 0);
    if (this.sim.pollUntil(R.Status, 0xff, 0, 100) === null) throw new Error('reset did not complete');
    this.addStatus(ACKNOWLEDGE);
    this.addStatus(DRIVER);
    const accepted = this.deviceFeatures() & wanted;
    this.writeDriverFeatures(accepted);
    if (this.version === 2) this.addStatus(FEATURES_OK);
    else this.sim.writel(R.GuestPageSize, 4096);
    this.negotiated = accepted;
    return accepted;
  }

  driverOk(): void {
    this.addStatus(DRIVER_OK);
  }

  /** §4.2.3.2 (Version 2) or §4.2.4 (Version 1) queue setup in fresh pool memory. */
  setupQueue(index: number, size: number): TestRing {
    const sim = this.sim;
    sim.writel(R.QueueSel, index);
    if (this.version === 2) {
      if (sim.readl(R.QueueReady) !== 0) throw new Error('queue in use');
      if (sim.readl(R.QueueNumMax) < size) throw new Error('queue too small');
      const desc = this.pool.allocate(descTableBytes(size), 16);
      const driver = this.pool.allocate(availRingBytes(size), 2);
      const device = this.pool.allocate(usedRingBytes(size), 4);
      sim.writel(R.QueueNum, size);
      this.writeAddress(R.QueueDescLow, desc.iova);
      this.writeAddress(R.QueueDriverLow, driver.iova);
      this.writeAddress(R.QueueDeviceLow, device.iova);
      sim.writel(R.QueueReady, 1);
      return this.remember(
        new TestRing(index, size, { desc: desc.iova, driver: driver.iova, device: device.iova }, this.pool),
      );
    }
    if (sim.readl(R.QueuePFN) !== 0) throw new Error('queue in use');
    if (sim.readl(R.QueueNumMax) < size) throw new Error('queue too small');
    const layout = legacyLayout(size, 4096);
    const area = this.pool.allocate(layout.bytes, 4096);
    sim.writel(R.QueueNum, size);
    sim.writel(R.QueueAlign, 4096);
    sim.writel(R.QueuePFN, Number(area.iova / 4096n));
    return this.remember(
      new TestRing(
        index,
        size,
        {
          desc: area.iova,
          driver: area.iova + BigInt(layout.availOffset),
          device: area.iova + BigInt(layout.usedOffset),
        },
        this.pool,
      ),
    );
  }

  private remember(ring: TestRing): TestRing {
    this.rings.set(ring.index, ring);
    return ring;
  }

  writeAddress(lowRegister: number, address: bigint): void {
    this.sim.writel(lowRegister, Number(address & 0xffff_ffffn));
    this.sim.writel(lowRegister + 4, Number(address >> 32n));
  }

  /** QueueNotify: the queue index, or with NOTIFICATION_DATA also the ring's avail idx (§4.2.3.3). */
  notify(queue: number): void {
    const ring = this.rings.get(queue);
    const withData = (this.negotiated & feature(FeatureBit.NOTIFICATION_DATA)) !== 0n && ring;
    this.sim.writel(R.QueueNotify, withData ? nextAvailNotificationData(queue, ring.availIdxWritten) : queue);
  }

  /** A DMA buffer with `bytes` in it. */
  buffer(bytes: Uint8Array | number): DmaRegion {
    const size = typeof bytes === 'number' ? bytes : bytes.length;
    const region = this.pool.allocate(Math.max(size, 1));
    if (typeof bytes !== 'number') new Uint8Array(region.view, region.offset, size).set(bytes);
    return region;
  }

  bytes(region: DmaRegion, length = region.size): Buffer {
    return Buffer.from(new Uint8Array(region.view, region.offset, length));
  }

  /** Acknowledges what InterruptStatus shows; returns it. */
  ack(): number {
    const pending = this.sim.readl(R.InterruptStatus);
    this.sim.writel(R.InterruptACK, pending);
    return pending;
  }
}

/** The next interrupt from the sim's line, or a rejection after `ms`. */
export async function nextInterrupt(sim: SimDevice, ms = 2000): Promise<number> {
  const events = sim.interrupt.events();
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no interrupt within ${ms} ms`)), ms);
    });
    const result = await Promise.race([events.next(), timeout]);
    if (result.done) throw new Error('the interrupt line closed');
    return result.value.count;
  } finally {
    clearTimeout(timer);
    await events.return?.();
  }
}

/** A factory of TestDrivers for one test file; every driver made is closed after each test. */
export function useTestDrivers(): (...args: ConstructorParameters<typeof TestDriver>) => TestDriver {
  const made: TestDriver[] = [];
  afterEach(() => {
    for (const driver of made.splice(0)) driver.close();
  });
  return (...args) => {
    const driver = new TestDriver(...args);
    made.push(driver);
    return driver;
  };
}

/** Lets setImmediate work (sim passes) and promise callbacks run. */
export async function turns(n = 3): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}

export { VirtqDesc, R };
