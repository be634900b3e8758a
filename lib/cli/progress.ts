import { outOfRange } from '../errors';
/** Where a progress bar is drawn (the CLI's stderr). */
export interface ProgressOutput {
  write(text: string): unknown;
}

export interface ProgressOptions {
  /** The amount that makes 100 %: bytes, or milliseconds for a timed run. */
  total: number;
  /** Printed first on the line, e.g. "read". */
  label: string;
  /** 'bytes' shows sizes and a rate; 'ms' shows seconds (for runs that last a given time). Default 'bytes'. */
  unit?: 'bytes' | 'ms';
  /** Milliseconds from any fixed point (default performance.now); tests give a fake clock. */
  now?: () => number;
  /** Width of the bar in characters (default 30). */
  width?: number;
}

/** Least time between two redraws. */
export const REDRAW_MS = 100;

/**
 * A one-line progress bar redrawn in place with `\r`: amount done of the
 * total, percent, rate and a bar of `#`. update() redraws at most every
 * REDRAW_MS; finish() draws the last state and ends the line. It owns no
 * timer, so it never keeps the process alive.
 */
export class Progress {
  private readonly total: number;
  private readonly label: string;
  private readonly unit: 'bytes' | 'ms';
  private readonly now: () => number;
  private readonly width: number;
  private readonly started: number;
  private lastDraw: number;
  private done = 0;
  private finished = false;
  /** Length of the last line drawn: a shorter one is padded so no old characters stay visible. */
  private drawn = 0;

  constructor(
    private readonly out: ProgressOutput,
    options: ProgressOptions,
  ) {
    if (!(Number.isFinite(options.total) && options.total >= 0))
      throw outOfRange(`total must be a finite number ≥ 0, got ${options.total}`);
    this.total = options.total;
    this.label = options.label;
    this.unit = options.unit ?? 'bytes';
    this.now = options.now ?? (() => performance.now());
    this.width = options.width ?? 30;
    this.started = this.now();
    this.lastDraw = this.started;
  }

  /** Sets the amount done (and `detail`, shown after the bar, e.g. live IOPS); redraws if REDRAW_MS have passed. */
  update(done: number, detail?: string): void {
    if (this.finished) return;
    this.done = Math.min(Math.max(done, this.done), this.total);
    const now = this.now();
    if (now - this.lastDraw < REDRAW_MS) return;
    this.lastDraw = now;
    this.out.write(`\r${this.pad(this.line(now, detail))}`);
  }

  private pad(text: string): string {
    const padded = text.padEnd(this.drawn);
    this.drawn = text.length;
    return padded;
  }

  /**
   * Draws the final state (the whole total unless `done` says less, e.g. after a failure) and a newline; later calls do
   * nothing.
   */
  finish(done = this.total, detail?: string): void {
    if (this.finished) return;
    this.finished = true;
    this.done = Math.min(Math.max(done, 0), this.total);
    this.out.write(`\r${this.pad(this.line(this.now(), detail))}\n`);
  }

  private line(now: number, detail?: string): string {
    const fraction = this.total === 0 ? 1 : this.done / this.total;
    const filled = Math.round(fraction * this.width);
    const bar = `[${'#'.repeat(filled)}${' '.repeat(this.width - filled)}]`;
    const seconds = (now - this.started) / 1000;
    const amount =
      this.unit === 'bytes'
        ? `${formatBytes(this.done)} / ${formatBytes(this.total)}`
        : `${(this.done / 1000).toFixed(1)} s / ${(this.total / 1000).toFixed(1)} s`;
    const rate = this.unit === 'bytes' ? `  ${seconds > 0 ? formatBytes(this.done / seconds) : '-'}/s` : '';
    const pct = `${String(Math.floor(fraction * 100)).padStart(3)} %`;
    return `${this.label} ${bar} ${pct}  ${amount}${rate}${detail ? `  ${detail}` : ''}`;
  }
}

/** 512 B, 1.5 KiB, 4.0 MiB… */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(1)} ${units[unit]}`;
}
