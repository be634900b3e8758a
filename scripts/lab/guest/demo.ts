/**
 * The lab demo (npm run lab), run in the guest: what a user on a board
 * sees — every virtio-mmio transport found through UIO, the features of
 * each device, and random bytes from the virtio-rng.
 */
import { describeFeatures } from '../../../lib/spec';
import { openTransport } from '../../../lib/transport';
import { describeReport, rngSubjects, scan, uioEventCount } from './devices';
import { report, runMain } from './report';

async function main(): Promise<void> {
  const reports = scan();
  const present = reports.filter((r) => r.result && !r.result.empty);
  console.log(`\n${reports.length} virtio-mmio transports on UIO, ${present.length} with a device:`);
  for (const r of reports) {
    const d = describeReport(r);
    if (r.result?.empty) continue;
    // Reading the offered features means starting the init sequence; the device is reset afterwards.
    const transport = openTransport(r.spec);
    let offered = '';
    try {
      transport.negotiate(0n);
      offered = describeFeatures(transport.deviceFeatures);
    } finally {
      transport.close();
    }
    console.log(
      `  ${d.path} at ${d.address}: ${d.device}, virtio-mmio Version ${d.version}, vendor 0x` +
        `${Number(d.vendorId).toString(16)}`,
    );
    console.log(`    offers: ${offered}`);
    report({ kind: 'device', ...d, features: offered });
  }
  console.log(`  (${reports.length - present.length} empty slots: DeviceID 0)`);
  for (const subject of rngSubjects(reports)) {
    const { rng, transport, close } = subject.open();
    try {
      const bytes = await rng.read(32);
      const more = await Promise.all([rng.read(4096), rng.read(4096), rng.read(4096)]);
      console.log(`\n${subject.label}: 32 random bytes: ${bytes.toString('hex')}`);
      console.log(
        `  then ${more.reduce((n, b) => n + b.length, 0)} bytes more in 3 concurrent reads; ` +
          `negotiated: ${describeFeatures(transport.features)}`,
      );
      console.log(
        `  interrupts handled: ${transport.stats.interrupts} (UIO event count ${uioEventCount(transport.interrupts)}` +
          `), spurious: ${transport.stats.spuriousInterrupts}`,
      );
      report({
        kind: 'rng',
        device: subject.label,
        bytes: bytes.toString('hex'),
        interrupts: transport.stats.interrupts,
      });
    } finally {
      close();
    }
  }
}

runMain(main);
