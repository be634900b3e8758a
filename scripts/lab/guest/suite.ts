/**
 * Runs in the lab guest: scans every transport, then the contract suites
 * on each device found; one result line per transport and per case.
 */
import { FeatureBit, describeFeatures, feature, hasFeature } from '../../../lib/spec';
import type { ContractCase } from '../../../test/support/contracts/contract';
import { blkContract } from '../../../test/support/contracts/blk-contract';
import { consoleEchoContract, consoleMultiportContract } from '../../../test/support/contracts/console-contract';
import { rngContract } from '../../../test/support/contracts/rng-contract';
import { blkSubjects, consoleSubjects, describeReport, rngSubjects, scan, uioEventCount } from './devices';
import { eventIdxWrap } from './event-idx-wrap';
import { report, runMain } from './report';
import { cli, systemRam } from './guest-tools';
import { queueResetCheck } from './queue-reset';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { addonPath } from '../../../lib/platform/addon';

/** /opt/virtio-mmio: the library's root in the guest (this file is scripts/lab/guest/suite.js under it). */
const ROOT_DIR = join(__dirname, '..', '..', '..');

/** The virtserialport the lab test puts on the console device (port 1), wired to a host socket that echoes. */
const LAB_ECHO_PORT = 'org.virtio-mmio.echo';

