import { UsageError, integerOption, oneTarget, parseOptions, reportFailure, type CliIo, type Command } from './cli-io';
import { dumpQueueState, type LiveQueueOptions } from '../diag';
import { openForDriver, openRegisters } from './targets';

interface DumpArgs {
  queue: number;
  live: boolean;
  options: LiveQueueOptions;
}

const MAX_QUEUE = 0xffff;

/** An optional integer option. */
const integer = (name: string, text: string | undefined, min: number, max: number): number | undefined =>
  text === undefined ? undefined : integerOption(name, text, min, max);

function parse(args: readonly string[]): { target: string[]; dump: DumpArgs } {
  const { values, positionals } = parseOptions('dump', {
    args: [...args],
    options: {
      queue: { type: 'string' },
      live: { type: 'boolean' },
      size: { type: 'string' },
      format: { type: 'string' },
      'page-size': { type: 'string' },
      rings: { type: 'string' },
      // Accepted as every command's is: dump's output is JSON anyway.
      json: { type: 'boolean' },
    },
    allowPositionals: true,
  });
  if (values.queue === undefined) throw new UsageError('dump needs --queue N');
  const queue = integer('queue', values.queue, 0, MAX_QUEUE)!;
  const options: LiveQueueOptions = {};
  const size = integer('size', values.size, 1, 32768);
  if (size !== undefined) options.size = size;
  if (values.format !== undefined) {
    if (values.format !== 'split' && values.format !== 'packed')
      throw new UsageError(`--format must be split or packed, got '${values.format}'`);
    options.format = values.format;
  }
  const pageSize = integer('page-size', values['page-size'], 1, 1 << 30);
  if (pageSize !== undefined) {
    if (pageSize & (pageSize - 1)) throw new UsageError(`--page-size must be a power of two, got ${pageSize}`);
    options.pageSize = pageSize;
  }
  if (values.rings !== undefined) {
    const parts = values.rings.split(',');
    if (parts.length !== 3 || !parts.every((p) => /^(0x[0-9a-f]+|\d+)$/i.test(p)))
      throw new UsageError(`--rings must be <desc>,<driver>,<device> device addresses, got '${values.rings}'`);
    const [desc, driver, device] = parts.map((p) => BigInt(p));
    options.addresses = { desc, driver, device };
  }
  return { target: positionals, dump: { queue, live: values.live ?? false, options } };
}

/**
 * `dump <dev> --queue N [--live] [--size N] [--format split|packed]
 * [--page-size N] [--rings desc,driver,device]`: the state of one queue as
 * JSON, as lib/diag's dumpQueueState gives it. A device nobody drives (a
 * sim, or hardware without DRIVER_OK) is driven by this process, and both
 * views are printed: the driver's and what the registers and ring memory
 * show. A device driven elsewhere (DRIVER_OK set, or --live) is only read:
 * registers, then the rings through /dev/mem. Exit 1 when something could
 * not be read.
 */
export const dumpCommand: Command = async (args: readonly string[], io: CliIo): Promise<number> => {
  const { target: positionals, dump } = parse(args);
  const target = oneTarget(positionals, io, 'dump');
  try {
    const result = await dumpQueueState(
      {
        // Only a device can be driven by another process; a sim exists in this one alone.
        openRegisters: target.kind === 'device' ? () => openRegisters(target) : undefined,
        openForDriver: () => openForDriver(target),
      },
      dump.queue,
      { ...dump.options, live: dump.live },
    );
    io.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    const memory = result.live.memory;
    // The rings could not be read: the dump above says so in JSON; stderr gets the failure line.
    if ('error' in memory)
      return reportFailure(
        io,
        'dump',
        Object.assign(new Error(memory.error.message), { code: memory.error.code, hint: memory.error.hint }),
      );
    return 0;
  } catch (error) {
    if (error instanceof UsageError) throw error;
    // dump's output is JSON whatever the options: so is its failure.
    return reportFailure(io, 'dump', error, { json: true });
  }
};
