/** The virtio-blk contract on the sim, for both versions; the lab runs the same suite on QEMU's device. */
import { VirtioBlk } from '../../lib/devices';
import { BlkModel, type BlkModelOptions } from '../../lib/sim';
import { blkContract, type BlkSubject } from '../support/contracts/blk-contract';
import { SIM_VARIANTS, driverOnSim } from '../support/sim-rig';

const models: [string, BlkModelOptions][] = [
  ['plain', {}],
  [
    'every feature, async completions',
    {
      segMax: 4,
      sizeMax: 8192,
      discard: { maxSectors: 64, maxSegments: 2 },
      writeZeroes: { maxSectors: 64, maxSegments: 2 },
      latency: 'async',
    },
  ],
  ['two request queues', { numQueues: 2, queueSize: 16 }],
];

describe.each(SIM_VARIANTS)('virtio-blk contract on a %s sim', (_label, version) => {
  describe.each(models)('%s', (_name, options) => {
    const violations: unknown[] = [];
    const subject: BlkSubject = {
      label: `sim v${version}`,
      open(driverOptions) {
        const model = new BlkModel({ disk: new Uint8Array(4 * 1024 * 1024), ...options });
        const {
          driver: blk,
          rig,
          close,
        } = driverOnSim(
          version,
          model,
          (r) => VirtioBlk.open(r.transport, { memory: r.pool, ...driverOptions }),
          violations,
        );
        return { blk, transport: rig.transport, close };
      },
    };
    afterEach(() => expect(violations.splice(0)).toEqual([]));
    test.each(blkContract(subject).map((c) => [c.name, c] as const))('%s', async (_n, c) => {
      await c.run();
    });
  });
});
