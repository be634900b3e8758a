/**
 * Runs in the lab guest: scans every transport, then the contract suites
 * on each device found; one result line per transport and per case.
 */
import { FeatureBit, feature } from '../../../lib/spec';
import { rngContract } from '../../../test/contracts/rng-contract';
import { describeReport, rngSubjects, scan, uioEventCount } from './devices';
import { report, runMain } from './report';

async function main(): Promise<void> {
  const reports = scan();
  for (const r of reports) report({ kind: 'transport', ...describeReport(r) });
  // The contract with the negotiated defaults, then again without EVENT_IDX (flags-based suppression).
  for (const [variant, subject] of [...rngSubjects(reports).map((s) => ['default', s] as const), ...rngSubjects(reports, feature(FeatureBit.EVENT_IDX)).map((s) => ['no-event-idx', s] as const)]) {
    for (const c of rngContract(subject)) {
      const started = Date.now();
      const base = { kind: 'case', suite: 'rng', variant, device: subject.label, name: c.name };
      try {
        await c.run();
        report({ ...base, ok: true, ms: Date.now() - started });
      } catch (error) {
        report({ ...base, ok: false, ms: Date.now() - started, error: String((error as Error)?.stack ?? error) });
      }
    }
  }
  for (const subject of rngSubjects(reports)) {
    // The interrupt path end to end: the UIO driver's own event count against ours.
    const { rng, transport, close } = subject.open();
    try {
      for (let i = 0; i < 8; i++) await rng.read(64);
      report({ kind: 'interrupts', device: subject.label, handled: transport.stats.interrupts, spurious: transport.stats.spuriousInterrupts, uioEvents: uioEventCount(transport.interrupts) });
    } finally {
      close();
    }
  }
}

runMain(main);
