import { formatInspect, inspect, nameFeatures, type InspectReport, type RegisterReading } from '../../lib/cli/inspect';
import { VirtioBlk, VirtioRng } from '../../lib/devices';
import { DmaPool, type RegisterBlock } from '../../lib/platform';
import {
  BlkModel,
  ConsoleModel,
  InputModel,
  NetModel,
  RngModel,
  SimDevice,
  type SimDeviceModel,
  type SimOptions,
} from '../../lib/sim';
import { FeatureBit, features, MmioRegister, type MmioRegisterName } from '../../lib/spec';
import { echoModel, SIM_VARIANTS, simRig, type SimVariant } from '../support/sim-rig';

const PACKED_TRANSPORT = features(
  FeatureBit.VERSION_1,
  FeatureBit.INDIRECT_DESC,
  FeatureBit.EVENT_IDX,
  FeatureBit.RING_RESET,
  FeatureBit.NOTIFICATION_DATA,
  FeatureBit.RING_PACKED,
);

/** A sim nobody has touched (inspect is the first to read it), strict mode on; closed after each test. */
const opened: { sim: SimDevice; pool: DmaPool }[] = [];
function bareSim(variant: SimVariant, model: SimDeviceModel | undefined, options: Partial<SimOptions> = {}): SimDevice {
  const pool = DmaPool.anonymous();
  const version = variant === 1 ? 1 : 2;
  const ring = variant === 'packed' ? { transportFeatures: PACKED_TRANSPORT } : {};
  const sim = new SimDevice({ memory: pool, version, model, strict: true, ...ring, ...options });
  opened.push({ sim, pool });
  return sim;
}

afterEach(() => {
  for (const { sim, pool } of opened.splice(0)) {
    sim.close();
    pool.close();
  }
});

/** A RegisterBlock that records every write's offset and passes everything on. */
function recordingWrites(regs: RegisterBlock): { regs: RegisterBlock; writes: number[] } {
  const writes: number[] = [];
  const proxy = new Proxy(regs, {
    get(target, key) {
      const value = Reflect.get(target, key, target) as unknown;
      if (typeof value !== 'function') return value;
      if (key === 'writeb' || key === 'writew' || key === 'writel' || key === 'copyIn') {
        return (offset: number, ...rest: unknown[]) => {
          writes.push(offset);
          return (value as (...a: unknown[]) => unknown).call(target, offset, ...rest);
        };
      }
      return (value as (...a: unknown[]) => unknown).bind(target);
    },
  });
  return { regs: proxy, writes };
}

const SELECTORS = new Set<number>([MmioRegister.DeviceFeaturesSel, MmioRegister.QueueSel, MmioRegister.SHMSel]);

const register = (report: InspectReport, name: MmioRegisterName): RegisterReading | undefined =>
  report.registers.find((r) => r.name === name);
const featureNames = (report: InspectReport): string[] => report.features?.bits.map((b) => b.name) ?? [];

/**
 * The checks every inspection of a present device must pass: identity, read-only, JSON, write-only registers unread.
 */
function expectCleanReport(sim: SimDevice, report: InspectReport, variant: SimVariant): void {
  const version = variant === 1 ? 1 : 2;
  expect(report.problem).toBeUndefined();
  expect(report).toMatchObject({
    magicValue: '0x74726976',
    magicOk: true,
    version,
    vendorId: '0x4d4d4956',
    vendor: 'VIMM',
    status: 0,
    statusBits: '0',
  });
  expect(JSON.parse(JSON.stringify(report))).toEqual(report);
  expect(sim.violations).toEqual([]);
  expect(sim.status).toBe(0);
  expect(register(report, 'MagicValue')?.value).toBe(0x74726976);
  for (const r of report.registers) {
    if (r.access === 'W')
      expect({ name: r.name, value: r.value, values: r.values }).toEqual({
        name: r.name,
        value: undefined,
        values: undefined,
      });
  }
  // The layout of the version, every register once.
  const names = report.registers.map((r) => r.name);
  expect(new Set(names).size).toBe(names.length);
  expect(names.includes('QueuePFN')).toBe(version === 1);
  expect(names.includes('ConfigGeneration')).toBe(version === 2);
  expect(report.writes.every((name) => SELECTORS.has(MmioRegister[name]))).toBe(true);
}

