import {
  INPUT_CONFIG_UNION_BYTES,
  InputAbsInfo,
  InputConfig,
  InputConfigSelect,
  InputDevids,
  bitmapCodes,
} from '../spec';
import type { ConfigLayoutField, ConfigValue } from './inspect-config';

/**
 * struct virtio_input_config (§5.8.4): select, subsel and size, then the
 * union byte by byte; reserved[5] is padding. Inspect writes no config
 * (select and subsel need FEATURES_OK first, §3.1.1): it shows the answer
 * to whatever select the last driver left.
 */
export const INPUT_LAYOUT: readonly ConfigLayoutField[] = [
  { name: 'select', offset: InputConfig.select, width: 1 },
  { name: 'subsel', offset: InputConfig.subsel, width: 1 },
  { name: 'size', offset: InputConfig.size, width: 1 },
  ...Array.from({ length: INPUT_CONFIG_UNION_BYTES }, (_, i) => ({
    name: `u[${i}]`,
    offset: InputConfig.u + i,
    width: 1 as const,
  })),
];

const SELECT_NAMES = new Map<number, string>(Object.entries(InputConfigSelect).map(([name, v]) => [v, name]));

/** select, subsel, size, and the union decoded by the select it answers (when size is within the union). */
export function decodeInput(view: DataView, _offered: bigint, length: number): Record<string, ConfigValue> {
  if (length < InputConfig.SIZE) return {};
  const select = view.getUint8(InputConfig.select);
  const subsel = view.getUint8(InputConfig.subsel);
  const size = view.getUint8(InputConfig.size);
  const fields: Record<string, ConfigValue> = {
    select: SELECT_NAMES.has(select) ? `${SELECT_NAMES.get(select)} (${select})` : select,
    subsel,
    size,
  };
  if (size === 0 || size > INPUT_CONFIG_UNION_BYTES) return fields;
  const u = new Uint8Array(view.buffer, view.byteOffset + InputConfig.u, size);
  const at = (offset: number): number => InputConfig.u + offset;
  switch (select) {
    case InputConfigSelect.ID_NAME:
    case InputConfigSelect.ID_SERIAL: {
      const end = u.indexOf(0);
      fields.string = JSON.stringify(Buffer.from(end < 0 ? u : u.subarray(0, end)).toString('utf8'));
      break;
    }
    case InputConfigSelect.ID_DEVIDS:
      if (size >= InputDevids.SIZE) {
        for (const name of ['bustype', 'vendor', 'product', 'version'] as const)
          fields[name] = view.getUint16(at(InputDevids[name]), true);
      }
      break;
    case InputConfigSelect.PROP_BITS:
    case InputConfigSelect.EV_BITS:
      fields.bitmap = bitmapCodes(u).join(' ');
      break;
    case InputConfigSelect.ABS_INFO:
      if (size >= InputAbsInfo.SIZE) {
        for (const name of ['min', 'max', 'fuzz', 'flat', 'res'] as const)
          fields[name] = view.getInt32(at(InputAbsInfo[name]), true);
      }
      break;
  }
  return fields;
}
