import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UioSysfs } from '../platform';
import { VirtioRng } from '../devices';
import { PROC_CMDLINE, discoverCmdline, discoverUio, describeSpec } from '../transport';
import { describeError, formatScan, scan, type ScanEntry } from './scan';
import { formatInspect, inspect } from './inspect';
import { formatSelftest, selftest } from './selftest';
import { dumpCommand } from './dump';
import { BLK_USAGE, blkCommand } from './blk';
import { QUEUE_USAGE, queueCommand } from './queue';
import { FAULT_CATALOGUE, faultEntry, parseFaultSetting, type HostileOptions } from '../sim';
import {
  EXIT_OK,
  EXIT_USAGE,
  UsageError,
  oneTarget,
  parseOptions,
  reportFailure,
  wantsHelp,
  wantsJson,
  type CliIo,
  type Command,
} from './cli-io';
import { NO_UIO_HINT, openForDriver, openRegisters, parseTarget, type Target } from './targets';

export type { CliIo } from './cli-io';

/** What `<dev>` may be, for the usage texts. */
const DEVICE_NOTE = `  <dev> is /dev/uioN, uioN, <size>@<baseaddr>[:<irq>[:<id>]] (a /dev/mem window), or
  sim:<rng|blk|console|net|input|empty>[:1|2|packed] (a software device in this process)
`;

const EXIT_NOTE = `  exit status: 0 ok, 1 the device or the operation failed, 2 bad usage (a device name that
  does not parse included). A failure is one line on stderr, "virtio-mmio <command>: <CODE>: <message>",
  with a stable CODE; with --json it is also {"error":{"code":…,"message":…}} on stdout
`;

/** Each command's synopsis (the first line, options included) and what it does, as USAGE lists them. */
const SUMMARIES: Record<string, string> = {
  scan:
    '  scan [--device <size>@<baseaddr>[:<irq>[:<id>]]]... [--sim <type>[:1|2|packed]]... ' +
    `[--no-uio] [--no-cmdline] [--json]
        every virtio-mmio transport: UIO devices named virtio_mmio (or device-tree virtio,mmio),
        the virtio_mmio.device= entries of /proc/cmdline and the /dev/mem windows given (both
        through /dev/mem), and software devices; one line each
`,
  inspect: `  inspect <dev> [--reset] [--json]
        every register, the features by name, config space, SHM regions and queue sizes;
        read-only (selector registers only) unless --reset; ".." in the config bytes: not read
`,
  rng: `  rng <dev> [--bytes N] [--json]
        N random bytes (default 32) from a virtio-rng device
`,
  blk: `  blk <dev> info|read|write|bench [options]
        a virtio-blk device: info; read <sector> (hex dump or --out FILE); write <sector>
        (--in FILE | --pattern) [--verify] [--flush]; bench (IOPS, MB/s, latency; --write
        overwrites the device's data); a progress bar on long runs; "virtio-mmio blk --help" lists the options
`,
  dump:
    '  dump <dev> --queue N [--live] [--size N] [--format split|packed] [--page-size N] ' +
    `[--rings <desc>,<driver>,<device>] [--json]
        one queue's ring state as JSON (--json or not) (indices, flags, requests in flight with their descriptors):
        driven by this process (a sim, or a device without DRIVER_OK: a request is put in flight),
        or read live (DRIVER_OK set, or --live) through /dev/mem; QueueSel is left at N
`,
  selftest: `  selftest <dev> [--strict] [--timeout MS] [--json] [--hostile <behaviour>[=<value>]]...
        the device type's driver through negotiation and a few requests (rng bytes, blk read of
        sector 0, console echo when looped back, net link status), each step pass/fail with its
        time; --strict also reports every spec rule the device breaks (exit 1 on a MUST);
        --hostile (sim devices only) makes the software device lie, to see --strict catch it:
        a fault of the sim's FAULT_CATALOGUE, with =value for its parameter (e.g. bad-identity=magic)
`,
  queue:
    '  queue <dev> --queue N [--out HEX|@FILE] [--in SIZE]... [--features LIST] [--exclude LIST] [--chains K] ' +
    `[--size N] [--timeout MS] [--strict] [--json]
        bring-up of any device, one the library has no driver for included: negotiates the
        transport features (plus --features), sets up queue N, posts chains of the --out bytes
        (device-readable) and --in buffers (device-writable), and prints the used length and
        what the device wrote; "virtio-mmio queue --help" says more
`,
};

