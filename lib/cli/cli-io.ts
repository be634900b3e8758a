import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors';
import { describeFailure } from '../diag/failure';
import { UioSysfs } from '../platform';
import { parseTarget, type Target } from './targets';

export { UsageError } from '../errors';

/** Where the CLI writes, and the sysfs and command line it looks at (tests give their own). */
export interface CliIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  sysfs?: UioSysfs;
  /** The kernel command line `scan` reads virtio_mmio.device= entries from; default /proc/cmdline's text. */
  cmdline?: string;
  /** Whether stderr is a terminal (progress bars are drawn only then, or with --progress). */
  isTTY?: boolean;
}

/** One command: parses its own arguments, writes its output, resolves with the exit status. */
export type Command = (args: readonly string[], io: CliIo) => Promise<number>;

/** Exit statuses: the operation worked, the device or the operation failed, the command line is wrong. */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** The one device a command works on, from its positional arguments. */
export function oneTarget(positionals: readonly string[], io: CliIo, command: string): Target {
  if (positionals.length !== 1)
    throw new UsageError(
      `${command} takes one device, got ${positionals.length}` +
        `${positionals.length ? ` ('${positionals.join("', '")}')` : ''}`,
    );
  return parseTarget(positionals[0], io.sysfs ?? new UioSysfs());
}

/** The integer value of option `--name` (decimal or 0x hex) in [min, max]; UsageError otherwise. */
export function integerOption(name: string, text: string, min: number, max: number): number {
  const n = /^(?:\d+|0x[0-9a-f]+)$/i.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw new UsageError(`--${name} must be an integer in [${min}, ${max}], got '${text}'`);
  return n;
}

/**
 * Whether the command line asks for JSON (before a `--`), read without parsing it: a failure to parse is reported in
 * JSON too.
 */
export function wantsJson(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).includes('--json');
}

/** Whether the command line asks for help (`--help` or `-h`, before a `--`). */
export function wantsHelp(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  const head = end < 0 ? args : args.slice(0, end);
  return head.includes('--help') || head.includes('-h');
}

/**
 * node:util parseArgs in strict mode, its errors (ERR_PARSE_ARGS_*) said
 * again in our words as UsageError: which option, what is wrong with it.
 */
export function parseOptions<T extends ParseArgsConfig>(command: string, config: T): ReturnType<typeof parseArgs<T>> {
  try {
    // strict is parseArgs's default: unknown options and positionals not allowed are errors.
    return parseArgs(config);
  } catch (error) {
    throw reworded(command, error);
  }
}

function reworded(command: string, error: unknown): unknown {
  const code = (error as { code?: unknown })?.code;
  if (typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS')) return error;
  const message = (error as Error).message;
  // Node's messages quote the option ('--frob', '--bytes <value>') or the argument ('x').
  const quoted = /'([^']*)'/.exec(message)?.[1] ?? '';
  const option = quoted.split(' ')[0];
  const help = `(virtio-mmio ${command} --help lists the options)`;
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return new UsageError(`${command} has no option ${option || 'like that'} ${help}`, { cause: error });
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return new UsageError(`${command} takes no arguments besides its options, got '${quoted}'`, { cause: error });
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (/does not take an argument/.test(message))
        return new UsageError(`${option} takes no value`, { cause: error });
      if (/ambiguous/.test(message))
        return new UsageError(`${option} needs a value; write ${option}=VALUE for a value that starts with '-'`, {
          cause: error,
        });
      return new UsageError(`${option || 'an option'} needs a value`, { cause: error });
    default:
      return new UsageError(message, { cause: error });
  }
}

export { errorCode, describeFailure } from '../diag/failure';

/**
 * Reports a failure the one way every command does and returns its exit
 * status: on stderr `virtio-mmio <command>: <CODE>: <message>` (the code is
 * not repeated when the message starts with it, as a system call error's
 * does), then the hint when the message lacks it; with `json`, also
 * `{ "error": { "code", "message" } }` on stdout. A UsageError exits 2
 * and is followed on stderr by `usage` (the command's usage text);
 * anything else exits 1.
 */
export function reportFailure(
  io: CliIo,
  command: string,
  error: unknown,
  options: { json?: boolean; usage?: string } = {},
): number {
  const { code, message } = describeFailure(error);
  io.stderr.write(
    `virtio-mmio${command ? ` ${command}` : ''}: ${message.startsWith(`${code}:`) ? message : `${code}: ${message}`}\n`,
  );
  const hint = (error as { hint?: unknown })?.hint;
  if (typeof hint === 'string' && !message.includes(hint)) io.stderr.write(`hint: ${hint}\n`);
  if (options.json) io.stdout.write(`${JSON.stringify({ error: { code, message } })}\n`);
  if (error instanceof UsageError) {
    if (options.usage) io.stderr.write(`\n${options.usage}`);
    return EXIT_USAGE;
  }
  return EXIT_FAILED;
}
