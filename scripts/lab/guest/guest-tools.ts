/** Small things several guest programs need: the guest's RAM as the kernel lists it, the CLI run in-process. */
import { readFileSync } from 'node:fs';
import { runCli } from '../../../lib/cli/main';

/** The guest's RAM ranges ("start-end", hex) from /proc/iomem. */
export function systemRam(): string[] {
  return readFileSync('/proc/iomem', 'utf8')
    .split('\n')
    .filter((l) => /^\S.*: System RAM$/.test(l))
    .map((l) => l.split(' ')[0]);
}

/** Runs the CLI in this process, capturing what it writes. */
export async function cli(...argv: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const status = await runCli(argv, {
    stdout: { write: (t: string) => (stdout += t) },
    stderr: { write: (t: string) => (stderr += t) },
  });
  return { status, stdout, stderr };
}
