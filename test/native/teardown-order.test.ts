/**
 * armExitWrite (native/exit_write.cc) writes from an env cleanup hook and
 * relies on Node running every cleanup hook of an environment before the
 * Node-API finalizers that unmap its DMA memory (native/dma_memory.cc: the
 * DmaMemory wrapper and its ArrayBuffer object are holders of the mapping,
 * released by napi_wrap and napi_add_finalizer finalizers). This holds the
 * Node running the tests to that order, for every way a thread ends, with a
 * probe module that reports each callback on stdout
 * (fixtures/teardown_order_probe.c). What Node 20 does, in order: external
 * ArrayBuffer store finalizers, cleanup hooks newest first, then finalizers
 * and wraps; on the main thread, process.exit() runs none of them.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

import { describeIf } from '../support/requirements';

const probeSource = resolve(__dirname, 'fixtures/teardown_order_probe.c');
const nodeInclude = resolve(dirname(process.execPath), '../include/node');
const hasCc = spawnSync('sh', ['-c', 'command -v cc']).status === 0;

let dir: string;
let probe: string;

/** Registers, in this order: a store, a finalizer and a wrap 'early'; hook 'first'; the same 'late'; hook 'second'. */
const SETUP = (probePath: string): string => `
  const p = require(${JSON.stringify(probePath)});
  globalThis.keep = [p.store(1, 'early'), p.finalizer(1, 'early'), p.wrap(1, 'early')];
  p.hook(1, 'first');
  keep.push(p.store(1, 'late'), p.finalizer(1, 'late'), p.wrap(1, 'late'));
  p.hook(1, 'second');
`;

type End = 'terminate' | 'main-exit' | 'return' | 'process.exit';

/** The callbacks' lines when a worker that ran SETUP ends as `end` says. */
function workerTeardown(end: End): string[] {
  const worker = `${SETUP(probe)}
    ${end === 'process.exit' ? 'process.exit(2);' : ''}
    require('node:worker_threads').parentPort.postMessage('ready');
    ${end === 'return' ? '' : 'setInterval(() => {}, 1000);'}`;
  const ending = end === 'terminate' ? 'w.terminate();' : end === 'main-exit' ? 'process.exit(0);' : '';
  const child = spawnSync(
    process.execPath,
    [
      '-e',
      `const w = new (require('node:worker_threads').Worker)(${JSON.stringify(worker)}, { eval: true });
       w.on('message', () => { ${ending} });`,
    ],
    { encoding: 'utf8', timeout: 15_000 },
  );
  expect(child.stderr).toBe('');
  return child.stdout.split('\n').filter(Boolean);
}

function expectHooksBeforeFinalizers(lines: string[]): void {
  const hooks = lines.filter((l) => l.startsWith('hook '));
  expect(hooks).toEqual(['hook second', 'hook first']); // newest first
  const lastHook = lines.indexOf('hook first');
  const finalizers = lines.filter((l) => /^(finalizer|wrap) /.test(l));
  expect(finalizers.sort()).toEqual(['finalizer early', 'finalizer late', 'wrap early', 'wrap late']);
  for (const line of finalizers) expect(lines.indexOf(line)).toBeGreaterThan(lastHook);
  // The stores' own finalizers run first, but a DMA mapping is also held by its wrapper and ArrayBuffer object
  // (finalizers above).
  expect(lines.filter((l) => l.startsWith('store ')).sort()).toEqual(['store early', 'store late']);
  expect(lines).toHaveLength(8);
}

describeIf(
  existsSync(join(nodeInclude, 'node_api.h')) && hasCc,
  `needs cc and Node's headers in ${nodeInclude}`,
  'env teardown order (Node-API)',
  () => {
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'teardown-order-'));
      probe = join(dir, 'teardown_order_probe.node');
      execFileSync('cc', ['-shared', '-fPIC', '-O1', '-Wall', `-I${nodeInclude}`, probeSource, '-o', probe]);
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    test.each(['terminate', 'main-exit', 'return', 'process.exit'] as const)(
      'a worker that ends by %s: every cleanup hook (newest first) before any finalizer or wrap',
      (end) => {
        expectHooksBeforeFinalizers(workerTeardown(end));
      },
    );

    test('the main thread whose event loop runs dry: the same order', () => {
      const child = spawnSync(process.execPath, ['-e', SETUP(probe)], { encoding: 'utf8', timeout: 15_000 });
      expect(child.stderr).toBe('');
      expectHooksBeforeFinalizers(child.stdout.split('\n').filter(Boolean));
    });

    test('the main thread calling process.exit(): none of them runs', () => {
      const child = spawnSync(process.execPath, ['-e', `${SETUP(probe)} process.exit(7);`], {
        encoding: 'utf8',
        timeout: 15_000,
      });
      expect(child.status).toBe(7);
      expect(child.stdout).toBe('');
    });
  },
);
