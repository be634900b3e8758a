/** The virtio-rng contract on the sim, for both versions; the lab runs the same suite on QEMU's device. */
import { VirtioRng } from '../../lib/devices';
import { RngModel } from '../../lib/sim';
import { rngContract, type RngSubject } from '../contracts/rng-contract';
import { simRig, SIM_VARIANTS } from '../support/sim-rig';

describe.each(SIM_VARIANTS)('virtio-rng contract on a %s sim', (_label, version) => {
  const violations: unknown[] = [];
  const subject: RngSubject = {
    label: `sim v${version}`,
    open(options) {
      const rig = simRig(version, new RngModel());
      const rng = VirtioRng.open(rig.transport, { memory: rig.pool, ...options });
      return {
        rng,
        transport: rig.transport,
        close() {
          rng.close();
          violations.push(...rig.close());
        },
      };
    },
  };
  afterEach(() => expect(violations.splice(0)).toEqual([]));
  test.each(rngContract(subject).map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    await c.run();
  });
});
