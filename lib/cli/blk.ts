import { createHash, randomFillSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { VirtioBlk } from '../devices';
import { DeviceIoError, ReadOnlyError, VerifyError } from '../errors';
import type { DmaAllocator } from '../platform';
import type { QueueMode } from '../queue';
import { BLK_SECTOR_SIZE, DeviceId, BlkStatus, FeatureBit, hasFeature } from '../spec';
import type { MmioTransport } from '../transport';
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
import { Progress, formatBytes } from './progress';
import { hexDump } from './hex-dump';
import { nameFeatures } from './inspect';
import { openForDriver, type Target } from './targets';
import { OPTIONS, checkRange, elapsedMs, print, progressFor, type Context, type Values } from './blk-shared';
import { benchPlan, runBench } from './blk-bench';
import { hex } from '../util/hex';

export const BLK_USAGE = `usage: virtio-mmio blk <dev> <info|read|write|bench> [options]

  blk <dev> info [--json]
        capacity, block size, read-only, queues, features by name and the device ID string
  blk <dev> read <sector> [--bytes N | --sectors N] [--out FILE] [--progress] [--json]
        a hex dump of N bytes (default one sector; any N, whole sectors are read) from <sector>; --out FILE writes them
        to FILE instead (- = stdout, raw)
  blk <dev> write <sector> (--in FILE | --pattern BYTE|random [--bytes N | --sectors N])
        [--verify] [--flush] [--progress] [--json]
        writes FILE, or N bytes (default one sector) of BYTE (0-255) or random data;
        --verify reads them back and compares, --flush sends a FLUSH afterwards
  blk <dev> bench [--depth N] [--seconds S] [--warmup S] [--size BYTES] [--mode interrupt|poll|hybrid]
        [--write] [--progress] [--json]
        random reads of BYTES (default 4096) at random aligned places, N at a time (default 1),
        for S seconds (default 10) after an unmeasured warm-up (default min(2, S/2));
        prints requests, IOPS, MB/s, latency (mean, p50, p99 in µs), notifications
        and interrupts per request. --write benchmarks writes: it OVERWRITES THE DEVICE'S DATA
        with random bytes

  Sizes are multiples of 512 bytes, up to 1 GiB for read and write. A progress bar is drawn
  on stderr for transfers above 1 MiB and for bench when stderr is a terminal and --json is
  not given; --progress draws it always (also with --json: the JSON goes to stdout).
`;

/** What the command works on: an opened target as openForDriver() gives it (tests give their own sim). */
export interface BlkTarget {
  readonly where: string;
  readonly transport: MmioTransport;
  readonly memory: DmaAllocator;
  close(): void;
}

export interface BlkDependencies {
  /** Opens the named target (default openForDriver). */
  open(target: Target): BlkTarget;
  /** The progress bar's clock in milliseconds (default performance.now). */
  now?: () => number;
}

/** `virtio-mmio blk …` on real targets. */
export const blkCommand: Command = (args, io) => runBlk(args, io, { open: openForDriver });

/** Largest read or write, held in memory whole. */
const MAX_TRANSFER = 1 << 30;
/** Reads and writes go to the device in parts of this size, IN_FLIGHT at a time. */
const CHUNK = 1 << 20;
const IN_FLIGHT = 4;
/** Transfers above this size are "long": the bar is drawn on a terminal. */
const LONG_TRANSFER = 1 << 20;

/** Options each action takes, besides --json. */
const ACTION_OPTIONS: Record<string, readonly (keyof typeof OPTIONS)[]> = {
  info: [],
  read: ['bytes', 'sectors', 'out', 'progress'],
  write: ['bytes', 'sectors', 'in', 'pattern', 'verify', 'flush', 'progress'],
  bench: ['depth', 'seconds', 'warmup', 'size', 'mode', 'write', 'progress'],
};

/**
 * Runs `blk` with the target opened by `deps.open`; resolves with the exit
 * status (0 ok, 1 failed, 2 bad usage) and writes its own error messages,
 * so it behaves the same called from runCli or from a test.
 */
export async function runBlk(args: readonly string[], io: CliIo, deps: BlkDependencies): Promise<number> {
  let action: string | undefined;
  try {
    const { values, positionals } = parseOptions('blk', { args: [...args], options: OPTIONS, allowPositionals: true });
    action = positionals[1];
    if (action === undefined) throw new UsageError('blk needs a device and an action: info, read, write or bench');
    const allowed = ACTION_OPTIONS[action];
    if (!allowed) throw new UsageError(`unknown blk action '${action}'`);
    const stray = Object.keys(values).filter(
      (name) => name !== 'json' && !allowed.includes(name as keyof typeof OPTIONS),
    );
    if (stray.length > 0) throw new UsageError(`blk ${action} does not take --${stray.join(', --')}`);
    const rest = positionals.slice(2);
    const wantsSector = action === 'read' || action === 'write';
    if (rest.length !== (wantsSector ? 1 : 0))
      throw new UsageError(
        wantsSector
          ? `blk ${action} takes one sector number`
          : `blk ${action} takes no more arguments, got '${rest.join(' ')}'`,
      );
    const target = oneTarget(positionals.slice(0, 1), io, 'blk');
    const run = plan(action, values as Values, rest[0]);
    const opened = deps.open(target);
    let blk: VirtioBlk | undefined;
    try {
      blk = VirtioBlk.open(opened.transport, {
        memory: opened.memory,
        ...(run.queueMode ? { queueMode: run.queueMode } : {}),
      });
      return await run.execute(blk, { io, where: opened.where, values: values as Values, now: deps.now });
    } finally {
      blk?.close();
      opened.close();
    }
  } catch (error) {
    return reportFailure(io, `blk${action && ACTION_OPTIONS[action] ? ` ${action}` : ''}`, error, {
      json: wantsJson(args),
      usage: BLK_USAGE,
    });
  }
}

/** The action with its arguments checked (usage mistakes are found before the device is opened). */
function plan(
  action: string,
  values: Values,
  sectorText?: string,
): { queueMode?: QueueMode; execute(blk: VirtioBlk, context: Context): Promise<number> } {
  switch (action) {
    case 'info':
      return { execute: info };
    case 'read': {
      const sector = parseSector(sectorText!);
      const bytes = transferBytes(values, true);
      if (values.out === '-' && values.json) throw new UsageError('--json and --out - would both write to stdout');
      return { execute: (blk, context) => read(blk, context, sector, bytes) };
    }
    case 'write': {
      const sector = parseSector(sectorText!);
      const data = writeData(values);
      return { execute: (blk, context) => write(blk, context, sector, data) };
    }
    default: {
      const bench = benchPlan(values);
      return { queueMode: bench.mode, execute: (blk, context) => runBench(blk, context, bench) };
    }
  }
}

// ---- arguments ----

function parseSector(text: string): bigint {
  if (!/^(?:\d+|0x[0-9a-f]+)$/i.test(text))
    throw new UsageError(`the sector must be a non-negative integer, got '${text}'`);
  return BigInt(text);
}

/**
 * --bytes or --sectors (default one sector), at most MAX_TRANSFER; a whole number of sectors unless `anyLength` (reads
 * show part of the last sector).
 */
function transferBytes(values: Values, anyLength = false): number {
  if (values.bytes !== undefined && values.sectors !== undefined)
    throw new UsageError('give --bytes or --sectors, not both');
  const bytes =
    values.sectors !== undefined
      ? integerOption('sectors', values.sectors, 1, MAX_TRANSFER / BLK_SECTOR_SIZE) * BLK_SECTOR_SIZE
      : values.bytes !== undefined
        ? integerOption('bytes', values.bytes, 1, MAX_TRANSFER)
        : BLK_SECTOR_SIZE;
  if (!anyLength && bytes % BLK_SECTOR_SIZE !== 0)
    throw new UsageError(`--bytes must be a multiple of ${BLK_SECTOR_SIZE}, got ${bytes}`);
  return bytes;
}

/** The data a write sends: the --in file (read now, before the device is opened) or --pattern bytes. */
function writeData(values: Values): Buffer {
  if ((values.in === undefined) === (values.pattern === undefined))
    throw new UsageError('blk write needs --in FILE or --pattern BYTE|random');
  if (values.in !== undefined) {
    if (values.bytes !== undefined || values.sectors !== undefined)
      throw new UsageError('--in writes the whole file: --bytes and --sectors go with --pattern');
    const data = readFileSync(values.in);
    if (data.length === 0 || data.length % BLK_SECTOR_SIZE !== 0 || data.length > MAX_TRANSFER) {
      throw new UsageError(
        `--in ${values.in}: its size must be a non-zero multiple of ${BLK_SECTOR_SIZE} bytes ` +
          `up to 1 GiB, it is ${data.length}`,
      );
    }
    return data;
  }
  const bytes = transferBytes(values);
  if (values.pattern === 'random') return randomFillSync(Buffer.allocUnsafe(bytes));
  return Buffer.alloc(bytes, integerOption('pattern', values.pattern!, 0, 255));
}

// ---- shared ----

/**
 * Runs `each` over CHUNK-sized parts of [0, length), IN_FLIGHT at a time,
 * drawing `progress`. After a failure no new part starts; it returns once
 * none is in flight, then throws the first error.
 */
async function inChunks(
  length: number,
  each: (offset: number, size: number) => Promise<void>,
  progress?: Progress,
): Promise<void> {
  let next = 0;
  let done = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (next < length && !failure) {
      const offset = next;
      const size = Math.min(CHUNK, length - offset);
      next += size;
      try {
        await each(offset, size);
      } catch (error) {
        failure ??= { error };
        return;
      }
      done += size;
      progress?.update(done);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  progress?.finish(done);
  if (failure) throw failure.error;
}

const readInto = (blk: VirtioBlk, sector: bigint, data: Buffer) => (offset: number, size: number) =>
  blk.read(sector + BigInt(offset / BLK_SECTOR_SIZE), data.subarray(offset, offset + size)).then(() => undefined);

// ---- info ----

async function info(blk: VirtioBlk, context: Context): Promise<number> {
  let id: string | null;
  try {
    id = await blk.getId();
  } catch (error) {
    // GET_ID is optional for a device (§5.2.6.2): UNSUPP means it has no ID string.
    if (!(error instanceof DeviceIoError && error.status === BlkStatus.UNSUPP)) throw error;
    id = null;
  }
  const i = blk.info;
  const names = nameFeatures(DeviceId.BLOCK, blk.features).map((f) => f.name);
  const features = names.length ? names.join(', ') : 'none';
  if (context.values.json) {
    // 64-bit counts as decimal strings: JSON numbers lose precision above 2^53.
    print(context, {
      where: context.where,
      capacity: String(i.capacity),
      bytes: String(i.bytes),
      blockSize: i.blockSize,
      readOnly: i.readOnly,
      queues: i.queues,
      flush: i.flush,
      ...(i.segMax !== undefined ? { segMax: i.segMax } : {}),
      ...(i.sizeMax !== undefined ? { sizeMax: i.sizeMax } : {}),
      ...(i.discard ? { discard: i.discard } : {}),
      ...(i.writeZeroes ? { writeZeroes: i.writeZeroes } : {}),
      ...(i.topology ? { topology: i.topology } : {}),
      ring: hasFeature(blk.features, FeatureBit.RING_PACKED) ? 'packed' : 'split',
      features: features === 'none' ? [] : features.split(', '),
      id,
    });
    return 0;
  }
  const lines = [
    `${context.where}: virtio-blk, ${i.capacity} sectors (${formatBytes(Number(i.bytes))}, ${i.bytes} bytes), ` +
      `block size ${i.blockSize}, ${i.readOnly ? 'read-only' : 'read-write'}, ${i.queues} queue` +
      `${i.queues === 1 ? '' : 's'}`,
    `id: ${id === null ? '(the device does not support GET_ID)' : JSON.stringify(id)}`,
    `features: ${features}`,
  ];
  if (i.segMax !== undefined || i.sizeMax !== undefined) {
    lines.push(
      `limits: ${i.segMax !== undefined ? `${i.segMax} segments per request` : 'any number of segments'}, ` +
        `${i.sizeMax !== undefined ? `at most ${i.sizeMax} bytes each` : 'of any size'}`,
    );
  }
  context.io.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

// ---- read ----

async function read(blk: VirtioBlk, context: Context, sector: bigint, bytes: number): Promise<number> {
  // Whole sectors are read; the first `bytes` of them are shown.
  const whole = Math.ceil(bytes / BLK_SECTOR_SIZE) * BLK_SECTOR_SIZE;
  checkRange(blk, sector, whole);
  const sectors = Buffer.allocUnsafe(whole);
  const started = performance.now();
  await inChunks(
    whole,
    readInto(blk, sector, sectors),
    progressFor(context, whole > LONG_TRANSFER, { total: whole, label: 'read' }),
  );
  const data = sectors.subarray(0, bytes);
  const ms = elapsedMs(started);
  const { out, json } = context.values;
  if (out === '-') {
    // Raw bytes: process.stdout takes Buffers (CliIo declares text only).
    (context.io.stdout as unknown as { write(data: Uint8Array): unknown }).write(data);
  } else if (out !== undefined) {
    writeFileSync(out, data);
    const sha256 = createHash('sha256').update(data).digest('hex');
    if (json) print(context, { where: context.where, sector: String(sector), bytes, ms, out, sha256 });
    else
      context.io.stdout.write(
        `${context.where}: ${bytes} bytes from sector ${sector} written to ${out} in ${ms.toFixed(1)} ms ` +
          `(sha256 ${sha256})\n`,
      );
  } else if (json) {
    print(context, { where: context.where, sector: String(sector), bytes, ms, hex: data.toString('hex') });
  } else {
    context.io.stdout.write(hexDump(data, sector * BigInt(BLK_SECTOR_SIZE)));
  }
  return 0;
}

// ---- write ----

async function write(blk: VirtioBlk, context: Context, sector: bigint, data: Buffer): Promise<number> {
  // Checked here, before the first request: nothing is sent to a read-only device (§5.2.6.2).
  if (blk.info.readOnly)
    throw new ReadOnlyError(`${context.where}: the device is read-only (VIRTIO_BLK_F_RO); nothing was written`);
  checkRange(blk, sector, data.length);
  const long = data.length > LONG_TRANSFER;
  const started = performance.now();
  await inChunks(
    data.length,
    (offset, size) => blk.write(sector + BigInt(offset / BLK_SECTOR_SIZE), data.subarray(offset, offset + size)),
    progressFor(context, long, { total: data.length, label: 'write' }),
  );
  const ms = elapsedMs(started);
  const result: Record<string, unknown> = { where: context.where, sector: String(sector), bytes: data.length, ms };
  const notes: string[] = [];
  if (context.values.flush) {
    if (blk.info.flush) {
      await blk.flush();
      result.flushed = true;
    } else {
      result.flushed = false;
      notes.push('the device does not offer VIRTIO_BLK_F_FLUSH: no FLUSH sent');
    }
  }
  let mismatch: { offset: number; deviceOffset: string; wrote: number; read: number } | undefined;
  if (context.values.verify) {
    const back = Buffer.allocUnsafe(data.length);
    await inChunks(
      data.length,
      readInto(blk, sector, back),
      progressFor(context, long, { total: data.length, label: 'verify' }),
    );
    const offset = firstDifference(data, back);
    result.verified = offset < 0;
    if (offset >= 0) {
      mismatch = {
        offset,
        deviceOffset: String(sector * BigInt(BLK_SECTOR_SIZE) + BigInt(offset)),
        wrote: data[offset],
        read: back[offset],
      };
      result.mismatch = mismatch;
    }
  }
  if (notes.length) result.notes = notes;
  if (context.values.json) print(context, result);
  else {
    const lines = [`${context.where}: wrote ${data.length} bytes at sector ${sector} in ${ms.toFixed(1)} ms`];
    if (result.flushed) lines.push('flushed');
    lines.push(...notes);
    if (result.verified) lines.push(`verified: the ${data.length} bytes read back are the ones written`);
    context.io.stdout.write(`${lines.join('\n')}\n`);
  }
  if (mismatch) {
    const error = new VerifyError(
      `verify failed: first difference at byte ${mismatch.offset} of the data (device byte ${mismatch.deviceOffset}` +
        `): wrote ${hex(mismatch.wrote, 2)}, read back ${hex(mismatch.read, 2)}`,
      mismatch.offset,
    );
    // The JSON result (verified: false, mismatch) is already on stdout: the failure goes to stderr only.
    return reportFailure(context.io, 'blk write', error);
  }
  return 0;
}

/** The index of the first byte where `a` and `b` (same length) differ, or -1. */
function firstDifference(a: Buffer, b: Buffer): number {
  const step = 4096;
  for (let at = 0; at < a.length; at += step) {
    const end = Math.min(at + step, a.length);
    if (a.subarray(at, end).equals(b.subarray(at, end))) continue;
    for (let i = at; i < end; i++) if (a[i] !== b[i]) return i;
  }
  return -1;
}