async function main(): Promise<void> {
  const reports = scan();
  for (const r of reports) report({ kind: 'transport', ...describeReport(r) });
  // Installed as from the package: the addon is its prebuild, with no build/ directory and no compiler in the guest.
  report({
    kind: 'addon',
    path: addonPath,
    buildDir: existsSync(join(ROOT_DIR, 'build')),
    compiler: ['cc', 'gcc', 'g++', 'c++'].some((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status === 0),
  });
  // rng with the negotiated defaults, then again without EVENT_IDX (flags-based suppression); blk; console (echoed by
  // the host).
  const runs: { suite: string; variant: string; device: string; cases: ContractCase[] }[] = [
    ...rngSubjects(reports).map((s) => ({ suite: 'rng', variant: 'default', device: s.label, cases: rngContract(s) })),
    ...rngSubjects(reports, feature(FeatureBit.EVENT_IDX)).map((s) => ({
      suite: 'rng',
      variant: 'no-event-idx',
      device: s.label,
      cases: rngContract(s),
    })),
    ...blkSubjects(reports).map((s) => ({ suite: 'blk', variant: 'default', device: s.label, cases: blkContract(s) })),
    // The console: port 0 with MULTIPORT (QEMU offers it) and without, the named port, and the port protocol.
    ...consoleSubjects(reports).map((s) => ({
      suite: 'console-echo',
      variant: 'default',
      device: s.label,
      cases: consoleEchoContract(s),
    })),
    ...consoleSubjects(reports, { multiport: false }).map((s) => ({
      suite: 'console-echo',
      variant: 'no-multiport',
      device: s.label,
      cases: consoleEchoContract(s),
    })),
    ...consoleSubjects(reports, {}, LAB_ECHO_PORT).map((s) => ({
      suite: 'console-echo',
      variant: 'named-port',
      device: s.label,
      cases: consoleEchoContract(s),
    })),
    ...consoleSubjects(reports).map((s) => ({
      suite: 'console-multiport',
      variant: 'default',
      device: s.label,
      cases: consoleMultiportContract(s, {
        ports: [
          { id: 0, isConsole: true },
          { id: 1, name: LAB_ECHO_PORT, isConsole: false },
        ],
        echoPort: LAB_ECHO_PORT,
      }),
    })),
  ];
  for (const { suite, variant, device, cases } of runs) {
    for (const c of cases) {
      const started = Date.now();
      const base = { kind: 'case', suite, variant, device, name: c.name };
      try {
        await c.run();
        report({ ...base, ok: true, ms: Date.now() - started });
      } catch (error) {
        report({ ...base, ok: false, ms: Date.now() - started, error: String((error as Error)?.stack ?? error) });
      }
    }
  }
  // What each device negotiated with our drivers (the ring format among it); blk reads spread over its queues.
  for (const subject of rngSubjects(reports)) {
    const { rng, close } = subject.open();
    try {
      report({
        kind: 'negotiated',
        suite: 'rng',
        device: subject.label,
        features: describeFeatures(rng.features),
        packed: hasFeature(rng.features, FeatureBit.RING_PACKED),
      });
    } finally {
      close();
    }
  }
  for (const subject of blkSubjects(reports)) {
    const { blk, close } = subject.open();
    try {
      await Promise.all(Array.from({ length: 64 }, (_, i) => blk.read(BigInt(i * 8), 4096)));
      const perQueue = Array.from({ length: blk.info.queues }, (_, q) => blk.queueStats(q).completed);
      report({
        kind: 'negotiated',
        suite: 'blk',
        device: subject.label,
        features: describeFeatures(blk.features),
        packed: hasFeature(blk.features, FeatureBit.RING_PACKED),
        queues: blk.info.queues,
        perQueue,
      });
    } finally {
      close();
    }
  }
  for (const subject of rngSubjects(reports)) {
    // The interrupt path end to end: the UIO driver's own event count against ours.
    const { rng, transport, close } = subject.open();
    try {
      for (let i = 0; i < 8; i++) await rng.read(64);
      report({
        kind: 'interrupts',
        device: subject.label,
        handled: transport.stats.interrupts,
        spurious: transport.stats.spuriousInterrupts,
        uioEvents: uioEventCount(transport.interrupts),
      });
    } finally {
      close();
    }
  }
  for (const subject of rngSubjects(reports)) {
    // EVENT_IDX across the 16-bit index wrap (and the packed ring's wrap counter): 70,000 small reads.
    try {
      report(await eventIdxWrap(subject));
    } catch (error) {
      report({ kind: 'event-idx-wrap', device: subject.label, error: String((error as Error)?.stack ?? error) });
    }
  }
  for (const subject of rngSubjects(reports)) {
    // Where DMA lands (device address = guest physical: no IOMMU in front of virtio-mmio here): one rng request seen in
    // flight, then its bytes.
    const { rng, close } = subject.open();
    try {
      const pending = rng.read(64);
      const { addresses, outstanding } = rng.dumpQueue(0);
      const bytes = await pending;
      const descriptors = outstanding.flatMap((o) => o.descriptors.map((d) => d.addr));
      report({
        kind: 'dma',
        device: subject.label,
        ram: systemRam(),
        addresses,
        descriptors,
        bytes: bytes.length,
        distinct: new Set(bytes).size,
      });
    } finally {
      close();
    }
  }
  // The bring-up CLI on the same board: scan, then inspect each device found.
  const scanned = await cli('scan', '--json');
  report({
    kind: 'cli-scan',
    status: scanned.status,
    stderr: scanned.stderr,
    entries: JSON.parse(scanned.stdout || '[]'),
  });
  for (const r of reports) {
    if (!r.result || r.result.empty || r.spec.kind !== 'uio') continue;
    const inspected = await cli('inspect', r.spec.device.devicePath, '--json');
    report({
      kind: 'cli-inspect',
      where: r.spec.device.devicePath,
      deviceId: r.result.deviceId,
      status: inspected.status,
      stderr: inspected.stderr,
      report: JSON.parse(inspected.stdout || '{}'),
    });
    // selftest with the device rules watched; the console's port 0 is echoed by the host.
    const tested = await cli('selftest', r.spec.device.devicePath, '--strict', '--json');
    report({
      kind: 'cli-selftest',
      where: r.spec.device.devicePath,
      deviceId: r.result.deviceId,
      status: tested.status,
      stderr: tested.stderr,
      report: JSON.parse(tested.stdout || '{}'),
    });
    // dump: nobody drives the device now, so the CLI drives it (a request in flight) and shows both views of queue 0.
    const dumped = await cli('dump', r.spec.device.devicePath, '--queue', '0');
    report({
      kind: 'cli-dump',
      where: r.spec.device.devicePath,
      deviceId: r.result.deviceId,
      status: dumped.status,
      stderr: dumped.stderr,
      dump: JSON.parse(dumped.stdout || '{}'),
    });
  }
  // dump --live from another process, while this one drives the console (receive buffers posted on queue 0).
  for (const subject of consoleSubjects(reports)) {
    const { console, close } = await subject.open();
    try {
      const own = console.dumpQueue(0);
      const { desc, driver, device } = own.addresses;
      const argv = [
        'dump',
        subject.label,
        '--queue',
        '0',
        '--live',
        '--size',
        String(own.size),
        ...(console.transport.version === 1 ? [] : ['--rings', `${desc},${driver},${device}`]),
      ];
      report({
        kind: 'cli-dump-own',
        where: subject.label,
        outstanding: own.outstanding.length,
        size: own.size,
        addresses: own.addresses,
        argv,
      });
      // The child's result line (kind 'cli') goes to the console like ours.
      spawnSync(process.execPath, [join(__dirname, 'cli-report.js'), ...argv], { stdio: 'inherit', timeout: 60_000 });
    } finally {
      close();
    }
  }
  // Last: a device that ignores QueueReset is failed by it.
  await queueResetCheck(reports);
}

runMain(main);
