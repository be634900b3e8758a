import { VirtioNet, type VirtioNetOptions } from '../../lib/devices';
import { NetModel, type NetModelOptions } from '../../lib/sim';
import { simRig, type SimRig, type SimVariant } from './sim-rig';

/**
 * VirtioNet on a fresh `variant` sim per test, for one describe block:
 * `open()` a driver on a model, `openFails()` an open the driver must
 * refuse. Registers the afterEach that closes both and checks the sim saw
 * no violation.
 */
export function netSim(variant: SimVariant): {
  open(model: NetModel, options?: Partial<VirtioNetOptions>): VirtioNet;
  openFails(modelOptions: NetModelOptions, options?: Partial<VirtioNetOptions>): () => void;
} {
  let rig: SimRig | undefined;
  let net: VirtioNet | undefined;
  afterEach(() => {
    net?.close();
    const violations = rig?.close() ?? [];
    net = undefined;
    rig = undefined;
    expect(violations).toEqual([]);
  });
  return {
    open(model, options = {}) {
      rig = simRig(variant, model);
      net = VirtioNet.open(rig.transport, { memory: rig.pool, ...options });
      return net;
    },
    openFails(modelOptions, options = {}) {
      return () => {
        const r = simRig(variant, new NetModel(modelOptions));
        try {
          VirtioNet.open(r.transport, { memory: r.pool, ...options }).close();
        } finally {
          expect(r.close()).toEqual([]);
        }
      };
    },
  };
}
