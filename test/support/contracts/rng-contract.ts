import assert from 'node:assert/strict';
import type { VirtioRng } from '../../../lib/devices';
import type { MmioTransport } from '../../../lib/transport';
import type { ContractCase } from './contract';

/** A virtio-rng device to check, opened fresh for each case. */
export interface RngSubject {
  readonly label: string;
  open(options?: { queueSize?: number; requestBytes?: number }): RngHandle;
}

export interface RngHandle {
  readonly rng: VirtioRng;
  readonly transport: MmioTransport;
  /** Closes the driver and whatever the subject opened for it. */
  close(): void;
}

async function withRng(
  subject: RngSubject,
  options: Parameters<RngSubject['open']>[0],
  body: (h: RngHandle) => Promise<void>,
): Promise<void> {
  const handle = subject.open(options);
  try {
    await body(handle);
  } finally {
    handle.close();
  }
}

/** The virtio-rng contract (virtio 1.2 §5.4): what any entropy device must do with our driver. */
export function rngContract(subject: RngSubject): ContractCase[] {
  return [
    {
      name: 'reads of varied sizes return exactly that many bytes',
      run: () =>
        withRng(subject, {}, async ({ rng }) => {
          for (const size of [0, 1, 7, 64, 1000, 4096, 4097, 20000]) {
            const bytes = await rng.read(size);
            assert.equal(bytes.length, size, `read(${size})`);
          }
        }),
    },
    {
      name: 'concurrent reads beyond the queue size all complete',
      run: () =>
        withRng(subject, { queueSize: 4, requestBytes: 64 }, async ({ rng }) => {
          const sizes = Array.from({ length: 24 }, (_, i) => 50 + i * 7);
          const results = await Promise.all(sizes.map((n) => rng.read(n)));
          assert.deepEqual(
            results.map((b) => b.length),
            sizes,
          );
        }),
    },
    {
      name: 'the bytes are not all equal (the device really wrote them)',
      run: () =>
        withRng(subject, {}, async ({ rng }) => {
          const bytes = await rng.read(4096);
          const distinct = new Set(bytes).size;
          assert.ok(distinct > 200, `only ${distinct} distinct byte values in 4096 random bytes`);
          const again = await rng.read(4096);
          assert.ok(!again.equals(bytes), 'two 4096-byte reads returned the same bytes');
        }),
    },
    {
      name: 'completions arrive as used-buffer interrupts through the interrupt line',
      run: () =>
        withRng(subject, {}, async ({ rng, transport }) => {
          const before = transport.stats.interrupts;
          for (let i = 0; i < 5; i++) await rng.read(32);
          const delivered = transport.stats.interrupts - before;
          assert.ok(delivered >= 1 && delivered <= 5, `${delivered} interrupts for 5 sequential reads`);
        }),
    },
    {
      name: 'an aborted read rejects with AbortError and the device stays usable',
      run: () =>
        withRng(subject, {}, async ({ rng }) => {
          const controller = new AbortController();
          controller.abort(new Error('stop'));
          await assert.rejects(rng.read(16, { signal: controller.signal }), { code: 'ABORT_ERR' });
          const late = new AbortController();
          const pending = rng.read(100_000, { signal: late.signal });
          late.abort();
          await assert.rejects(pending, { code: 'ABORT_ERR' });
          assert.equal((await rng.read(16)).length, 16);
        }),
    },
    {
      name: 'the stream yields bytes until destroyed',
      run: () =>
        withRng(subject, {}, async ({ rng }) => {
          let total = 0;
          for await (const chunk of rng.createReadStream({ highWaterMark: 1024 })) {
            total += (chunk as Buffer).length;
            if (total >= 8192) break;
          }
          assert.ok(total >= 8192);
        }),
    },
    {
      name: 'close rejects what is pending and the transport can be opened again',
      run: async () => {
        await withRng(subject, {}, async ({ rng }) => {
          const pending = rng.read(1_000_000);
          rng.close();
          await assert.rejects(pending, { code: 'ERR_VIRTIO_CANCELED' });
        });
        await withRng(subject, {}, async ({ rng }) => assert.equal((await rng.read(8)).length, 8));
      },
    },
  ];
}
