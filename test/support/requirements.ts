import { readFileSync } from 'node:fs';

/** True when the test run is CI, where every requirement must be met (nothing may skip). */
export const inCi = process.env.CI === 'true' || process.env.CI === '1';

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

export function freeHugepages(): number {
  const line = readFileSync('/proc/meminfo', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('HugePages_Free:'));
  return line ? Number(line.split(/\s+/)[1]) : 0;
}

/**
 * describe() when `met`; otherwise skipped with the reason printed — except
 * in CI, where an unmet requirement is a failing test, never a silent skip.
 */
export function describeIf(met: boolean, reason: string, name: string, body: () => void): void {
  if (met) {
    describe(name, body);
  } else if (inCi) {
    describe(name, () => {
      it('has what it needs in CI', () => {
        throw new Error(`requirement not met in CI: ${reason}`);
      });
    });
  } else {
    console.warn(`skipping "${name}": ${reason}`);
    describe.skip(name, body);
  }
}
