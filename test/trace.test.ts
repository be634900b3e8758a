/**
 * Debug tracing (lib/trace.ts): NODE_DEBUG=virtio-mmio prints the status
 * transitions, negotiation, queue set-up, interrupts, breaks and resets on
 * stderr; without it, nothing. A child process each, as debuglog reads
 * NODE_DEBUG once.
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

const CHILD = resolve(__dirname, 'fixtures/trace-child.js');

function run(env: NodeJS.ProcessEnv): { stdout: string; stderr: string; status: number | null } {
  const rest = { ...process.env };
  delete rest.NODE_DEBUG;
  return spawnSync(process.execPath, [CHILD], { env: { ...rest, ...env }, encoding: 'utf8', timeout: 60_000 });
}

test('NODE_DEBUG=virtio-mmio traces status, features, queues, interrupts, a break and resets', () => {
  const child = run({ NODE_DEBUG: 'virtio-mmio' });
  expect(child.status).toBe(0);
  expect(child.stdout).toBe('ERR_VIRTIO_BROKEN\ndone\n');
  const lines = child.stderr.trimEnd().split('\n');
  expect(lines.every((line) => /^VIRTIO-MMIO \d+: (status|features|queue|irq|broken) /.test(line))).toBe(true);
  const text = child.stderr;
  expect(text).toMatch(/status sim ENTROPY \(4\): 0 -> ACKNOWLEDGE\n/);
  expect(text).toMatch(/status sim ENTROPY \(4\): ACKNOWLEDGE \| DRIVER -> ACKNOWLEDGE \| DRIVER \| FEATURES_OK\n/);
  expect(text).toMatch(/-> ACKNOWLEDGE \| DRIVER \| DRIVER_OK \| FEATURES_OK\n/);
  expect(text).toMatch(/features sim ENTROPY \(4\): offered .*VERSION_1/);
  expect(text).toMatch(/features sim ENTROPY \(4\): accepted .*VERSION_1/);
  expect(text).toMatch(
    new RegExp(
      String.raw`queue sim ENTROPY \(4\): queue 0 ready: size \d+ of QueueNumMax \d+, ` +
        String.raw`desc 0x[0-9a-f]+ driver 0x[0-9a-f]+ device 0x[0-9a-f]+\n`,
    ),
  );
  expect(text).toMatch(/irq sim ENTROPY \(4\): InterruptStatus 0x1\n/);
  expect(text).toMatch(/status sim ENTROPY \(4\): reset \(Status 0\): .*transport closed\n/);
  expect(text).toMatch(/broken queue 0: used-id-out-of-range: /);
  // RING_RESET: the broken queue alone is reset and set up again (DriverOptions.queueRecovery).
  expect(text).toMatch(/queue sim BLOCK \(2\): queue 0 reset \(§2\.6\.1\)\n/);
}, 90_000);

test('a wildcard in NODE_DEBUG (virtio-*) enables it too', () => {
  const child = run({ NODE_DEBUG: 'net,virtio-*' });
  expect(child.status).toBe(0);
  expect(child.stderr).toMatch(/^VIRTIO-MMIO \d+: status /m);
});

test('without NODE_DEBUG (or naming another section) nothing is printed', () => {
  for (const env of [{}, { NODE_DEBUG: 'net' }]) {
    const child = run(env);
    expect(child.status).toBe(0);
    expect(child.stdout).toBe('ERR_VIRTIO_BROKEN\ndone\n');
    expect(child.stderr).toBe('');
  }
}, 90_000);
