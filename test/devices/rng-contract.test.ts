/** The virtio-rng contract on the sim, for both versions; the lab runs the same suite on QEMU's device. */
import { VirtioRng } from '../../lib/devices';
import { RngModel } from '../../lib/sim';
import { rngContract, type RngSubject } from '../support/contracts/rng-contract';
import { SIM_VARIANTS, driverOnSim } from '../support/sim-rig';

describe.each(SIM_VARIANTS)('virtio-rng contract on a %s sim', (_label, version) => {
  const violations: unknown[] = [];
  const subject: RngSubject = {
    label: `sim v${version}`,
    open(options) {
      const {
        driver: rng,
        rig,
        close,
      } = driverOnSim(
        version,
        new RngModel(),
        (r) => VirtioRng.open(r.transport, { memory: r.pool, ...options }),
        violations,
      );
      return { rng, transport: rig.transport, close };
    },
  };
  afterEach(() => expect(violations.splice(0)).toEqual([]));
  test.each(rngContract(subject).map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    await c.run();
  });
});
