/**
 * A driver must not hold the process open while idle, and must hold it
 * while a request waits for the device. Only a child process can show
 * this; it runs the compiled library (dist/, built by `npm ci`).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

const dist = resolve(__dirname, '../../dist');

function runChild(
  body: string,
  timeoutMs = 5000,
): { status: number | null; signal: string | null; stdout: string; stderr: string } {
  const script = `
    const lib = require(${JSON.stringify(dist)});
    const { SimDevice, RngModel } = require(${JSON.stringify(resolve(dist, 'sim'))});
    const pool = lib.DmaPool.anonymous();
    ${body}`;
  const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: timeoutMs });
  return { status: child.status, signal: child.signal, stdout: child.stdout, stderr: child.stderr };
}

beforeAll(() => {
  if (!existsSync(resolve(dist, 'sim/index.js')))
    throw new Error('dist/ is missing: run `npm run build:ts` (npm ci does it)');
});

describe('a process driving a device', () => {
  test('exits on its own when the device is open but idle', () => {
    const child = runChild(`
      const sim = new SimDevice({ memory: pool, model: new RngModel() });
      const transport = new lib.MmioTransport(sim, { interrupts: sim.interrupt });
      const rng = lib.VirtioRng.open(transport, { memory: pool });
      rng.read(100).then((b) => console.log('read', b.length));
    `);
    expect(child.stderr).toBe('');
    expect(child.signal).toBeNull();
    expect(child.status).toBe(0);
    expect(child.stdout).toBe('read 100\n');
  });

  test('stays alive while a request waits for the device', () => {
    const child = runChild(
      `
      const model = new RngModel();
      model.handle = () => new Promise(() => {});
      const sim = new SimDevice({ memory: pool, model });
      const transport = new lib.MmioTransport(sim, { interrupts: sim.interrupt });
      const rng = lib.VirtioRng.open(transport, { memory: pool });
      rng.read(100).then(() => console.log('unexpected'));
      console.log('waiting');
    `,
      1500,
    );
    expect(child.stdout).toBe('waiting\n');
    expect(child.signal).toBe('SIGTERM'); // killed by the timeout: the pending read kept it alive
  });
});
