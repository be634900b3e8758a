/**
 * Reserved (transport) feature bit numbers (virtio 1.2 §6). Device-type
 * feature bits live beside each device.
 */
export const FeatureBit = {
  INDIRECT_DESC: 28,
  EVENT_IDX: 29,
  VERSION_1: 32,
  ACCESS_PLATFORM: 33,
  RING_PACKED: 34,
  IN_ORDER: 35,
  ORDER_PLATFORM: 36,
  SR_IOV: 37,
  NOTIFICATION_DATA: 38,
  NOTIF_CONFIG_DATA: 39,
  RING_RESET: 40,
} as const;

export type FeatureBitName = keyof typeof FeatureBit;

/**
 * Transport bits a legacy device may offer (virtio 1.2 §6.3, legacy
 * interface): named for reports only; this library never negotiates them.
 */
export const LegacyFeatureBit = {
  NOTIFY_ON_EMPTY: 24,
  ANY_LAYOUT: 27,
  UNUSED: 30,
} as const;

/** The 64-bit mask of one feature bit. */
export const feature = (bit: number): bigint => 1n << BigInt(bit);

/** The mask of several feature bits. */
export const features = (...bits: number[]): bigint => bits.reduce((mask, bit) => mask | feature(bit), 0n);

export const hasFeature = (mask: bigint, bit: number): boolean => (mask & feature(bit)) !== 0n;

/** Bit numbers set in a mask, lowest first. */
export function featureBits(mask: bigint): number[] {
  const bits: number[] = [];
  for (let bit = 0; mask >> BigInt(bit) !== 0n; bit++) if (hasFeature(mask, bit)) bits.push(bit);
  return bits;
}

/** "VERSION_1, EVENT_IDX, 5" style text for messages (unknown bits by number). */
export function describeFeatures(mask: bigint, names: Record<string, number> = FeatureBit): string {
  const byBit = new Map(Object.entries(names).map(([name, bit]) => [bit, name]));
  const bits = featureBits(mask);
  return bits.length ? bits.map((bit) => byBit.get(bit) ?? String(bit)).join(', ') : 'none';
}
