import { MMIO_MAGIC_VALUE } from '../spec';
import { outOfRange } from '../errors';
import type { Hostile } from './hostile';
import { configPatch, patchBytes } from './hostile-config';
import type { SimOptions } from './sim-options';
import type { UsedElement } from './sim-ring';

/**
 * What the device does differently from an honest one, resolved once from
 * SimOptions: the fault knobs (`magic`, `versionValue`, `resetLatency`,
 * `queueResetLatency`, `configGenerationChurn`, `faults.usedElement`) and
 * hostile mode's switches, which cover the same ground (see
 * FAULT_CATALOGUE: each entry names the knobs that are a fixed setting of
 * it). A knob given explicitly wins over the switch.
 */
export interface FaultPlan {
  readonly magic: number;
  readonly versionValue: number;
  /** bad-identity 'device-id-0': DeviceID reads 0 and the device acts as an empty slot. */
  readonly hideDeviceId: boolean;
  /** config-window-short: the config bytes the window shows. */
  readonly configBytes: Uint8Array;
  /** config-out-of-range: bytes read over the honest ones, and the features that make the field valid. */
  readonly patch?: { offset: number; bytes: Uint8Array; features: bigint };
  /** config-generation-churn: ConfigGeneration reads that each change. */
  readonly configGenerationChurn: number;
  /** features-bad 'version-1-missing'. */
  readonly withdrawVersion1: boolean;
  /**
   * features-bad 'echo-unoffered': bits DeviceFeatures shows that the device does not offer, on every read or every
   * other one.
   */
  readonly claimedFeatures: bigint;
  readonly claimAlternately: boolean;
  /** features-bad 'features-ok-dropped'. */
  readonly dropFeaturesOk: boolean;
  /** Status reads after a reset before it reads 0 (reset-never-completes 'device': Infinity). */
  readonly resetLatency: number;
  /** QueueReset reads of 1 after a queue reset (reset-never-completes 'queue': Infinity). */
  readonly queueResetLatency: number;
  readonly usedElement?: (queue: number, element: UsedElement) => UsedElement;
}

/** A latency knob: a non-negative integer or Infinity. */
export function latency(name: string, value: number | undefined): number {
  if (value === undefined) return 0;
  if (typeof value !== 'number' || !(value >= 0) || (!Number.isInteger(value) && value !== Infinity)) {
    throw outOfRange(`${name} must be a non-negative integer or Infinity, got ${String(value)}`);
  }
  return value;
}

/** Resolves the plan; seeded choices are drawn in a fixed order so a seed replays the same lies. */
export function faultPlan(options: SimOptions, version: 1 | 2, hostile: Hostile | undefined): FaultPlan {
  const modelConfig = options.model?.config ?? new Uint8Array(0);
  let configBytes = modelConfig;
  const shortWindow = hostile?.options('config-window-short');
  if (shortWindow) {
    const { configBytes: n } = shortWindow;
    if (!Number.isInteger(n) || n < 0 || n > configBytes.length)
      throw outOfRange(
        `config-window-short configBytes must be an integer in [0, ${configBytes.length}], got ${String(n)}`,
      );
    configBytes = configBytes.subarray(0, n);
    hostile!.record('config-window-short', `the window ends ${n} bytes into the config space of ${modelConfig.length}`);
  }
  const raw = hostile ? configPatch(hostile) : undefined;
  if (raw && (raw.offset < 0 || raw.offset + raw.width > configBytes.length)) {
    throw outOfRange(
      `config-out-of-range: ${raw.width} bytes at config offset ${raw.offset} lie outside the ${configBytes.length}` +
        `-byte config space`,
    );
  }
  const churn = hostile?.has('config-generation-churn')
    ? (hostile.options('config-generation-churn')?.reads ?? Infinity)
    : options.configGenerationChurn;
  const featuresBad = hostile?.options('features-bad')?.kind;
  let claimedFeatures = 0n;
  let claimAlternately = false;
  if (featuresBad === 'echo-unoffered') {
    // Reserved transport bits (§6: 41–49 are not defined by virtio 1.2, 41 is ADMIN_VQ in 1.3): a nonempty seeded
    // subset of 42–49.
    claimedFeatures = BigInt(hostile!.int(1, 255)) << 42n;
    claimAlternately = hostile!.random() < 0.5;
  }
  const identity = hostile?.options('bad-identity')?.kind;
  const resetNever = hostile?.options('reset-never-completes')?.kind;
  return {
    magic:
      options.magic ??
      (identity === 'magic' ? (MMIO_MAGIC_VALUE ^ hostile!.int(1, 0xffff_ffff)) >>> 0 : MMIO_MAGIC_VALUE),
    versionValue: options.versionValue ?? (identity === 'version-3' ? 3 : version),
    hideDeviceId: identity === 'device-id-0',
    configBytes,
    patch: raw && { offset: raw.offset, bytes: patchBytes(raw), features: raw.features ?? 0n },
    configGenerationChurn: latency('configGenerationChurn', churn),
    withdrawVersion1: featuresBad === 'version-1-missing',
    claimedFeatures,
    claimAlternately,
    dropFeaturesOk: featuresBad === 'features-ok-dropped',
    resetLatency: resetNever === 'device' ? Infinity : latency('resetLatency', options.resetLatency),
    queueResetLatency: resetNever === 'queue' ? Infinity : latency('queueResetLatency', options.queueResetLatency),
    usedElement: options.faults?.usedElement
      ? (queue, element) => options.faults!.usedElement!(queue, element)
      : undefined,
  };
}
