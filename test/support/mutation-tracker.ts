import { VirtioError } from '../../lib/errors';

/** How an error that settled a request (or escaped from one) is judged. */
export type ErrorVerdict = 'typed' | 'out-of-bounds' | 'untyped';

/** V8's own RangeErrors for an access outside a typed array, DataView or ArrayBuffer. */
const OUT_OF_BOUNDS = new RegExp(
  [
    'outside the bounds',
    'out of bounds',
    'Invalid typed array length',
    'Invalid DataView length',
    'should be a multiple of',
    'Invalid array buffer length',
    'offset is out of range',
  ].join('|'),
  'i',
);
/** V8's TypeErrors for bugs (a property of undefined, a call of a non-function), not for bad arguments. */
const INTERNAL_TYPE_ERROR = new RegExp(
  [
    'Cannot read propert',
    'Cannot set propert',
    'is not a function',
    'is not iterable',
    'is not a constructor',
    'Cannot convert',
    'detached ArrayBuffer',
  ].join('|'),
  'i',
);

/**
 * Typed: a VirtioError with a string `code`, a TypeError/RangeError the
 * library threw for a bad argument, or a Node stream error (ERR_STREAM_*,
 * what a stream reports for a write after it was destroyed). A RangeError
 * from V8 for an out-of-bounds view, and anything else, is not.
 */
export function judgeError(error: unknown): ErrorVerdict {
  if (error instanceof VirtioError) return typeof error.code === 'string' ? 'typed' : 'untyped';
  // By name, not instanceof: errors made by Node's core or the addon come from another realm than Jest's test code.
  if (!isError(error)) return 'untyped';
  if (error.name === 'RangeError') return OUT_OF_BOUNDS.test(error.message) ? 'out-of-bounds' : 'typed';
  if (error.name === 'TypeError') return INTERNAL_TYPE_ERROR.test(error.message) ? 'untyped' : 'typed';
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && code.startsWith('ERR_STREAM_')) return 'typed';
  return 'untyped';
}

function isError(value: unknown): value is Error {
  return Object.prototype.toString.call(value) === '[object Error]' && typeof (value as Error).message === 'string';
}

export function errorCode(error: unknown): string {
  if (error instanceof VirtioError) return error.code;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return code;
  return isError(error) ? error.name : typeof error;
}

interface Entry {
  readonly kind: string;
  settles: number;
}

/**
 * Counts how each request of one seed settles: every tracked promise or
 * callback must settle exactly once, with a value or a typed error.
 */
export class SettleTracker {
  readonly rejections = new Map<string, number>();
  /** Errors that are neither typed nor out-of-bounds: crashes. */
  readonly untyped: unknown[] = [];
  /** V8 out-of-bounds RangeErrors that settled a request. */
  readonly outOfBounds: unknown[] = [];
  /** Distinct messages (digits folded) of the RangeErrors and TypeErrors that settled requests. */
  readonly argumentErrors = new Set<string>();
  requests = 0;
  resolved = 0;
  /** Settled more than once (a callback called twice). */
  doubles = 0;
  private readonly open = new Set<Entry>();

  /**
   * Watches `promise`; `onValue` checks a resolved value. The returned promise settles (never rejects) when it does.
   */
  track<T>(kind: string, promise: Promise<T>, onValue?: (value: T) => void): Promise<void> {
    const entry = this.begin(kind);
    return promise.then(
      (value) => {
        this.settle(entry);
        this.resolved++;
        onValue?.(value);
      },
      (error: unknown) => {
        this.settle(entry);
        this.reject(error);
      },
    );
  }

  /**
   * A Node-style callback (error first) to hand to an API; `done` settles on
   * its first call. Later calls count as double completions.
   */
  callback(kind: string): { callback: (error?: Error | null) => void; done: Promise<void> } {
    const entry = this.begin(kind);
    let finish!: () => void;
    const done = new Promise<void>((resolve) => (finish = resolve));
    return {
      done,
      callback: (error) => {
        this.settle(entry);
        if (error) this.reject(error);
        else this.resolved++;
        finish();
      },
    };
  }

  /** An error reported outside any request (a stream's 'error' event). */
  reject(error: unknown): void {
    const verdict = judgeError(error);
    if (verdict === 'untyped') this.untyped.push(error);
    else if (verdict === 'out-of-bounds') this.outOfBounds.push(error);
    const code = errorCode(error);
    if (code === 'RangeError' || code === 'TypeError')
      this.argumentErrors.add(`${code}: ${(error as Error).message.replace(/\d+/g, 'N')}`);
    this.rejections.set(code, (this.rejections.get(code) ?? 0) + 1);
  }

  /** Requests not settled yet. */
  get unsettled(): number {
    return this.open.size;
  }

  /** What the unsettled requests are, for the report. */
  unsettledKinds(): string[] {
    return [...this.open].map((e) => e.kind);
  }

  private begin(kind: string): Entry {
    const entry: Entry = { kind, settles: 0 };
    this.requests++;
    this.open.add(entry);
    return entry;
  }

  private settle(entry: Entry): void {
    entry.settles++;
    if (entry.settles > 1) this.doubles++;
    this.open.delete(entry);
  }
}
