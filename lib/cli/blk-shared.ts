import type { VirtioBlk } from '../devices';
import { BLK_SECTOR_SIZE } from '../spec';
import type { CliIo } from './cli-io';
import { Progress } from './progress';
import { outOfRange } from '../errors';

/** What the blk actions share: their options, their context, the progress bar and the range check. */

export const OPTIONS = {
  json: { type: 'boolean' },
  progress: { type: 'boolean' },
  bytes: { type: 'string' },
  sectors: { type: 'string' },
  out: { type: 'string' },
  in: { type: 'string' },
  pattern: { type: 'string' },
  verify: { type: 'boolean' },
  flush: { type: 'boolean' },
  depth: { type: 'string' },
  seconds: { type: 'string' },
  warmup: { type: 'string' },
  size: { type: 'string' },
  mode: { type: 'string' },
  write: { type: 'boolean' },
} as const;

export type Values = { [K in keyof typeof OPTIONS]?: (typeof OPTIONS)[K]['type'] extends 'boolean' ? boolean : string };

/** What an action needs besides the device. */
export interface Context {
  readonly io: CliIo;
  readonly where: string;
  readonly values: Values;
  readonly now?: () => number;
}

/** A bar on stderr for long runs on a terminal (without --json), or whenever --progress is given. */
export function progressFor(
  context: Context,
  long: boolean,
  options: { total: number; label: string; unit?: 'bytes' | 'ms' },
): Progress | undefined {
  const { io, values } = context;
  const show = values.progress === true || (io.isTTY === true && long && !values.json);
  return show ? new Progress(io.stderr, { ...options, ...(context.now ? { now: context.now } : {}) }) : undefined;
}

/** Refuses [sector, sector + bytes) beyond the capacity before anything is sent (so no part of it is). */
export function checkRange(blk: VirtioBlk, sector: bigint, bytes: number): void {
  const end = sector + BigInt(bytes / BLK_SECTOR_SIZE);
  if (end > blk.info.capacity)
    throw outOfRange(`sectors ${sector}..${end} are beyond the device's capacity of ${blk.info.capacity} sectors`);
}

export const elapsedMs = (since: number): number => Math.round((performance.now() - since) * 1000) / 1000;

export const print = (context: Context, object: unknown): unknown =>
  context.io.stdout.write(`${JSON.stringify(object)}\n`);
