/**
 * The package's public entries resolve by name (as users import them), expose the main classes, and the root holds
 * exactly its documented list.
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

const ENTRIES = ['virtio-mmio', 'virtio-mmio/spec', 'virtio-mmio/diag', 'virtio-mmio/sim'] as const;

/** Each entry's runtime names, as CommonJS sees them from the built package. */
function entryNames(): Record<(typeof ENTRIES)[number], string[]> {
  const script =
    `console.log(JSON.stringify(Object.fromEntries(${JSON.stringify(ENTRIES)}.map((e) => [e, ` +
    `Object.keys(require(e)).filter((k) => k !== '__esModule').sort()]))))`;
  const child = spawnSync(process.execPath, ['-e', script], {
    cwd: resolve(__dirname, '..'),
    encoding: 'utf8',
    timeout: 10_000,
  });
  expect(child.stderr).toBe('');
  return JSON.parse(child.stdout) as Record<(typeof ENTRIES)[number], string[]>;
}

/**
 * The root: what a driver author uses (README "Entry points"). A name added
 * or dropped here is a change of the public API: README and CHANGELOG say so.
 */
const ROOT = [
  // errors (lib/errors.ts, whole)
  'AbortError',
  'BufferHeldError',
  'CanceledError',
  'ClosedError',
  'DeviceBrokenError',
  'DeviceGoneError',
  'DeviceIoError',
  'DiscoveryError',
  'DmaError',
  'NegotiationError',
  'PortError',
  'ProtocolError',
  'QueueFullError',
  'ReadOnlyError',
  'SyscallError',
  'TimeoutError',
  'TransportError',
  'UsageError',
  'VerifyError',
  'VirtioError',
  'invalidArgType',
  'invalidArgValue',
  'outOfRange',
  // platform
  'DmaPool',
  'EventfdInterruptSource',
  'MmioWindow',
  'POLL_TIMEOUT_MAX_MS',
  'PhysicalMemory',
  'PollingInterruptSource',
  'UioInterruptSource',
  'UioSysfs',
  'nativeBarriers',
  // transport
  'MmioTransport',
  'describeSpec',
  'discoverCmdline',
  'discoverUio',
  'openTransport',
  'parseDeviceSpec',
  'probe',
  'probeAll',
  'resetDevicesOnSignals',
  // queues
  'PackedQueue',
  'SplitQueue',
  'Virtqueue',
  'createQueue',
  // devices
  'ConsolePort',
  'DriverSetup',
  'VirtioBlk',
  'VirtioConsole',
  'VirtioDriver',
  'VirtioInput',
  'VirtioNet',
  'VirtioRng',
  'completeChecksum', // what NEEDS_CSUM on a received frame leaves to its user
  // feature bits and device types
  'DeviceId',
  'FeatureBit',
  'describeFeatures',
  'feature',
  'features',
  'hasFeature',
].sort();

test('the root exports exactly the driver author’s list; spec, diagnostics and the sim have their own entries', () => {
  const names = entryNames();
  expect(names['virtio-mmio']).toEqual(ROOT);
  // What moved out of the root is in the entry README names for it.
  expect(names['virtio-mmio/spec']).toEqual(
    expect.arrayContaining([
      'MmioRegister',
      'SplitRing',
      'PackedRing',
      'BlkFeature',
      'NetConfig',
      'legacyLayout',
      'QueueSelectTracker',
      'DeviceId',
      'FeatureBit',
      'hasFeature',
    ]),
  );
  expect(names['virtio-mmio/diag']).toEqual(
    expect.arrayContaining([
      'inspect',
      'readLiveQueue',
      'deviceRingMemory',
      'selftest',
      'bringUpQueue',
      'dumpQueueState',
      'DeviceRuleWatch',
      'DEVICE_RULES',
      'descriptorFlagNames',
      'packedSlotState',
      'barrierKind',
    ]),
  );
  expect(names['virtio-mmio/sim']).toEqual(
    expect.arrayContaining(['SimDevice', 'BlkModel', 'RngModel', 'ConsoleModel', 'NetModel']),
  );
  for (const name of [
    'MmioRegister',
    'readLiveQueue',
    'barrierKind',
    'SimDevice',
    'DeviceStatusMachine',
    'SplitRingEngine',
    'EpollLoop',
  ])
    expect(names['virtio-mmio']).not.toContain(name);
  // The root's spec names are the spec entry's own objects, not copies.
  const same = spawnSync(
    process.execPath,
    [
      '-e',
      "const r = require('virtio-mmio'), s = require('virtio-mmio/spec'); console.log(['DeviceId', " +
        "'FeatureBit', 'hasFeature'].every((n) => r[n] === s[n]))",
    ],
    { cwd: resolve(__dirname, '..'), encoding: 'utf8', timeout: 10_000 },
  );
  expect(same.stdout.trim()).toBe('true');
});

test('every entry loads from the built package and exposes its main classes', () => {
  const script = `
    const lib = require('virtio-mmio');
    const spec = require('virtio-mmio/spec');
    const diag = require('virtio-mmio/diag');
    const sim = require('virtio-mmio/sim');
    console.log([typeof lib.MmioTransport, typeof lib.SplitQueue, typeof lib.VirtioRng, typeof lib.VirtioDriver,
      typeof lib.DriverSetup, typeof spec.legacyLayout, typeof diag.inspect, typeof diag.DeviceRuleWatch,
      typeof sim.SimDevice, typeof sim.RngModel].join(' '));
  `;
  const child = spawnSync(process.execPath, ['-e', script], {
    cwd: resolve(__dirname, '..'),
    encoding: 'utf8',
    timeout: 10_000,
  });
  expect(child.stderr).toBe('');
  expect(child.stdout.trim()).toBe(Array(10).fill('function').join(' '));
});

test('the virtio-mmio command (package bin) runs from the built package', () => {
  const child = spawnSync(process.execPath, ['dist/cli/bin.js', 'scan', '--no-uio', '--sim', 'rng', '--json'], {
    cwd: resolve(__dirname, '..'),
    encoding: 'utf8',
    timeout: 10_000,
  });
  expect(child.stderr).toBe('');
  expect(child.status).toBe(0);
  expect(JSON.parse(child.stdout)).toMatchObject([{ where: 'sim:rng', device: 'ENTROPY', version: 2 }]);
});

test('ESM: every export of each entry is a named import', () => {
  // The names as CommonJS sees them, then one static import naming all of them: a name Node's CJS
  // lexer misses fails at link time, before anything runs.
  const names = entryNames();
  const all = ENTRIES.flatMap((entry, i) => names[entry].map((name) => ({ entry, name, local: `e${i}_${name}` })));
  expect(names['virtio-mmio'].length).toBeGreaterThan(40);
  const script = [
    ...ENTRIES.map(
      (entry) =>
        `import { ${all
          .filter((n) => n.entry === entry)
          .map((n) => `${n.name} as ${n.local}`)
          .join(', ')} } from '${entry}';`,
    ),
    `const values = [${all.map((n) => n.local).join(', ')}];`,
    'console.log(values.filter((v) => v === undefined).length, values.length);',
  ].join('\n');
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: resolve(__dirname, '..'),
    encoding: 'utf8',
    timeout: 10_000,
  });
  expect(child.stderr).toBe('');
  expect(child.stdout.trim()).toBe(`0 ${all.length}`);
});