export const USAGE = `usage: virtio-mmio <command> [options]
       virtio-mmio <command> --help
       virtio-mmio --version

${Object.values(SUMMARIES).join('')}
${DEVICE_NOTE}
${EXIT_NOTE}`;

/** `virtio-mmio <command> --help`: the command's synopsis and description, what <dev> is, the exit statuses. */
const HELP: Record<string, string> = {
  ...Object.fromEntries(
    Object.entries(SUMMARIES).map(([name, text]) => [
      name,
      `usage: virtio-mmio ${text.trimStart()}\n${DEVICE_NOTE}\n${EXIT_NOTE}`,
    ]),
  ),
  blk: `${BLK_USAGE}\n${DEVICE_NOTE}\n${EXIT_NOTE}`,
  queue: `${QUEUE_USAGE}\n${DEVICE_NOTE}\n${EXIT_NOTE}`,
};

/** The help text of `command` (undefined for a command that does not exist). */
export function commandHelp(command: string): string | undefined {
  return Object.hasOwn(HELP, command) ? HELP[command] : undefined;
}

const COMMANDS: Record<string, Command> = {
  scan: async (args, io) => scanCommand(args, io),
  inspect: (args, io) => inspectCommand(args, io),
  rng: (args, io) => rngCommand(args, io),
  blk: (args, io) => blkCommand(args, io),
  dump: (args, io) => dumpCommand(args, io),
  selftest: (args, io) => selftestCommand(args, io),
  queue: (args, io) => queueCommand(args, io),
};

/** This package's version, from its package.json (two levels up in lib/ and in dist/). */
export function packageVersion(): string {
  try {
    const { version } = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as {
      version?: unknown;
    };
    return typeof version === 'string' ? version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Runs one command; resolves with the exit status (0 ok, 1 failed, 2 bad usage). */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  if (command === '--version' || command === '-V' || command === 'version') {
    io.stdout.write(`virtio-mmio ${packageVersion()}\n`);
    return EXIT_OK;
  }
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    // `help <command>` is `<command> --help`.
    const help = rest.length === 1 ? commandHelp(rest[0]) : undefined;
    if (rest.length > 0 && help === undefined)
      return reportFailure(io, '', new UsageError(`no command '${rest.join(' ')}' to help with`), { usage: USAGE });
    io.stdout.write(help ?? USAGE);
    return command === undefined ? EXIT_USAGE : EXIT_OK;
  }
  const run = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (!run)
    return reportFailure(io, '', new UsageError(`unknown command '${command}'`), {
      json: wantsJson(rest),
      usage: USAGE,
    });
  if (wantsHelp(rest)) {
    io.stdout.write(HELP[command]);
    return EXIT_OK;
  }
  try {
    return await run(rest, io);
  } catch (error) {
    return reportFailure(io, command, error, { json: wantsJson(rest), usage: HELP[command] });
  }
}

function scanCommand(args: readonly string[], io: CliIo): number {
  const { values } = parseOptions('scan', {
    args: [...args],
    options: {
      device: { type: 'string', multiple: true },
      sim: { type: 'string', multiple: true },
      'no-uio': { type: 'boolean' },
      'no-cmdline': { type: 'boolean' },
      json: { type: 'boolean' },
    },
  });
  const sysfs = io.sysfs ?? new UioSysfs();
  const targets: Target[] = [];
  const cmdlineFailure: ScanEntry[] = [];
  if (!values['no-uio'])
    for (const spec of discoverUio(sysfs)) targets.push({ kind: 'device', spec, where: describeSpec(spec) });
  const given = (values.device ?? []).map((text) => parseTarget(text, sysfs));
  if (!values['no-cmdline']) {
    try {
      // A window also given with --device is listed once, as given.
      const bases = new Set(
        given.map((t) => (t.kind === 'device' && t.spec.kind === 'physical' ? t.spec.base : undefined)),
      );
      for (const spec of discoverCmdline(io.cmdline))
        if (!bases.has(spec.base)) targets.push({ kind: 'device', spec, where: describeSpec(spec) });
    } catch (error) {
      cmdlineFailure.push({
        where: io.cmdline === undefined ? PROC_CMDLINE : 'kernel command line',
        kind: 'physical',
        error: describeError(error),
      });
    }
  }
  targets.push(...given);
  for (const text of values.sim ?? []) targets.push(parseTarget(text.startsWith('sim:') ? text : `sim:${text}`, sysfs));
  const entries = [...scan(targets), ...cmdlineFailure];
  if (values.json) io.stdout.write(`${JSON.stringify(entries, null, 2)}\n`);
  else {
    io.stdout.write(formatScan(entries));
    if (targets.length === 0) io.stdout.write(`no virtio-mmio transport found: ${NO_UIO_HINT}\n`);
  }
  return entries.some((e) => e.error) ? 1 : 0;
}

