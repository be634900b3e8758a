import { DmaPool } from '../../lib/platform';
import { echoRequest } from './echo-request';
import { SimDevice, type SimDeviceModel, type SimOptions } from '../../lib/sim';
import { MmioTransport, type MmioTransportOptions } from '../../lib/transport';

export interface SimRig {
  pool: DmaPool;
  sim: SimDevice;
  transport: MmioTransport;
  /** Closes transport, sim and memory; returns the strict-mode violations seen. */
  close(): readonly unknown[];
}

/** A sim device with `model`, its memory pool, and a transport on it, strict mode on. */
export function simRig(
  version: 1 | 2,
  model: SimDeviceModel | undefined,
  simOptions: Partial<SimOptions> = {},
  transportOptions: MmioTransportOptions = {},
): SimRig {
  const pool = DmaPool.anonymous();
  const sim = new SimDevice({ memory: pool, version, model, strict: true, ...simOptions });
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
      const violations = [...sim.violations];
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
export function echoModel(options: { deviceId?: number; queueSizes?: number[]; config?: Uint8Array; features?: bigint; handle?: SimDeviceModel['handle'] } = {}): SimDeviceModel & { requests: number } {
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
