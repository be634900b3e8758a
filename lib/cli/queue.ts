import { readFileSync } from 'node:fs';
import {
  bringUpQueue,
  type QueueBringUpPlan,
  type QueueBringUpReport,
  type QueueBringUpSubject,
  type QueueChainResult,
} from '../diag';
import {
  UsageError,
  integerOption,
  oneTarget,
  parseOptions,
  reportFailure,
  wantsJson,
  type CliIo,
  type Command,
} from './cli-io';
import { hexDump } from './hex-dump';
import { openForDriver, type OpenForDriverOptions, type Target } from './targets';

export const QUEUE_USAGE =
  'usage: virtio-mmio queue <dev> --queue N [--out HEX|@FILE] [--in SIZE]... [--features LIST] [--exclude LIST] ' +
  `[--chains K] [--size N] [--timeout MS] [--strict] [--json]

  Bring-up of a device the library may have no driver for (an FPGA or SoC block, a new
  device type): the init sequence of virtio 1.2 §3.1.1 with the features chosen, queue N
  set up, then descriptor chains posted (§2.7.4: the device-readable buffer first, then the
  device-writable ones), the device notified, and for each chain the used length and the
  bytes the device wrote. The device is reset at the end.

  --queue N          the queue index (QueueSel)
  --out HEX|@FILE    device-readable bytes: hex digits (spaces, ':' and a 0x prefix allowed),
                     or @FILE for a file's bytes; one descriptor
  --in SIZE          a device-writable buffer of SIZE bytes (1 to 1 MiB); repeat it for more
                     descriptors. A chain needs --out, --in or both
  --features LIST    features to ask for besides the transport features the library
                     implements (the default asks for those only): comma-separated bit numbers,
                     or names (VIRTIO_F_… or VIRTIO_BLK_F_RO / RO for a type the library knows);
                     the device must offer each
  --exclude LIST     transport features not to ask for, same form (e.g. RING_PACKED,EVENT_IDX)
  --chains K         post K such chains at once (default 1, at most 1024), each with its own buffers
  --size N           the queue size (default QueueNumMax up to 256; split rings: a power of two)
  --timeout MS       how long each chain may take (default 5000)
  --strict           also watch the device for the spec rules selftest --strict checks (exit 1 on
                     a broken MUST)
  --json             one JSON object: device, features, queue, and each chain's used length and
                     the bytes written, in hex
`;

/** What the command works on: an opened target as openForDriver() gives it (tests give their own sim). */
export type QueueTarget = ReturnType<QueueBringUpSubject['open']>;

export interface QueueDependencies {
  /** Opens the named target (default openForDriver); `options.wrapRegisters` is how --strict watches the device. */
  open(target: Target, options: OpenForDriverOptions): QueueTarget;
}

/** One chain's outcome, and the whole report (lib/diag's bring-up). */
export type ChainResult = QueueChainResult;
export type QueueReport = QueueBringUpReport;

interface QueuePlan extends QueueBringUpPlan {
  json: boolean;
}

const MAX_BUFFER = 1 << 20;
const MAX_CHAINS = 1024;
const DEFAULT_TIMEOUT_MS = 5000;

/** `virtio-mmio queue …` on real targets. */
export const queueCommand: Command = (args, io) => runQueue(args, io, { open: openForDriver });

/**
 * Runs `queue` with the target opened by `deps.open`; resolves with the
 * exit status (0 ok, 1 failed, 2 bad usage). Usage mistakes are found
 * before the device is opened.
 */
export async function runQueue(args: readonly string[], io: CliIo, deps: QueueDependencies): Promise<number> {
  let plan: QueuePlan;
  let target: Target;
  try {
    ({ plan, target } = parse(args, io));
  } catch (error) {
    return reportFailure(io, 'queue', error, { json: wantsJson(args), usage: QUEUE_USAGE });
  }
  try {
    const report = await bringUpQueue({ open: (options) => deps.open(target, options) }, plan);
    io.stdout.write(plan.json ? `${JSON.stringify(report, null, 2)}\n` : formatQueue(report));
    return report.ok ? 0 : 1;
  } catch (error) {
    return reportFailure(io, 'queue', error, { json: plan.json });
  }
}

