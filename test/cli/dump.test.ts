import { UsageError, type CliIo } from '../../lib/cli/cli-io';
import { dumpCommand } from '../../lib/cli/dump';
import type { LiveQueueDump, LiveRingDump, OutstandingDump, QueueDump } from '../../lib/diag';

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: { write: (t: string) => (stdout += t) },
    stderr: { write: (t: string) => (stderr += t) },
  };
  const code = await dumpCommand(args, io);
  return { code, stdout, stderr };
}

interface DrivenOutput {
  where: string;
  driven: string;
  queue: QueueDump;
  live: LiveQueueDump;
}

const chains = (list: OutstandingDump[]): unknown =>
  list.map((c) => ({ id: c.id, descriptors: c.descriptors })).sort((a, b) => a.id - b.id);

/** Requests in flight on the queue dumped: rng and blk submit one, console and net post receive buffers on queue 0. */
const IN_FLIGHT: Record<string, (n: number) => boolean> = {
  rng: (n) => n === 1,
  blk: (n) => n === 1,
  console: (n) => n > 1,
  net: (n) => n > 1,
};

describe.each(['1', '2', 'packed'])('dump sim:<type>:%s --queue 0', (version) => {
  test.each(['rng', 'blk', 'console', 'net'])('%s: the driver view and the ring memory view agree', async (type) => {
    const where = `sim:${type}:${version}`;
    const { code, stdout, stderr } = await run([where, '--queue', '0']);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const out = JSON.parse(stdout) as DrivenOutput;
    expect(out).toMatchObject({ where, driven: 'this process' });
    expect(out.queue).toMatchObject({ index: 0, format: version === 'packed' ? 'packed' : 'split' });
    expect(IN_FLIGHT[type](out.queue.outstanding.length)).toBe(true);
    expect(out.live).toMatchObject({
      index: 0,
      version: version === '1' ? 1 : 2,
      live: true,
      size: out.queue.size,
      addresses: out.queue.addresses,
      queueSelLeftAt: 0,
    });
    expect(out.live.statusBits).toContain('DRIVER_OK');
    const memory = out.live.memory as LiveRingDump;
    expect(memory.problems).toEqual([]);
    expect(chains(memory.outstanding)).toEqual(chains(out.queue.outstanding));
  });
});

describe('dump: errors', () => {
  test('usage errors throw UsageError (exit status 2 through runCli)', async () => {
    await expect(run(['sim:rng'])).rejects.toThrow(UsageError);
    await expect(run(['sim:rng', '--queue', 'one'])).rejects.toThrow(/--queue must be an integer/);
    await expect(run(['sim:rng', '--queue=-1'])).rejects.toThrow(UsageError);
    // Node's parseArgs refusals come out as UsageError too, in our words.
    await expect(run(['sim:rng', '--queue', '0', '--bogus'])).rejects.toMatchObject({
      code: 'ERR_VIRTIO_USAGE',
      message: expect.stringMatching(/^dump has no option --bogus/),
    });
    await expect(run(['sim:rng', '--queue', '0', '--size', '0'])).rejects.toThrow(/--size/);
    await expect(run(['sim:rng', '--queue', '0', '--format', 'ring'])).rejects.toThrow(/--format/);
    await expect(run(['sim:rng', '--queue', '0', '--page-size', '3000'])).rejects.toThrow(/power of two/);
    await expect(run(['sim:rng', '--queue', '0', '--rings', '1,2'])).rejects.toThrow(/--rings/);
    await expect(run(['sim:rng', 'sim:blk', '--queue', '0'])).rejects.toThrow(UsageError);
    await expect(run(['--queue', '0'])).rejects.toThrow(UsageError);
  });

  test('an empty slot and a queue the device lacks exit 1 with the error code, on stderr and as JSON', async () => {
    const empty = await run(['sim:empty', '--queue', '0']);
    expect(empty.code).toBe(1);
    expect(empty.stderr).toMatch(/^virtio-mmio dump: ERR_VIRTIO_EMPTY_SLOT: sim:empty: /);
    expect(JSON.parse(empty.stdout)).toEqual({
      error: { code: 'ERR_VIRTIO_EMPTY_SLOT', message: expect.stringContaining('empty') },
    });
    const missing = await run(['sim:rng:2', '--queue', '7']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^virtio-mmio dump: ERR_VIRTIO_QUEUE_UNAVAILABLE: /);
    expect(JSON.parse(missing.stdout)).toMatchObject({ error: { code: 'ERR_VIRTIO_QUEUE_UNAVAILABLE' } });
  });
});
