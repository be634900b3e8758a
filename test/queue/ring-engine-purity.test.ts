import { readFileSync } from 'node:fs';
import { join } from 'node:path';

// The ring engines are synchronous and know nothing of Node's runtime (issue: "no promises, timers,
// process, setImmediate or Node streams in them"): a change that brings one in fails here, by name.
const ENGINE_FILES = [
  'ring-engine.ts',
  'split-ring-engine.ts',
  'packed-ring-engine.ts',
  'used-entry.ts',
  'descriptors.ts',
];
const FORBIDDEN: [string, RegExp][] = [
  ['a promise', /\bPromise\b|\basync\b|\bawait\b/],
  ['a timer', /\bset(Timeout|Interval|Immediate)\b|\bqueueMicrotask\b/],
  ['process', /\bprocess\./],
  ['a Node stream or event emitter', /node:stream|node:events|EventEmitter/],
  ['an AbortSignal', /\bAbortSignal\b/],
];

/** The source without comments, so that a comment naming a forbidden thing does not count. */
function code(file: string): string {
  const text = readFileSync(join(__dirname, '../../lib/queue', file), 'utf8');
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
}

describe('ring engines stay synchronous and free of the event loop', () => {
  test.each(ENGINE_FILES)('%s', (file) => {
    const source = code(file);
    const found = FORBIDDEN.filter(([, pattern]) => pattern.test(source)).map(([what]) => what);
    expect(found).toEqual([]);
  });

  test('the check sees what it looks for', () => {
    const sample = 'const t = setTimeout(() => {}, 1); await Promise.resolve(); process.exit();';
    expect(FORBIDDEN.filter(([, pattern]) => pattern.test(sample)).map(([what]) => what)).toEqual([
      'a promise',
      'a timer',
      'process',
    ]);
  });
});
