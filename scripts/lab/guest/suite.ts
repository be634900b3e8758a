/**
 * Runs in the lab guest: scans every transport, then the contract suites
 * on each device found; one result line per transport and per case.
 */
import { rngContract } from '../../../test/contracts/rng-contract';
import { describeReport, rngSubjects, scan, uioEventCount } from './devices';
import { report, runMain } from './report';

async function main(): Promise<void> {
  const reports = scan();
  for (const r of reports) report({ kind: 'transport', ...describeReport(r) });
  for (const subject of rngSubjects(reports)) {
    for (const c of rngContract(subject)) {
      const started = Date.now();
      try {
        await c.run();
        report({ kind: 'case', suite: 'rng', device: subject.label, name: c.name, ok: true, ms: Date.now() - started });
      } catch (error) {
        report({ kind: 'case', suite: 'rng', device: subject.label, name: c.name, ok: false, ms: Date.now() - started, error: String((error as Error)?.stack ?? error) });
      }
    }
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
