/** The package's public entries resolve by name (as users import them) and expose the main classes. */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

test('virtio-mmio and virtio-mmio/sim load from the built package', () => {
  const script = `
    const lib = require('virtio-mmio');
    const sim = require('virtio-mmio/sim');
    console.log([typeof lib.MmioTransport, typeof lib.SplitQueue, typeof lib.VirtioRng, typeof lib.VirtioDriver, typeof lib.DriverSetup, typeof sim.SimDevice, typeof sim.RngModel].join(' '));
  `;
  const child = spawnSync(process.execPath, ['-e', script], { cwd: resolve(__dirname, '..'), encoding: 'utf8', timeout: 10_000 });
  expect(child.stderr).toBe('');
  expect(child.stdout.trim()).toBe('function function function function function function function');
});

test('the virtio-mmio command (package bin) runs from the built package', () => {
  const child = spawnSync(process.execPath, ['dist/cli/bin.js', 'scan', '--no-uio', '--sim', 'rng', '--json'], { cwd: resolve(__dirname, '..'), encoding: 'utf8', timeout: 10_000 });
  expect(child.stderr).toBe('');
  expect(child.status).toBe(0);
  expect(JSON.parse(child.stdout)).toMatchObject([{ where: 'sim:rng', device: 'ENTROPY', version: 2 }]);
});