async function inspectCommand(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseOptions('inspect', {
    args: [...args],
    options: { reset: { type: 'boolean' }, json: { type: 'boolean' } },
    allowPositionals: true,
  });
  const target = oneTarget(positionals, io, 'inspect');
  const opened = openRegisters(target);
  try {
    const report = inspect(opened.regs, {
      reset: values.reset ?? false,
      windowFrom: opened.windowFrom,
      windowNote: opened.windowNote,
    });
    io.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatInspect(report));
    return report.problem ? 1 : 0;
  } finally {
    opened.close();
  }
}

async function rngCommand(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseOptions('rng', {
    args: [...args],
    options: { bytes: { type: 'string' }, json: { type: 'boolean' } },
    allowPositionals: true,
  });
  const target = oneTarget(positionals, io, 'rng');
  const bytes = values.bytes === undefined ? 32 : Number(values.bytes);
  if (!Number.isInteger(bytes) || bytes < 1 || bytes > 1 << 30)
    throw new UsageError(`--bytes must be an integer in [1, 2^30], got ${values.bytes}`);
  const opened = openForDriver(target);
  let rng: VirtioRng | undefined;
  try {
    rng = VirtioRng.open(opened.transport, { memory: opened.memory });
    const started = performance.now();
    const data = await rng.read(bytes);
    const ms = performance.now() - started;
    if (values.json) {
      const result = {
        where: opened.where,
        bytes: data.length,
        ms: Math.round(ms * 1000) / 1000,
        hex: data.toString('hex'),
      };
      io.stdout.write(`${JSON.stringify(result)}\n`);
    } else
      io.stdout.write(`${opened.where}: ${data.length} random bytes in ${ms.toFixed(1)} ms\n${data.toString('hex')}\n`);
    return 0;
  } finally {
    rng?.close();
    opened.close();
  }
}

async function selftestCommand(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseOptions('selftest', {
    args: [...args],
    options: {
      strict: { type: 'boolean' },
      timeout: { type: 'string' },
      json: { type: 'boolean' },
      hostile: { type: 'string', multiple: true },
    },
    allowPositionals: true,
  });
  const target = oneTarget(positionals, io, 'selftest');
  const timeoutMs = values.timeout === undefined ? 5000 : Number(values.timeout);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 600_000)
    throw new UsageError(`--timeout must be milliseconds in [1, 600000], got ${values.timeout}`);
  let hostile: HostileOptions | undefined;
  if (values.hostile?.length) {
    if (target.kind !== 'sim') throw new UsageError('--hostile works on sim devices only');
    hostile = { seed: 1, behaviours: Object.fromEntries(values.hostile.map(parseHostile)) };
  }
  const report = await selftest(target, {
    strict: values.strict ?? false,
    timeoutMs,
    echoTimeoutMs: Math.min(2000, timeoutMs),
    sim: hostile ? { hostile } : undefined,
  });
  io.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatSelftest(report));
  return report.ok ? 0 : 1;
}

/** `--hostile name[=value]`: one fault of FAULT_CATALOGUE, its value filling the entry's parameter. */
function parseHostile(text: string): [string, unknown] {
  const name = text.split('=', 1)[0];
  if (!faultEntry(name))
    throw new UsageError(
      `unknown --hostile behaviour '${name}' (known: ${FAULT_CATALOGUE.map((b) => b.name).join(', ')})`,
    );
  try {
    return parseFaultSetting(text);
  } catch (error) {
    throw new UsageError(`--hostile ${(error as Error).message.replace(/^fault /, '')}`);
  }
}