describe.each(SIM_VARIANTS)('inspect on %s', (_label, variant) => {
  const version = variant === 1 ? 1 : 2;

  test('rng: identity, no device features, no config space, one queue', () => {
    const sim = bareSim(variant, new RngModel({ queueSize: 32 }));
    const report = inspect(sim);
    expectCleanReport(sim, report, variant);
    expect(report).toMatchObject({ deviceId: 4, device: 'ENTROPY (4)' });
    expect(report.features!.bits.filter((b) => b.group !== 'transport')).toEqual([]);
    expect(featureNames(report)).toContain('VIRTIO_F_INDIRECT_DESC');
    expect(featureNames(report).includes('VIRTIO_F_VERSION_1')).toBe(version === 2);
    expect(report.config).toBeUndefined();
    expect(report.queues).toEqual([{ index: 0, sizeMax: 32, live: false, ...(version === 1 ? { pfn: 0 } : {}) }]);
    expect(register(report, 'QueueNumMax')?.values?.[0]).toEqual({ selector: 'QueueSel 0', value: 32 });
  });

  test('blk: device features by name, config fields the features make meaningful, every queue', () => {
    const model = new BlkModel({
      disk: new Uint8Array(16 * 512),
      blkSize: 4096,
      segMax: 7,
      sizeMax: 65536,
      numQueues: 3,
      queueSize: 64,
      discard: { maxSectors: 1024, maxSegments: 4 },
      writeZeroes: { maxSectors: 2048, maxSegments: 2, mayUnmap: true },
    });
    const sim = bareSim(variant, model);
    const report = inspect(sim);
    expectCleanReport(sim, report, variant);
    expect(report).toMatchObject({ deviceId: 2, device: 'BLOCK (2)' });
    expect(featureNames(report)).toEqual(
      expect.arrayContaining([
        'VIRTIO_BLK_F_FLUSH',
        'VIRTIO_BLK_F_BLK_SIZE',
        'VIRTIO_BLK_F_SEG_MAX',
        'VIRTIO_BLK_F_SIZE_MAX',
        'VIRTIO_BLK_F_MQ',
        'VIRTIO_BLK_F_DISCARD',
        'VIRTIO_BLK_F_WRITE_ZEROES',
      ]),
    );
    expect(featureNames(report)).not.toContain('VIRTIO_BLK_F_GEOMETRY');
    expect(BigInt(report.features!.offered)).toBe(sim.deviceFeatures);
    expect(report.config!.fields).toEqual({
      capacity: '0x10',
      size_max: 65536,
      seg_max: 7,
      blk_size: 4096,
      num_queues: 3,
      max_discard_sectors: 1024,
      max_discard_seg: 4,
      discard_sector_alignment: 8,
      max_write_zeroes_sectors: 2048,
      max_write_zeroes_seg: 2,
      write_zeroes_may_unmap: 1,
    });
    // The raw window: the model's bytes where a field is, ".." for the padding bytes 33 and 57–59.
    const raw = report.config!.raw.split(' ');
    expect(raw).toHaveLength(model.config.length);
    model.config.forEach((byte, i) =>
      expect([i, raw[i]]).toEqual([i, [33, 57, 58, 59].includes(i) ? '..' : byte.toString(16).padStart(2, '0')]),
    );
    if (version === 2) expect(report.config).toMatchObject({ generation: 0, stable: true, attempts: 1 });
    else expect(report.config!.generation).toBeUndefined();
    expect(report.queues!.map((q) => [q.index, q.sizeMax, q.live])).toEqual([
      [0, 64, false],
      [1, 64, false],
      [2, 64, false],
    ]);
  });

  test('blk without optional features: only capacity and blk_size decoded', () => {
    const sim = bareSim(variant, new BlkModel({ disk: new Uint8Array(4 * 512), flush: false }));
    const report = inspect(sim);
    expectCleanReport(sim, report, variant);
    expect(report.config!.fields).toEqual({ capacity: '0x4', blk_size: 512 });
    expect(featureNames(report)).not.toContain('VIRTIO_BLK_F_FLUSH');
  });

  test('net: mac and link status', () => {
    const sim = bareSim(variant, new NetModel({ mac: Uint8Array.from([2, 0, 0xab, 0xcd, 0xef, 1]), queueSize: 128 }));
    const report = inspect(sim);
    expectCleanReport(sim, report, variant);
    expect(report).toMatchObject({ deviceId: 1, device: 'NET (1)' });
    expect(featureNames(report)).toEqual(
      expect.arrayContaining(['VIRTIO_NET_F_MAC', 'VIRTIO_NET_F_STATUS', 'VIRTIO_NET_F_MRG_RXBUF']),
    );
    expect(report.config!.fields).toEqual({ mac: '02:00:ab:cd:ef:01', status: 1 });
    expect(report.queues!.map((q) => q.sizeMax)).toEqual([128, 128]);
  });

  test('console: size and max_nr_ports, the control queues and each port pair', () => {
    const sim = bareSim(
      variant,
      new ConsoleModel({
        size: { cols: 132, rows: 43 },
        queueSize: 16,
        multiport: { maxPorts: 3, ports: [{ id: 0 }] },
      }),
    );
    const report = inspect(sim);
    expectCleanReport(sim, report, variant);
    expect(report).toMatchObject({ deviceId: 3, device: 'CONSOLE (3)' });
    expect(featureNames(report)).toEqual(
      expect.arrayContaining(['VIRTIO_CONSOLE_F_SIZE', 'VIRTIO_CONSOLE_F_MULTIPORT']),
    );
    expect(report.config!.fields).toEqual({ cols: 132, rows: 43, max_nr_ports: 3 });
    // receiveq0, transmitq0, control pair, ports 1 and 2 (§5.3.2).
    expect(report.queues!.map((q) => q.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(report.queues!.filter((q, i) => q.sizeMax !== sim.queueState(i).numMax)).toEqual([]);
  });

  test('input: select, subsel and size, and the answer a driver left in the union (no config written)', () => {
    const model = new InputModel({ name: 'QEMU Virtio Keyboard' });
    const sim = bareSim(variant, model);
    const before = inspect(sim);
    expectCleanReport(sim, before, variant);
    expect(before).toMatchObject({ deviceId: 18, device: 'INPUT (18)' });
    expect(before.config!.fields).toEqual({ select: 'UNSET (0)', subsel: 0, size: 0 });
    expect(before.queues!.map((q) => q.sizeMax)).toEqual([64, 64]);
    // As a driver leaves it after reading the name (§5.8.4), then after reading ABS_INFO of ABS_Y.
    model.config[0] = 1;
    model.configWritten(0);
    expect(inspect(sim).config!.fields).toEqual({
      select: 'ID_NAME (1)',
      subsel: 0,
      size: 20,
      string: '"QEMU Virtio Keyboard"',
    });
    model.config.set([0x12, 1]);
    model.configWritten(1);
    const abs = inspect(sim);
    expect(abs.config!.fields).toMatchObject({ select: 'ABS_INFO (18)', subsel: 1, size: 20, min: 0, max: 32767 });
    expect(formatInspect(abs)).toContain('  max: 32767\n');
  });

  test('a type inspect does not know: features and config by number and raw bytes', () => {
    const config = Uint8Array.from([1, 2, 3, 4, 0xfe, 0xdc, 0xba, 0x98]);
    const sim = bareSim(
      variant,
      echoModel({ deviceId: 250, features: (1n << 3n) | (1n << 20n), config, queueSizes: [8, 0, 16] }),
    );
    const report = inspect(sim);
    expectCleanReport(sim, report, variant);
    expect(report).toMatchObject({ deviceId: 250, device: 'device 250' });
    expect(report.features!.bits.filter((b) => b.group !== 'transport')).toEqual([
      { bit: 3, name: 'bit 3', group: 'unknown' },
      { bit: 20, name: 'bit 20', group: 'unknown' },
    ]);
    expect(report.config).toMatchObject({ length: 8, raw: '01 02 03 04 fe dc ba 98', fields: {} });
    // One absent queue between present ones does not end the probe.
    expect(report.queues!.map((q) => [q.index, q.sizeMax])).toEqual([
      [0, 8],
      [2, 16],
    ]);
  });

  test('without reset, the only registers written are selectors', () => {
    const sim = bareSim(variant, new BlkModel({ numQueues: 2 }), {
      shmRegions: [{ id: 1, base: 0x4000_0000n, length: 0x1000n }],
    });
    const { regs, writes } = recordingWrites(sim);
    const report = inspect(regs);
    expect(writes.length).toBeGreaterThan(0);
    expect(writes.filter((offset) => !SELECTORS.has(offset))).toEqual([]);
    expect(report.writes.sort()).toEqual(
      (version === 2 ? ['DeviceFeaturesSel', 'QueueSel', 'SHMSel'] : ['DeviceFeaturesSel', 'QueueSel']).sort(),
    );
    expect(sim.violations).toEqual([]);
  });

  test('formatInspect: one line per register, features, config, queues', () => {
    const sim = bareSim(variant, new BlkModel({ disk: new Uint8Array(16 * 512), segMax: 5 }));
    const text = formatInspect(inspect(sim));
    const lines = text.split('\n');
    expect(lines[0]).toBe(
      `sim BLOCK (2): window of 0x13c bytes, MagicValue 0x74726976 ("virt"), Version ${version}` +
        `${version === 1 ? ' (legacy)' : ''}`,
    );
    expect(lines).toContain('device: BLOCK (2), vendor 0x4d4d4956 "VIMM"');
    expect(lines).toContain('status: 0x0 (0)');
    expect(lines).toContain('  0x000  MagicValue        R  0x74726976');
    expect(lines).toContain('  0x020  DriverFeatures    W  write-only: not read');
    expect(text).toMatch(/^ {2}device: .*VIRTIO_BLK_F_FLUSH \(9\)/m);
    expect(lines).toContain('  capacity: 16 sectors (8 KiB)');
    expect(lines).toContain('  seg_max: 5');
    expect(lines).toContain('  0: QueueNumMax 128, not live');
    expect(text.endsWith('\n')).toBe(true);
  });
});

describe('inspect: the legend of ".." in the config bytes', () => {
  test('a blk config (padding at 33, 57-59: not read) has ".." and the legend under the bytes; an rng, neither', () => {
    const text = formatInspect(inspect(bareSim(2, new BlkModel({ disk: new Uint8Array(16 * 512) }))));
    const lines = text.split('\n');
    const legend = lines.indexOf(
      '  (.. = not read: padding between the fields of the layout, which a driver does not read)',
    );
    expect(legend).toBeGreaterThan(0);
    expect(lines[legend - 1]).toMatch(/^ {2}0x130 {2}.* \.\. \.\. \.\.$/);
    expect(formatInspect(inspect(bareSim(2, new RngModel())))).not.toContain('..');
  });
});

describe('inspect: shared memory regions (Version 2)', () => {
  test('present regions are listed with base and length; absent ones are not', () => {
    const shmRegions = [
      { id: 0, base: 0x1_0000_0000n, length: 0x20_0000n },
      { id: 7, base: 0x8000_0000n, length: 0x1000n },
    ];
    const sim = bareSim(2, new RngModel(), { shmRegions });
    const report = inspect(sim);
    expectCleanReport(sim, report, 2);
    expect(report.shmRegions).toEqual([
      { id: 0, base: '0x100000000', length: '0x200000' },
      { id: 7, base: '0x80000000', length: '0x1000' },
    ]);
    expect(register(report, 'SHMBaseHigh')?.values).toEqual([
      { selector: 'SHMSel 0', value: 1 },
      { selector: 'SHMSel 7', value: 0 },
    ]);
    expect(formatInspect(report)).toContain('  id 7: base 0x80000000, length 0x1000');
  });

  test('no regions: an empty list; Version 1 has no SHM registers at all', () => {
    const modern = bareSim(2, new RngModel());
    expect(inspect(modern).shmRegions).toEqual([]);
    const legacy = bareSim(1, new RngModel(), { shmRegions: [{ id: 0, base: 0n, length: 1n }] });
    const report = inspect(legacy);
    expect(report.shmRegions).toBeUndefined();
    expect(register(report, 'SHMSel')).toBeUndefined();
    expect(legacy.violations).toEqual([]);
  });
});

describe('inspect on a device a driver is using', () => {
  test.each(SIM_VARIANTS)(
    '%s: status, negotiated features and queue state unchanged; the driver carries on',
    async (_label, variant) => {
      const rig = simRig(variant, new RngModel({ queueSize: 16 }));
      const rng = VirtioRng.open(rig.transport, { memory: rig.pool });
      try {
        expect((await rng.read(8)).length).toBe(8);
        const before = {
          status: rig.sim.status,
          features: rig.sim.negotiatedFeatures,
          queue: rig.sim.queueState(0),
          driver: rig.sim.driverFeatures,
        };
        const report = inspect(rig.sim);
        expect({
          status: rig.sim.status,
          features: rig.sim.negotiatedFeatures,
          queue: rig.sim.queueState(0),
          driver: rig.sim.driverFeatures,
        }).toEqual(before);
        expect(before.status).toBe(variant === 1 ? 7 : 15);
        expect(report.statusBits).toBe(
          variant === 1 ? 'ACKNOWLEDGE | DRIVER | DRIVER_OK' : 'ACKNOWLEDGE | DRIVER | DRIVER_OK | FEATURES_OK',
        );
        expect(report.queues![0]).toMatchObject({ index: 0, live: true });
        // Version 1: QueueNumMax may not be read while QueuePFN is set (§4.2.4).
        expect(report.queues![0].sizeMax).toBe(variant === 1 ? undefined : 16);
        expect(register(report, 'QueueReset')?.value).toBeUndefined();
        expect((await rng.read(8)).length).toBe(8);
      } finally {
        rng.close();
        expect(rig.close()).toEqual([]);
      }
    },
  );
});

describe('inspect with reset', () => {
  test.each(SIM_VARIANTS)(
    '%s: a device at DRIVER_OK reads Status 0 afterwards, and the report says so',
    async (_label, variant) => {
      const rig = simRig(variant, new BlkModel({ disk: new Uint8Array(8 * 512) }));
      const blk = VirtioBlk.open(rig.transport, { memory: rig.pool });
      try {
        expect(rig.sim.status & 4).toBe(4);
        const report = inspect(rig.sim, { reset: true });
        expect(rig.sim.status).toBe(0);
        expect(rig.sim.queueState(0).ready).toBe(false);
        expect(report).toMatchObject({ reset: { completed: true }, status: 0, statusBits: '0' });
        expect(report.problem).toBeUndefined();
        expect(report.writes).toContain('Status');
        expect(report.queues![0]).toMatchObject({ sizeMax: 128, live: false });
        expect(formatInspect(report)).toContain('reset: Status written 0 and read back 0');
        expect(rig.sim.violations).toEqual([]);
      } finally {
        blk.close();
        rig.close();
      }
    },
  );

  test('a reset that never completes: a problem, nothing more read', () => {
    const sim = bareSim(2, new RngModel(), { resetLatency: Infinity });
    const report = inspect(sim, { reset: true });
    expect(report.reset).toEqual({ completed: false });
    expect(report.problem).toMatch(/reset did not complete/);
    expect(report.features).toBeUndefined();
    expect(report.queues).toBeUndefined();
    expect(sim.violations).toEqual([]);
  });
});

describe('inspect on windows without a device', () => {
  test.each([
    ['bad MagicValue', { magic: 0x12345678 }, /MagicValue 0x12345678 is not 0x74726976/],
    ['Version 3', { versionValue: 3 }, /Version 3 is neither 1 \(legacy\) nor 2/],
  ])('%s: a report with a problem, only MagicValue and Version read, no throw', (_label, options, problem) => {
    const sim = bareSim(2, new RngModel(), options);
    const { regs, writes } = recordingWrites(sim);
    const report = inspect(regs, { reset: true });
    expect(report.problem).toMatch(problem);
    expect(report.registers.map((r) => r.name)).toEqual(['MagicValue', 'Version']);
    expect(writes).toEqual([]);
    // Anything else read would be an 'ignored-device-access' violation.
    expect(sim.violations).toEqual([]);
    expect(JSON.parse(JSON.stringify(report))).toEqual(report);
    expect(formatInspect(report)).toContain(`problem: ${report.problem}`);
  });

  test('an empty slot (DeviceID 0): identity only, not a problem', () => {
    const sim = bareSim(2, undefined);
    const report = inspect(sim);
    expect(report).toMatchObject({ deviceId: 0, device: 'empty', empty: true });
    expect(report.problem).toBeUndefined();
    expect(report.features).toBeUndefined();
    expect(register(report, 'VendorID')?.value).toBeUndefined();
    expect(sim.violations).toEqual([]);
    expect(formatInspect(report)).toContain('device: none (DeviceID 0: an empty slot)');
  });

  test('a window smaller than the register block', () => {
    const tiny = { size: 0x40, label: 'tiny', closed: false } as RegisterBlock;
    expect(inspect(tiny).problem).toMatch(/less than the 0x100 bytes/);
  });
});

describe('inspect: ConfigGeneration (Version 2)', () => {
  test('a generation that moves during the first reads: read again until it holds', () => {
    const sim = bareSim(2, new ConsoleModel({ size: { cols: 80, rows: 24 } }), { configGenerationChurn: 2 });
    const report = inspect(sim);
    expect(report.config).toMatchObject({ stable: true, fields: { cols: 80, rows: 24 } });
    expect(report.config!.attempts).toBeGreaterThan(1);
    expect(report.warnings).toEqual([]);
  });

  test('a generation that never settles: a warning, and the last bytes read', () => {
    const sim = bareSim(2, new ConsoleModel({ size: { cols: 80, rows: 24 } }), { configGenerationChurn: Infinity });
    const report = inspect(sim);
    expect(report.config).toMatchObject({ stable: false, attempts: 5 });
    expect(report.warnings.join('\n')).toMatch(/ConfigGeneration changed/);
    expect(formatInspect(report)).toContain('(never settled)');
  });
});

describe('inspect: options', () => {
  test('maxQueues bounds the queue indices probed', () => {
    const sim = bareSim(2, new BlkModel({ numQueues: 4 }));
    expect(inspect(sim, { maxQueues: 2 }).queues!.map((q) => q.index)).toEqual([0, 1]);
    expect(inspect(sim, { maxQueues: 0 }).queues).toEqual([]);
    expect(() => inspect(sim, { maxQueues: -1 })).toThrow(RangeError);
  });

  test("windowFrom and windowNote (where a UIO window's size came from) go into the report and its first line", () => {
    const sim = bareSim(2, new RngModel());
    const plain = inspect(sim);
    expect('windowFrom' in plain || 'windowNote' in plain).toBe(false);
    const fromMap = inspect(sim, { windowFrom: 'uio-map', windowNote: 'no device-tree node' });
    expect(fromMap).toMatchObject({ windowFrom: 'uio-map', windowNote: 'no device-tree node' });
    expect(formatInspect(fromMap).split('\n')[0]).toMatch(
      /^sim ENTROPY \(4\): window of 0x100 bytes \(UIO map: no device-tree node\), MagicValue/,
    );
    expect(formatInspect(inspect(sim, { windowFrom: 'caller' })).split('\n')[0]).toContain(
      'window of 0x100 bytes (given),',
    );
  });
});

describe('nameFeatures: the bits a legacy device offers have names too', () => {
  test('legacy transport bits and legacy blk and net bits are named and marked (legacy); current names win', () => {
    // What QEMU's virtio-blk offers on a Version 1 transport: SCSI (7) and NOTIFY_ON_EMPTY (24) among the rest.
    expect(nameFeatures(2, features(7, 24, 27, 28)).map((f) => [f.bit, f.name, f.group])).toEqual([
      [7, 'VIRTIO_BLK_F_SCSI (legacy)', 'device'],
      [24, 'VIRTIO_F_NOTIFY_ON_EMPTY (legacy)', 'transport'],
      [27, 'VIRTIO_F_ANY_LAYOUT (legacy)', 'transport'],
      [28, 'VIRTIO_F_INDIRECT_DESC', 'transport'],
    ]);
    expect(nameFeatures(1, features(6, 5)).map((f) => f.name)).toEqual([
      'VIRTIO_NET_F_MAC',
      'VIRTIO_NET_F_GSO (legacy)',
    ]);
    expect(nameFeatures(4, features(7)).map((f) => f.name)).toEqual(['bit 7']);
  });
});
