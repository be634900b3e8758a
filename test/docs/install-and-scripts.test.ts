/**
 * The README's user-facing Install section, apart from the contributors'
 * quick start, and `npm run test:unit`: what it runs (no lab, no package
 * builds) against what the README says.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

const root = resolve(__dirname, '../..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');

function section(heading: string): string {
  const start = readme.indexOf(`\n## ${heading}`);
  expect(start).toBeGreaterThan(0);
  const end = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, end < 0 ? undefined : end);
}

test('Install comes first, for users: npm install, Linux, the addon, @types/node, NODE_DEBUG', () => {
  expect(readme.indexOf('\n## Install\n')).toBeLessThan(readme.indexOf('\n## Quick start (contributors'));
  const install = section('Install\n');
  expect(install).toContain('npm install virtio-mmio');
  expect(install).toMatch(/Linux only/);
  expect(install).toMatch(/prebuilt addons/);
  expect(install).toContain('@types/node');
  expect(install).toContain('NODE_DEBUG=virtio-mmio');
  expect(install).not.toContain('npm run lab');
});

test('npm run test:unit runs every test but the lab and the package builds, and the README says so', () => {
  const scripts = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> })
    .scripts;
  expect(scripts['test:unit']).toBeDefined();
  const listed = spawnSync('npm', ['run', '--silent', 'test:unit', '--', '--listTests'], {
    cwd: root,
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect(listed.status).toBe(0);
  const tests = listed.stdout
    .trim()
    .split('\n')
    .map((file) => relative(root, file));
  expect(tests.filter((file) => file.startsWith('test/lab/') || file.startsWith('test/build/'))).toEqual([]);
  for (const expected of [
    'test/readme.test.ts',
    'test/devices/blk-contract.test.ts',
    'test/devices/bad-inputs.test.ts',
    'test/docs/install-and-scripts.test.ts',
  ])
    expect(tests).toContain(expected);
  expect(section('Quick start (contributors')).toContain('npm run test:unit');
});
