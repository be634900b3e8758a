import { NegotiationError } from '../errors';
import { FeatureBit, describeFeatures, deviceIdName, features, hasFeature } from '../spec';
import { DeviceStatus } from '../spec/status';
import { trace, tracing } from '../trace';
import type { TransportOps } from './transport-ops';

/**
 * Transport feature bits this library implements (virtio 1.2 §6). The
 * queues implement INDIRECT_DESC, EVENT_IDX, RING_PACKED and IN_ORDER; ACCESS_PLATFORM and
 * ORDER_PLATFORM hold because device addresses are platform (physical or
 * IOMMU) addresses and ring ordering uses the platform's DMA barriers.
 */
export const TRANSPORT_FEATURES = features(
  FeatureBit.INDIRECT_DESC,
  FeatureBit.EVENT_IDX,
  FeatureBit.VERSION_1,
  FeatureBit.ACCESS_PLATFORM,
  FeatureBit.ORDER_PLATFORM,
  FeatureBit.NOTIFICATION_DATA,
  FeatureBit.RING_RESET,
  FeatureBit.RING_PACKED,
  FeatureBit.IN_ORDER,
);

/** Feature bits 24–49 belong to the transport; the rest to the device type (§6). */
const TRANSPORT_RANGE = ((1n << 50n) - 1n) ^ ((1n << 24n) - 1n);

/** Every device-type bit (the driver decides those), and the transport bits implemented here. */
const IMPLEMENTED = (~TRANSPORT_RANGE & ((1n << 64n) - 1n)) | TRANSPORT_FEATURES;

const VERSION_1 = features(FeatureBit.VERSION_1);

/**
 * The driver features to write (§3.1.1 step 4): wanted ∩ offered ∩
 * implemented, adjusted for the interface the device speaks.
 */
export function acceptedFeatures(wanted: bigint, offered: bigint, legacy: boolean): bigint {
  const accepted = wanted & offered & IMPLEMENTED;
  // Modern devices need VERSION_1; legacy ones speak the legacy interface whatever they offer.
  // Legacy devices have no packed ring (§2.8 needs the modern interface).
  return legacy ? accepted & ~(VERSION_1 | features(FeatureBit.RING_PACKED)) : accepted | VERSION_1;
}

/**
 * Steps 4–5 of §3.1.1, decided from the bits the device offered: the
 * features to write (acceptedFeatures), or the NegotiationError code and
 * message that refuse the device — a Version 2 device without VERSION_1
 * (§6.2), or a required feature not offered.
 */
export function chooseFeatures(
  device: { readonly label: string; readonly deviceId: number; readonly version: number },
  offered: bigint,
  wanted: bigint,
  required: bigint,
): { accepted: bigint } | { refused: string; message: string } {
  if (device.version === 2 && !hasFeature(offered, FeatureBit.VERSION_1)) {
    return {
      refused: NegotiationError.VERSION_1_MISSING,
      message:
        `${device.label}: a Version 2 device must offer VIRTIO_F_VERSION_1 (offered: ` +
        `${describeFeatures(offered)})`,
    };
  }
  const missing = required & ~offered;
  if (missing)
    return {
      refused: NegotiationError.FEATURE_MISSING,
      message: `${device.label}: ${deviceIdName(device.deviceId)} lacks required features ${describeFeatures(missing)}`,
    };
  return { accepted: acceptedFeatures(wanted, offered, device.version !== 2) };
}

/**
 * Steps 4–6 of §3.1.1 once the device's feature bits are read (`offered`):
 * the driver features written (chooseFeatures: VERSION_1 added on Version
 * 2, which requires it), then FEATURES_OK set with `addStatus` and read
 * back on Version 2; legacy devices have no FEATURES_OK, the transport's
 * completeLegacyFeatures instead (MMIO's GuestPageSize of §4.2.4).
 * Returns the features accepted. A refusal sets FAILED (markFailed) and
 * throws NegotiationError.
 */
export function settleFeatures(
  device: Parameters<typeof chooseFeatures>[0] & { readonly status: number; markFailed(): void },
  ops: Pick<TransportOps, 'writeDriverFeatures' | 'completeLegacyFeatures'>,
  bits: { offered: bigint; wanted: bigint; required: bigint },
  addStatus: (bit: number) => void,
): bigint {
  const { offered } = bits;
  const refuse = (code: string, message: string, requested: bigint): never => {
    device.markFailed();
    throw new NegotiationError(code, message, offered, requested);
  };
  const choice = chooseFeatures(device, offered, bits.wanted, bits.required);
  if ('refused' in choice) return refuse(choice.refused, choice.message, 0n);
  const { accepted } = choice;
  if (tracing) trace('features', '%s: accepted %s', device.label, describeFeatures(accepted));
  ops.writeDriverFeatures(accepted);
  if (device.version !== 2) {
    ops.completeLegacyFeatures();
    return accepted;
  }
  addStatus(DeviceStatus.FEATURES_OK);
  if (!(device.status & DeviceStatus.FEATURES_OK)) {
    const message = `${device.label}: device refused FEATURES_OK for features ${describeFeatures(accepted)}`;
    refuse(NegotiationError.FEATURES_REFUSED, message, accepted);
  }
  return accepted;
}
