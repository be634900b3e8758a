/**
 * tsc compiles `export * from` into getters: every read of a constant
 * imported through lib/spec/index.ts is a getter call, a few µs each in a
 * guest under TCG and a keyed load V8 cannot specialise (it is shared by
 * all re-exports). The modules on the request path (submit, publish,
 * notify, interrupt, reap, complete) import spec values from the defining
 * module instead; types may come from anywhere.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const HOT = [
  'queue/virtqueue.ts',
  'queue/virtqueue-lifecycle.ts',
  'queue/split-ring-engine.ts',
  'queue/packed-ring-engine.ts',
  'queue/ring-engine.ts',
  'queue/used-entry.ts',
  'queue/in-flight.ts',
  'queue/chain-records.ts',
  'queue/descriptors.ts',
  'queue/completion-mode.ts',
  'queue/pending-request.ts',
  'queue/request-checks.ts',
  'queue/request-deadlines.ts',
  'transport/mmio-ops.ts',
  'transport/interrupt-dispatch.ts',
  'transport/device-status-machine.ts',
  'devices/virtio-blk.ts',
  'devices/virtio-blk-base.ts',
  'devices/blk-request-queue.ts',
  'devices/blk-sectors.ts',
  'devices/slot-pool.ts',
];

/** The value (non-type) names each `import { … } from '<from>'` of `source` brings in. */
function valueImports(source: string, from: string): string[] {
  const names: string[] = [];
  const pattern = /import\s+(type\s+)?\{([^}]*)\}\s+from\s+'([^']+)'/g;
  for (let match = pattern.exec(source); match; match = pattern.exec(source)) {
    if (match[1] || match[3] !== from) continue;
    for (const part of match[2].split(',').map((p) => p.trim()))
      if (part && !part.startsWith('type ')) names.push(part);
  }
  return names;
}

test.each(HOT)('%s reads no spec value through the index re-exports', (file) => {
  const source = readFileSync(resolve(__dirname, '../../lib', file), 'utf8');
  expect(valueImports(source, '../spec')).toEqual([]);
});

test('the check sees a value import through the index, and lets a type import pass', () => {
  expect(
    valueImports("import { SplitRing, type VirtqDesc } from '../spec';\nimport type { X } from '../spec';", '../spec'),
  ).toEqual(['SplitRing']);
});
