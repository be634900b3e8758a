import { BlkConfig, BlkFeature, ConsoleConfig, ConsoleFeature, feature, NetConfig, NetFeature } from '../spec';
import type { ConfigOutOfRangeField, ConfigPatch, Hostile } from './hostile';
import { invalidArgValue } from '../errors';

/**
 * The named out-of-range config values of hostile behaviour 17, each with
 * the feature that makes the field valid (offered besides the model's).
 */
export function configPatch(hostile: Hostile): ConfigPatch | undefined {
  const option = hostile.options('config-out-of-range');
  if (!option) return undefined;
  if (!('field' in option)) return option;
  const named: Record<ConfigOutOfRangeField, () => ConfigPatch> = {
    // §5.2.4: capacity in 512-byte sectors; this many bytes do not fit in 64 bits.
    'blk-capacity-overflow': () => ({
      offset: BlkConfig.capacity,
      width: 8,
      value: 0xffff_ffff_ffff_ffffn - BigInt(hostile.int(0, 0xffff)),
    }),
    // §5.2.4: blk_size is a power of two (a logical block size).
    'blk-size-not-power-of-two': () => ({
      offset: BlkConfig.blk_size,
      width: 4,
      value: hostile.pick([0, 3, 513, 1000, 4095]),
      features: feature(BlkFeature.BLK_SIZE),
    }),
    // §5.2.4 with VIRTIO_BLK_F_MQ: num_queues ≥ 1, and no more than the device has.
    'blk-num-queues-zero': () => ({
      offset: BlkConfig.num_queues,
      width: 2,
      value: 0,
      features: feature(BlkFeature.MQ),
    }),
    'blk-num-queues-huge': () => ({
      offset: BlkConfig.num_queues,
      width: 2,
      value: hostile.int(0x8000, 0xffff),
      features: feature(BlkFeature.MQ),
    }),
    // §5.1.4: max_virtqueue_pairs is 1 … 0x8000 with VIRTIO_NET_F_MQ.
    'net-max-pairs-zero': () => ({
      offset: NetConfig.max_virtqueue_pairs,
      width: 2,
      value: 0,
      features: feature(NetFeature.MQ),
    }),
    // §5.3.4 with VIRTIO_CONSOLE_F_MULTIPORT: more ports than queue indices exist.
    'console-max-ports-huge': () => ({
      offset: ConsoleConfig.max_nr_ports,
      width: 4,
      value: hostile.int(0x8000_0000, 0xffff_ffff),
      features: feature(ConsoleFeature.MULTIPORT),
    }),
  };
  const make = named[option.field];
  if (!make) throw invalidArgValue(`unknown config-out-of-range field '${String(option.field)}'`, 'range');
  return make();
}

/** The bytes a patch puts over config reads (little-endian, §4.2.2). */
export function patchBytes(patch: ConfigPatch): Uint8Array {
  const bytes = new Uint8Array(patch.width);
  let value = BigInt(patch.value);
  for (let i = 0; i < patch.width; i++) {
    bytes[i] = Number(value & 0xffn);
    value >>= 8n;
  }
  return bytes;
}
