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

test('ESM: every export of each entry is a named import', () => {
  // The names as CommonJS sees them, then one static import naming all of them: a name Node's CJS
  // lexer misses fails at link time, before anything runs.
  const listed = spawnSync(process.execPath, ['-e', "console.log(JSON.stringify(['virtio-mmio', 'virtio-mmio/sim'].map((e) => Object.keys(require(e)).filter((k) => k !== '__esModule'))))"], {
    cwd: resolve(__dirname, '..'),
    encoding: 'utf8',
    timeout: 10_000,
  });
  expect(listed.stderr).toBe('');
  const [lib, sim] = JSON.parse(listed.stdout) as string[][];
  expect(lib.length).toBeGreaterThan(100);
  expect(sim).toEqual(expect.arrayContaining(['SimDevice', 'BlkModel', 'RngModel', 'ConsoleModel', 'NetModel']));
  const script = [
    `import { ${lib.join(', ')} } from 'virtio-mmio';`,
    `import { ${sim.map((name) => `${name} as sim_${name}`).join(', ')} } from 'virtio-mmio/sim';`,
    `const values = [${[...lib, ...sim.map((name) => `sim_${name}`)].join(', ')}];`,
    'console.log(values.filter((v) => v === undefined).length, values.length);',
  ].join('\n');
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: resolve(__dirname, '..'), encoding: 'utf8', timeout: 10_000 });
  expect(child.stderr).toBe('');
  expect(child.stdout.trim()).toBe(`0 ${lib.length + sim.length}`);
});
