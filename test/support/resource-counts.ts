/**
 * Counts of what a process holds, for leak checks: taken before and after
 * a workload, printed as a table, compared name by name.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DmaPool, EpollLoop } from '../../lib/platform';

/** Named counts, in the order they were taken. */
export type ResourceCounts = Map<string, number>;

export interface CountSources {
  /** Pools whose regions, bytes in use and chunks are counted, by label. */
  pools?: Record<string, DmaPool>;
  /** The epoll loop whose registrations are counted. */
  loop?: EpollLoop;
  /** Further counts (e.g. the software device's state). */
  extra?: () => Record<string, number>;
}

/** What each open fd of this process is, from its /proc/self/fd link ('anon_inode:[eventfd]', 'pipe:[…]', a path…). */
function fdTargets(): string[] {
  const targets: string[] = [];
  for (const name of readdirSync('/proc/self/fd')) {
    try {
      targets.push(readlinkSync(`/proc/self/fd/${name}`));
    } catch {
      // The directory handle readdir used is gone by now.
    }
  }
  return targets;
}

/**
 * Registrations held by every epoll set of the process (one "tfd:" line per
 * watched fd in /proc/self/fdinfo, see proc(5)): the kernel's view, ours and libuv's.
 */
function kernelEpollRegistrations(): number {
  let total = 0;
  for (const name of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${name}`) !== 'anon_inode:[eventpoll]') continue;
      total += readFileSync(`/proc/self/fdinfo/${name}`, 'utf8')
        .split('\n')
        .filter((line) => line.startsWith('tfd:')).length;
    } catch {
      // Closed while we looked.
    }
  }
  return total;
}

/** Samples taken for the Timeout count, and the gap between them (see steadyTimeouts). */
const TIMEOUT_SAMPLES = 3;
const TIMEOUT_SAMPLE_GAP_MS = 150;

/**
 * Active (ref'd) timers of the process, as the fewest seen in a few samples
 * 150 ms apart. A test run in band shares its process with jest's reporter,
 * whose status ticker holds a 100 ms debounce timer for a moment every
 * second: at most one sample can fall in such a moment. A timer left
 * behind for longer than the sampling (300 ms) is in every sample.
 */
async function steadyTimeouts(): Promise<number> {
  let fewest = Infinity;
  for (let i = 0; i < TIMEOUT_SAMPLES; i++) {
    if (i > 0) await sleep(TIMEOUT_SAMPLE_GAP_MS);
    fewest = Math.min(fewest, process.getActiveResourcesInfo().filter((type) => type === 'Timeout').length);
  }
  return fewest;
}

export async function countResources(sources: CountSources = {}): Promise<ResourceCounts> {
  const timeouts = await steadyTimeouts();
  const counts: ResourceCounts = new Map();
  const targets = fdTargets();
  counts.set('open fds', targets.length);
  counts.set('  eventfds', targets.filter((t) => t === 'anon_inode:[eventfd]').length);
  counts.set('  epoll fds', targets.filter((t) => t === 'anon_inode:[eventpoll]').length);
  counts.set('kernel epoll registrations', kernelEpollRegistrations());
  if (sources.loop) {
    counts.set('EpollLoop registrations', sources.loop.size);
    counts.set('EpollLoop keep-alive fds', sources.loop.keepAliveCount);
  }
  for (const [label, pool] of Object.entries(sources.pools ?? {})) {
    const stats = pool.stats();
    counts.set(`${label} DMA regions`, stats.regions);
    counts.set(`${label} DMA bytes in use`, stats.bytesInUse);
    counts.set(`${label} DMA chunks`, stats.chunks);
    counts.set(`${label} DMA bytes held`, stats.bytesTotal);
  }
  // Timers, immediates and libuv handles and requests, by type (Timeout as sampled above).
  const active = new Map<string, number>([
    ['Timeout', timeouts],
    ['Immediate', 0],
  ]);
  for (const type of process.getActiveResourcesInfo())
    if (type !== 'Timeout') active.set(type, (active.get(type) ?? 0) + 1);
  for (const [type, n] of [...active].sort(([a], [b]) => a.localeCompare(b))) counts.set(`active ${type}`, n);
  for (const [name, n] of Object.entries(sources.extra?.() ?? {})) counts.set(name, n);
  return counts;
}

/** Every name in either set, `before`'s order first; a name missing on one side counts 0 there. */
function names(before: ResourceCounts, after: ResourceCounts): string[] {
  return [...new Set([...before.keys(), ...after.keys()])];
}

/** `resource  before  after` rows, with a mark where they differ. */
export function formatCounts(before: ResourceCounts, after: ResourceCounts): string {
  const rows = names(before, after).map((name) => [name, String(before.get(name) ?? 0), String(after.get(name) ?? 0)]);
  const header = ['resource', 'before', 'after'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[], mark = ''): string =>
    `${cells[0].padEnd(widths[0])}  ${cells[1].padStart(widths[1])}  ${cells[2].padStart(widths[2])}${mark}\n`;
  return line(header) + rows.map((r) => line(r, r[1] === r[2] ? '' : '  <- differs')).join('');
}

/** The counts that differ, as { name: [before, after] }; empty when nothing leaked. */
export function countChanges(before: ResourceCounts, after: ResourceCounts): Record<string, [number, number]> {
  const changes: Record<string, [number, number]> = {};
  for (const name of names(before, after)) {
    const b = before.get(name) ?? 0;
    const a = after.get(name) ?? 0;
    if (a !== b) changes[name.trim()] = [b, a];
  }
  return changes;
}