function parse(args: readonly string[], io: CliIo): { plan: QueuePlan; target: Target } {
  const { values, positionals } = parseOptions('queue', {
    args: [...args],
    options: {
      queue: { type: 'string' },
      out: { type: 'string' },
      in: { type: 'string', multiple: true },
      features: { type: 'string' },
      exclude: { type: 'string' },
      chains: { type: 'string' },
      size: { type: 'string' },
      timeout: { type: 'string' },
      strict: { type: 'boolean' },
      json: { type: 'boolean' },
    },
    allowPositionals: true,
  });
  if (values.queue === undefined) throw new UsageError('queue needs --queue N');
  const ins = (values.in ?? []).map((text) => integerOption('in', text, 1, MAX_BUFFER));
  const out = values.out === undefined ? undefined : outBytes(values.out);
  if (!out && ins.length === 0)
    throw new UsageError('queue needs something to post: --out HEX|@FILE, --in SIZE, or both');
  const target = oneTarget(positionals, io, 'queue');
  return {
    target,
    plan: {
      queue: integerOption('queue', values.queue, 0, 0xffff),
      out,
      ins,
      features: values.features,
      exclude: values.exclude,
      chains: values.chains === undefined ? 1 : integerOption('chains', values.chains, 1, MAX_CHAINS),
      size: values.size === undefined ? undefined : integerOption('size', values.size, 1, 32768),
      timeoutMs:
        values.timeout === undefined ? DEFAULT_TIMEOUT_MS : integerOption('timeout', values.timeout, 1, 600_000),
      strict: values.strict ?? false,
      json: values.json ?? false,
    },
  };
}

/** --out: hex digits (whitespace, ':' separators and a 0x prefix allowed) or @FILE. */
function outBytes(text: string): Buffer {
  if (text.startsWith('@')) {
    const data = readFileSync(text.slice(1));
    if (data.length === 0 || data.length > MAX_BUFFER)
      throw new UsageError(`--out ${text}: the file must hold 1 byte to 1 MiB, it holds ${data.length}`);
    return data;
  }
  const digits = text.replace(/^0x/i, '').replace(/[\s:]/g, '');
  if (!/^(?:[0-9a-f]{2})+$/i.test(digits) || digits.length / 2 > MAX_BUFFER)
    throw new UsageError(`--out must be hex bytes (an even number of hex digits, up to 1 MiB) or @FILE, got '${text}'`);
  return Buffer.from(digits, 'hex');
}

/** Human-readable report: the device, what was negotiated, each chain with a hex dump of what the device wrote. */
export function formatQueue(report: QueueReport): string {
  const lines = [
    `${report.where}: ${report.device}, virtio-mmio Version ${report.version}, vendor ${report.vendorId}`,
    `features offered ${report.offered}; negotiated: ${report.features.length ? report.features.join(', ') : 'none'}`,
    `queue ${report.queue.index}: ${report.queue.size} entries, ${report.queue.ring} ring`,
  ];
  for (const c of report.chains) {
    const posted = `${c.out} bytes out, ${c.in.length ? `${c.in.join(' + ')} bytes in` : 'nothing in'}`;
    if (c.error) {
      lines.push(
        `chain ${c.chain} (${posted}): FAILED ` +
          `${c.error.message.startsWith(`${c.error.code}:`) ? c.error.message : `${c.error.code}: ${c.error.message}`}`,
      );
      continue;
    }
    lines.push(`chain ${c.chain} (${posted}): used len ${c.usedLen} in ${c.ms!.toFixed(1)} ms`);
    const dump = hexDump(Buffer.from(c.hex!, 'hex'), 0n, '  ');
    if (dump) lines.push(dump.trimEnd());
  }
  lines.push(`interrupts: ${report.interrupts}`);
  if (report.strict) {
    const { rules, violations } = report.strict;
    if (violations.length === 0) lines.push(`strict: ${rules} device rules checked, none broken`);
    else {
      lines.push(`strict: ${rules} device rules checked, ${violations.length} broken:`);
      for (const v of violations)
        lines.push(
          `  ${v.level.toUpperCase()} §${v.section} ${v.rule}: ${v.text}\n      ` +
            `${v.count === 1 ? '' : `${v.count} times; first: `}${v.detail}`,
        );
    }
  }
  lines.push(report.ok ? 'ok' : 'FAILED');
  return `${lines.join('\n')}\n`;
}
