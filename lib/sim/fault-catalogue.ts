import { RingViolation } from '../spec';
import { invalidArgValue } from '../errors';

/** What a fault makes the device lie about. */
export type FaultSubject =
  | 'used ring'
  | 'descriptors'
  | 'interrupts'
  | 'completion'
  | 'config space'
  | 'identity'
  | 'queue registers'
  | 'features'
  | 'status';

/**
 * The value a `name=value` setting fills (SimOptions.hostile behaviours,
 * the CLI's `--hostile name=value`): option `key`, one of `values` or an
 * integer.
 */
export interface FaultParameter {
  readonly key: string;
  readonly values?: readonly string[];
  readonly integer?: true;
}

/**
 * Every way the sim can lie, once: a number, the name hostile mode's switch
 * and the CLI use, the virtio 1.2 section whose device-side rule is broken
 * (24: the rule the driver must survive), a summary, what it lies about,
 * its parameter, the SimOptions knobs that are a fixed setting of it
 * (deprecated aliases, kept for existing users), and the registers through
 * which test/support's random mutators (MutatingRegisters, RingMutator)
 * tell the same lie.
 */
export const FAULT_CATALOGUE = [
  {
    number: 1,
    name: RingViolation.USED_ID_OUT_OF_RANGE,
    section: '2.7.8',
    summary: 'a used element id at or above the queue size',
    subject: 'used ring',
    knobs: ['faults.usedElement'],
  },
  {
    number: 2,
    name: RingViolation.USED_ID_NOT_HEAD,
    section: '2.7.8',
    summary: 'a used element naming a request that is not outstanding (duplicate or replay)',
    subject: 'used ring',
    parameter: { key: 'variant', values: ['duplicate', 'replay'] },
    knobs: ['faults.usedElement'],
  },
  {
    number: 3,
    name: 'used-wrong-chain',
    section: '2.7.8',
    summary: 'split: a non-head descriptor of an outstanding chain; packed: another outstanding Buffer ID',
    subject: 'used ring',
    knobs: ['faults.usedElement'],
  },
  {
    number: 4,
    name: RingViolation.USED_LEN_TOO_LONG,
    section: '2.7.8.1',
    summary: 'used len above the writable bytes posted',
    subject: 'used ring',
    knobs: ['faults.usedElement'],
  },
  {
    number: 5,
    name: 'used-len-too-short',
    section: '2.7.8.1',
    summary: 'used len 0 or below what the device wrote',
    subject: 'used ring',
    parameter: { key: 'len', integer: true },
    knobs: ['faults.usedElement'],
  },
  {
    number: 6,
    name: RingViolation.USED_IDX_JUMP,
    section: '2.7.8',
    summary: 'split: used.idx moves past the requests in flight',
    subject: 'used ring',
  },
  {
    number: 7,
    name: RingViolation.USED_IDX_BACKWARDS,
    section: '2.7.8',
    summary: 'split: used.idx goes back',
    subject: 'used ring',
  },
  {
    number: 8,
    name: 'descriptors-rewritten',
    section: '2.7.5',
    summary: 'descriptors of an in-flight chain overwritten with garbage',
    subject: 'descriptors',
  },
  {
    number: 9,
    name: 'used-element-changes',
    section: '2.7.8',
    summary: 'a published used element rewritten afterwards',
    subject: 'used ring',
  },
  {
    number: 10,
    name: 'packed-wrong-flags',
    section: '2.8.1',
    summary: 'packed: a used descriptor with wrong AVAIL/USED bits',
    subject: 'used ring',
    parameter: { key: 'variant', values: ['avail-only', 'used-only', 'stale-wrap'] },
  },
  {
    number: 11,
    name: 'interrupt-when-not-live',
    section: '2.1.2',
    summary: 'interrupts before DRIVER_OK and after a reset',
    subject: 'interrupts',
  },
  {
    number: 12,
    name: 'spurious-interrupts',
    section: '4.2.2',
    summary: 'the line raised with InterruptStatus 0 or undefined bits',
    subject: 'interrupts',
    parameter: { key: 'variant', values: ['zero', 'unknown-bits'] },
    registers: ['InterruptStatus'],
  },
  {
    number: 13,
    name: 'interrupt-storm',
    section: '4.2.3.4',
    summary: 'the line re-raised at every InterruptACK without used buffers',
    subject: 'interrupts',
    parameter: { key: 'limit', integer: true },
  },
  {
    number: 14,
    name: 'never-completes',
    section: '2.7.13',
    summary: 'chains taken from the ring and never used',
    subject: 'completion',
  },
  {
    number: 15,
    name: 'config-generation-churn',
    section: '2.5.1',
    summary: 'ConfigGeneration never settles',
    subject: 'config space',
    parameter: { key: 'reads', integer: true },
    knobs: ['configGenerationChurn'],
    registers: ['ConfigGeneration'],
  },
  {
    number: 16,
    name: 'config-window-short',
    section: '4.2.2',
    summary: 'the register window ends inside the config space',
    subject: 'config space',
    parameter: { key: 'configBytes', integer: true },
  },
  {
    number: 17,
    name: 'config-out-of-range',
    section: '5',
    summary: 'a config field holds a value its device type does not allow',
    subject: 'config space',
    parameter: {
      key: 'field',
      values: [
        'blk-capacity-overflow',
        'blk-size-not-power-of-two',
        'blk-num-queues-zero',
        'blk-num-queues-huge',
        'net-max-pairs-zero',
        'console-max-ports-huge',
      ],
    },
    registers: ['config'],
  },
  {
    number: 18,
    name: 'bad-identity',
    section: '4.2.2',
    summary: 'MagicValue, Version or DeviceID wrong',
    subject: 'identity',
    parameter: { key: 'kind', values: ['magic', 'version-3', 'device-id-0'] },
    knobs: ['magic', 'versionValue'],
    registers: ['MagicValue', 'Version', 'DeviceID', 'VendorID'],
  },
  {
    number: 19,
    name: 'queue-num-max-bad',
    section: '4.2.2',
    summary: 'QueueNumMax 0 or not a power of two, or a queue that reads live before setup',
    subject: 'queue registers',
    parameter: { key: 'kind', values: ['zero', 'not-power-of-two', 'already-live'] },
    registers: ['QueueNumMax', 'QueueReady', 'QueuePFN'],
  },
  {
    number: 20,
    name: 'features-bad',
    section: '2.2',
    summary: 'FEATURES_OK dropped, VERSION_1 missing, or bits never offered',
    subject: 'features',
    parameter: { key: 'kind', values: ['features-ok-dropped', 'version-1-missing', 'echo-unoffered'] },
    knobs: ['acceptFeatures'],
    registers: ['DeviceFeatures'],
  },
  {
    number: 21,
    name: 'needs-reset',
    section: '2.1.2',
    summary: 'DEVICE_NEEDS_RESET mid-I/O, then nothing completes',
    subject: 'status',
    registers: ['Status'],
  },
  {
    number: 22,
    name: 'device-gone',
    section: '4.2.3.4',
    summary: 'the interrupt line hangs up mid-I/O (and the registers may read all ones)',
    subject: 'status',
    parameter: { key: 'registers', values: ['all-ones'] },
  },
  {
    number: 23,
    name: 'reset-never-completes',
    section: '2.4',
    summary: 'Status or QueueReset never reads 0 after a reset',
    subject: 'status',
    parameter: { key: 'kind', values: ['device', 'queue'] },
    knobs: ['resetLatency', 'queueResetLatency'],
    registers: ['QueueReset'],
  },
  {
    number: 24,
    name: 'late-completion',
    section: '2.7.13',
    summary:
      'an honest device that does the work of a chain and uses it long after the driver gave up on it ' +
      '(timeout, abort, a reset that did not complete)',
    subject: 'completion',
  },
] as const satisfies readonly {
  number: number;
  name: string;
  section: string;
  summary: string;
  subject: FaultSubject;
  parameter?: FaultParameter;
  knobs?: readonly string[];
  registers?: readonly string[];
}[];

