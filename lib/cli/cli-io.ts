import { UioSysfs } from '../platform';
import { parseTarget, type Target } from './targets';

/** Where the CLI writes, and the sysfs it looks at (tests give their own). */
export interface CliIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  sysfs?: UioSysfs;
  /** Whether stderr is a terminal (progress bars are drawn only then, or with --progress). */
  isTTY?: boolean;
}

/** Bad command-line usage: exit status 2 and the usage text. */
export class UsageError extends Error {}

/** One command: parses its own arguments, writes its output, resolves with the exit status. */
export type Command = (args: readonly string[], io: CliIo) => Promise<number>;

/** The one device a command works on, from its positional arguments. */
export function oneTarget(positionals: readonly string[], io: CliIo, command: string): Target {
  if (positionals.length !== 1) throw new UsageError(`${command} takes one device, got ${positionals.length}`);
  return parseTarget(positionals[0], io.sysfs ?? new UioSysfs());
}

/** The integer value of option `--name` (decimal or 0x hex) in [min, max]; UsageError otherwise. */
export function integerOption(name: string, text: string, min: number, max: number): number {
  const n = /^(?:\d+|0x[0-9a-f]+)$/i.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer in [${min}, ${max}], got '${text}'`);
  return n;
}
