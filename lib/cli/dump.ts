import { TransportError } from '../errors';
import { VirtioBlk, VirtioRng, type VirtioDriver } from '../devices';
import { PhysicalMemory, type DmaAllocator } from '../platform';
import { DeviceStatus, MmioRegister, deviceIdName } from '../spec';
import type { MmioTransport } from '../transport';
import { UsageError, integerOption, oneTarget, parseOptions, reportFailure, type CliIo, type Command } from './cli-io';
import {
  DRIVERS,
  deviceRingMemory,
  readLiveQueue,
  type LiveQueueDump,
  type LiveQueueOptions,
  type QueueDump,
} from '../diag';
import { openForDriver, openRegisters, type Target } from './targets';

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
 * JSON. A device nobody drives (a sim, or hardware without DRIVER_OK) is
 * driven by this process, with a request in flight where that is natural,
 * and both views are printed: the driver's (VirtioDriver.dumpQueue) and
 * what the registers and ring memory show (readLiveQueue). A device driven
 * elsewhere (DRIVER_OK set, or --live) is only read: registers, then the
 * rings through /dev/mem. Exit 1 when something could not be read.
 */
export const dumpCommand: Command = async (args: readonly string[], io: CliIo): Promise<number> => {
  const { target: positionals, dump } = parse(args);
  const target = oneTarget(positionals, io, 'dump');
  try {
    const result =
      (target.kind === 'device' ? readIfDrivenElsewhere(target, dump) : undefined) ??
      (await driveAndDump(target, dump));
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

/**
 * The live dump of a device someone else drives — DRIVER_OK set (§3.1.1
 * step 8), or --live — through one opening of its registers; undefined
 * when nobody drives it (Status is read, nothing written).
 */
function readIfDrivenElsewhere(
  target: Target,
  dump: DumpArgs,
): { where: string; driven: 'elsewhere'; live: LiveQueueDump } | undefined {
  const opened = openRegisters(target);
  try {
    if (!dump.live && !(opened.regs.readl(MmioRegister.Status) & DeviceStatus.DRIVER_OK)) return undefined;
    return {
      where: opened.where,
      driven: 'elsewhere',
      live: readLiveQueue(opened.regs, dump.queue, new PhysicalMemory(), dump.options),
    };
  } finally {
    opened.close();
  }
}

/**
 * Opens the driver for the device type; a request in flight for rng and blk (console and net post receive buffers on
 * open).
 */
function openDriver(
  transport: MmioTransport,
  memory: DmaAllocator,
): { driver: VirtioDriver; inFlight: Promise<unknown>[] } {
  const open = DRIVERS[transport.deviceId];
  if (!open) {
    throw new TransportError(
      TransportError.WRONG_DEVICE,
      `${transport.label}: dump drives entropy, block, console and network devices, this is ` +
        `${deviceIdName(transport.deviceId)}` +
        `; use --live on a device another driver has set up`,
    );
  }
  const driver = open(transport, { memory });
  if (driver instanceof VirtioRng) return { driver, inFlight: [driver.read(16)] };
  if (driver instanceof VirtioBlk) return { driver, inFlight: [driver.read(0, 512)] };
  return { driver, inFlight: [] };
}

async function driveAndDump(
  target: Target,
  dump: DumpArgs,
): Promise<{ where: string; driven: 'this process'; queue: QueueDump; live: LiveQueueDump }> {
  const opened = openForDriver(target);
  let driver: VirtioDriver | undefined;
  let inFlight: Promise<unknown>[] = [];
  try {
    ({ driver, inFlight } = openDriver(opened.transport, opened.memory));
    // Errors of the requests are not ours to report: they are canceled by close() below.
    for (const request of inFlight) request.catch(() => undefined);
    // A few microtasks: what was submitted is published (and the device notified); the sim and the
    // interrupt path run on later turns of the event loop, so the requests are still in flight.
    for (let i = 0; i < 8; i++) await Promise.resolve();
    let geometry: QueueDump;
    try {
      geometry = driver.dumpQueue(dump.queue);
    } catch (error) {
      if (!(error instanceof RangeError)) throw error;
      throw new TransportError(
        TransportError.QUEUE_UNAVAILABLE,
        `${opened.where}: the device has no queue ${dump.queue}, or the ${deviceIdName(opened.transport.deviceId)} ` +
          `driver does not use it`,
      );
    }
    const options: LiveQueueOptions = { ...dump.options, size: geometry.size, format: geometry.format };
    // The address registers are write-only (§4.2.2): the driver knows where its rings are.
    if (opened.transport.version === 2)
      options.addresses = {
        desc: BigInt(geometry.addresses.desc),
        driver: BigInt(geometry.addresses.driver),
        device: BigInt(geometry.addresses.device),
      };
    const live = readLiveQueue(opened.transport.regs, dump.queue, deviceRingMemory(opened.memory), options);
    // The driver's view is taken after the memory's: a real device works beside us, and a chain the
    // driver still sees unused now was unused when the memory was read (nothing is submitted between).
    const queue = driver.dumpQueue(dump.queue);
    return { where: opened.where, driven: 'this process', queue, live };
  } finally {
    driver?.close();
    opened.close();
  }
}