export type FaultName = (typeof FAULT_CATALOGUE)[number]['name'];
export type FaultEntry = (typeof FAULT_CATALOGUE)[number];

const BY_NAME: ReadonlyMap<string, FaultEntry> = new Map(FAULT_CATALOGUE.map((entry) => [entry.name, entry]));

/** The catalogue entry of `name`, or undefined. */
export function faultEntry(name: string): FaultEntry | undefined {
  return BY_NAME.get(name);
}

/**
 * The fault that lies through register `name` (a MmioRegister name, or 'config'), for mutators that pick registers at
 * random.
 */
export function faultOfRegister(name: string): FaultName | undefined {
  return FAULT_CATALOGUE.find((entry) => 'registers' in entry && (entry.registers as readonly string[]).includes(name))
    ?.name;
}

/**
 * One setting in text, `name` or `name=value`, as the switch and option of
 * SimOptions.hostile.behaviours: `value` fills the entry's parameter (a
 * number when it is one). Unknown names, values where none is taken, and
 * values outside the entry's list are RangeErrors (ERR_INVALID_ARG_VALUE).
 */
export function parseFaultSetting(text: string): [FaultName, true | Record<string, string | number>] {
  const at = text.indexOf('=');
  const name = at < 0 ? text : text.slice(0, at);
  const entry = faultEntry(name);
  if (!entry)
    throw invalidArgValue(`unknown fault '${name}' (known: ${FAULT_CATALOGUE.map((e) => e.name).join(', ')})`, 'range');
  if (at < 0) return [entry.name, true];
  const value = text.slice(at + 1);
  const parameter: FaultParameter | undefined = 'parameter' in entry ? entry.parameter : undefined;
  if (!parameter) throw invalidArgValue(`fault ${name} takes no value`, 'range');
  if (parameter.integer) {
    if (!/^\d+$/.test(value))
      throw invalidArgValue(`fault ${name} takes an integer ${parameter.key}, got '${value}'`, 'range');
    return [entry.name, { [parameter.key]: Number(value) }];
  }
  if (parameter.values && !parameter.values.includes(value))
    throw invalidArgValue(
      `fault ${name} takes ${parameter.key} ${parameter.values.join(' | ')}, got '${value}'`,
      'range',
    );
  return [entry.name, { [parameter.key]: value }];
}
