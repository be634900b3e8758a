/**
 * A request's time limit is kept by an unref'd timer (no ref/unref pair
 * per request on the hot path): what keeps the process alive until the
 * TimeoutError is the queue's busy interrupt line, or its polling loop. A
 * child process per run, since only a process with nothing else alive
 * shows it.
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

test('a read from a device that never answers times out in every queue mode, nothing else keeping us alive', () => {
  const child = spawnSync(process.execPath, [resolve(__dirname, '../fixtures/deadline-child.js')], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect(child.stderr).toBe('');
  expect(child.stdout).toBe('interrupt ERR_VIRTIO_TIMEOUT\npoll ERR_VIRTIO_TIMEOUT\nhybrid ERR_VIRTIO_TIMEOUT\ndone\n');
  expect(child.status).toBe(0);
}, 90_000);
