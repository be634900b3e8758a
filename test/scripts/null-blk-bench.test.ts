/**
 * bench/null-blk.js drives VirtioBlk over a device of its own (a
 * RegisterBlock that completes each chain inside the notify). The driver
 * must keep working over it as the library changes (features it negotiates,
 * the ring layout it writes), or the bench's figures mean nothing: a short
 * run here, in a child process, from the built dist/.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

const root = resolve(__dirname, '../..');

test('bench/null-blk.js completes its requests with both APIs and reports per-request figures', () => {
  expect(existsSync(resolve(root, 'dist/index.js'))).toBe(true); // built by npm ci (prepare) or npm run build
  const run = spawnSync(process.execPath, ['bench/null-blk.js', '--requests', '3000', '--rounds', '1', '--json'], {
    cwd: root,
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  const report = JSON.parse(run.stdout) as Record<string, { us: number; bytes: number }>;
  for (const api of ['readInto', 'read']) {
    expect(report[api].us).toBeGreaterThan(0);
    expect(report[api].us).toBeLessThan(10_000);
    expect(Number.isFinite(report[api].bytes)).toBe(true);
  }
});

test('bench/null-blk.js refuses a bad argument with its usage', () => {
  const run = spawnSync(process.execPath, ['bench/null-blk.js', '--requests', '0'], { cwd: root, encoding: 'utf8' });
  expect(run.status).toBe(2);
  expect(run.stderr).toMatch(/--requests must be a positive integer/);
  expect(run.stderr).toMatch(/usage: node bench\/null-blk.js/);
});
