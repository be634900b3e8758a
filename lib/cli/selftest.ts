import { selftest as runSelftest, type SelftestOptions, type SelftestReport } from '../diag';
import type { SimOptions } from '../sim';
import { openForDriver, type Target } from './targets';

export type { SelftestOptions, SelftestReport, SelftestStep } from '../diag';

/** The selftest of lib/diag on a CLI target; `sim` adds SimOptions for sim targets (tests give `hostile`). */
export function selftest(
  target: Target,
  options: SelftestOptions & { sim?: Partial<SimOptions> } = {},
): Promise<SelftestReport> {
  return runSelftest(
    { where: target.where, open: (opening) => openForDriver(target, { ...opening, sim: options.sim }) },
    options,
  );
}

/** Human-readable report: a line per step, then the verdict (and the broken rules with --strict). */
export function formatSelftest(report: SelftestReport): string {
  const lines = [
    `${report.where}: ${report.device ?? 'no device'}` +
      `${report.version ? `, virtio-mmio Version ${report.version}` : ''}` +
      `${report.ring ? `, ${report.ring} ring` : ''}`,
  ];
  const width = Math.max(...report.steps.map((s) => s.step.length));
  for (const s of report.steps) {
    const verdict = !s.ok ? 'FAIL' : s.skipped ? 'skip' : 'pass';
    const { error } = s;
    const coded = error?.code && !error.message.startsWith(`${error.code}:`);
    const outcome = !error ? (s.detail ?? '') : coded ? `${error.code}: ${error.message}` : error.message;
    lines.push(`  ${verdict}  ${s.step.padEnd(width)}  ${s.ms.toFixed(1).padStart(8)} ms  ${outcome}`);
  }
  if (report.strict) {
    const { rules, violations, stoppedAt } = report.strict;
    if (violations.length === 0 && stoppedAt === 'identify')
      lines.push(
        'strict: no device rule checked: the selftest stopped at ' +
          'its first step (identify), before the device was driven',
      );
    else if (violations.length === 0 && stoppedAt)
      lines.push(`strict: ${rules} device rules watched until the selftest stopped at '${stoppedAt}', none broken`);
    else if (violations.length === 0) lines.push(`strict: ${rules} device rules checked, none broken`);
    else {
      lines.push(`strict: ${rules} device rules checked, ${violations.length} broken:`);
      for (const v of violations)
        lines.push(
          `  ${v.level.toUpperCase()} §${v.section} ${v.rule}: ${v.text}\n      ` +
            `${v.count === 1 ? '' : `${v.count} times; first: `}${v.detail}`,
        );
    }
  }
  lines.push(report.ok ? 'selftest passed' : 'selftest FAILED');
  return lines.join('\n') + '\n';
}
