import { DmaPool } from '../../lib/platform';
import { echoRequest } from './echo-request';
import { SimDevice, type SimDeviceModel, type SimOptions } from '../../lib/sim';
import { MmioTransport, type MmioTransportOptions } from '../../lib/transport';
import { FeatureBit, features, hasFeature } from '../../lib/spec';

export interface SimRig {
  pool: DmaPool;
  sim: SimDevice;
  transport: MmioTransport;
  /** Closes transport, sim and memory; returns the strict-mode violations seen. */
  close(): readonly unknown[];
}

/**
 * Which sim the tests run on: Version 1 (legacy, split ring), Version 2
 * (split ring), or 'packed' — Version 2 offering VIRTIO_F_RING_PACKED too.
 */
export type SimVariant = 1 | 2 | 'packed';
/** For describe.each: [label, variant]. */
export const SIM_VARIANTS: readonly (readonly [string, SimVariant])[] = [
  ['Version 1', 1],
  ['Version 2', 2],
  ['packed-ring', 'packed'],
];

const PACKED_TRANSPORT = features(
  FeatureBit.VERSION_1,
  FeatureBit.INDIRECT_DESC,
  FeatureBit.EVENT_IDX,
  FeatureBit.RING_RESET,
  FeatureBit.NOTIFICATION_DATA,
  FeatureBit.RING_PACKED,
);

/** A sim device with `model`, its memory pool, and a transport on it, strict mode on. */
export function simRig(
  variant: SimVariant,
  model: SimDeviceModel | undefined,
  simOptions: Partial<SimOptions> = {},
  transportOptions: MmioTransportOptions = {},
): SimRig {
  const pool = DmaPool.anonymous();
  const version = variant === 'packed' ? 2 : variant;
  const ring = variant === 'packed' ? { transportFeatures: PACKED_TRANSPORT } : {};
  const sim = new SimDevice({ memory: pool, version, model, strict: true, ...ring, ...simOptions });
  let transport: MmioTransport;
  try {
    transport = new MmioTransport(sim, { interrupts: sim.interrupt, ...transportOptions });
  } catch (error) {
    sim.close();
    pool.close();
    throw error;
  }
  return {
    pool,
    sim,
    transport,
    close() {
      const violations: unknown[] = [...sim.violations];
      // The packed variant must really have run packed whenever a driver negotiated: the sim saw every FEATURES_OK.
      if (
        variant === 'packed' &&
        sim.acceptedFeatures.some((accepted) => !hasFeature(accepted, FeatureBit.RING_PACKED))
      ) {
        violations.push({ rule: 'test-rig-packed-not-negotiated', message: 'the packed-ring sim ran a split ring' });
      }
      transport.close();
      sim.close();
      pool.close();
      return violations;
    },
  };
}

/** Resolves after the event loop has turned `n` times (lets the sim process and interrupts arrive). */
export async function turns(n = 3): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** A model for tests: echoes readable bytes into writable buffers; config bytes given. */
export function echoModel(
  options: {
    deviceId?: number;
    queueSizes?: number[];
    config?: Uint8Array;
    features?: bigint;
    handle?: SimDeviceModel['handle'];
  } = {},
): SimDeviceModel & { requests: number } {
  const model = {
    deviceId: options.deviceId ?? 42,
    features: options.features ?? 0n,
    queueSizes: options.queueSizes ?? [16],
    config: options.config ?? new Uint8Array(0),
    requests: 0,
    handle:
      options.handle ??
      ((request) => {
        model.requests++;
        return echoRequest(request);
      }),
  };
  return model;
}

/**
 * A driver opened on a fresh rig: close() closes the driver, then the rig,
 * and adds the rig's strict-mode violations to `violations`. If opening
 * throws, the rig is closed and the error passed on.
 */
export function driverOnSim<D extends { close(): void }>(
  variant: SimVariant,
  model: SimDeviceModel,
  open: (rig: SimRig) => D,
  violations: unknown[],
): { driver: D; rig: SimRig; close(): void } {
  const rig = simRig(variant, model);
  let driver: D;
  try {
    driver = open(rig);
  } catch (error) {
    violations.push(...rig.close());
    throw error;
  }
  return {
    driver,
    rig,
    close() {
      driver.close();
      violations.push(...rig.close());
    },
  };
}
