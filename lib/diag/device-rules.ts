import {
  DeviceBrokenError,
  DeviceGoneError,
  NegotiationError,
  ProtocolError,
  TimeoutError,
  TransportError,
  VirtioError,
} from '../errors';
import type { AccessWidth, RegisterBlock } from '../platform';
import type { TransportStats } from '../transport';
import { DeviceStatus, MmioRegister as R, MMIO_MAGIC_VALUE, QueueSelectTracker, RingViolation } from '../spec';
import { hex32 as hex } from '../util/hex';

/**
 * The spec rules `selftest --strict` holds the *device* to — the sim's
 * strict mode turned around. Ids are stable; `level` is the spec's own
 * word (MUST or SHOULD), sections are virtio 1.2.
 */
export const DEVICE_RULES = {
  'magic-value': { section: '4.2.2.1', level: 'must', text: 'MagicValue reads 0x74726976' },
  'version-value': {
    section: '4.2.2.1',
    level: 'must',
    text: 'Version reads 2 (or 1, the legacy interface of §4.2.4)',
  },
  'reset-completes': { section: '2.4.1', level: 'must', text: 'Status reads 0 after the driver writes 0 to it' },
  'interrupt-status-cleared-on-reset': {
    section: '4.2.2.1',
    level: 'must',
    text: 'InterruptStatus reads 0 after a reset',
  },
  'queue-ready-cleared-on-reset': {
    section: '4.2.2.1',
    level: 'must',
    text: 'QueueReady (QueuePFN on Version 1) reads 0 for every queue after a reset',
  },
  'interrupt-status-defined-bits': {
    section: '4.2.2',
    level: 'must',
    text: 'InterruptStatus sets only bit 0 (used buffer) and bit 1 (configuration change)',
  },
  'no-notification-before-driver-ok': {
    section: '2.1.2',
    level: 'must',
    text: 'no used buffer notification before DRIVER_OK',
  },
  'version-1-offered': { section: '6.2', level: 'must', text: 'a Version 2 device offers VIRTIO_F_VERSION_1' },
  'features-ok-kept': {
    section: '2.2.1',
    level: 'should',
    text: 'the device accepts a valid subset of the features it offered (FEATURES_OK stays set)',
  },
  'config-generation-settles': {
    section: '4.2.2.1',
    level: 'must',
    text:
      'ConfigGeneration changes only when the configuration may ' +
      'have changed (it settles between config change notifications)',
  },
  'config-valid': {
    section: '5',
    level: 'must',
    text: 'configuration fields hold values their device type allows, inside the register window',
  },
  'queues-present': {
    section: '5',
    level: 'must',
    text: 'the virtqueues the device type defines exist (QueueNumMax above 0)',
  },
  'used-ring-valid': {
    section: '2.7.8',
    level: 'must',
    text:
      'used elements name a chain in flight, and the used index moves by at most the chains in flight (§2.8.1 ' +
      'on packed rings)',
  },
  'used-len-valid': {
    section: '2.7.8.1',
    level: 'must',
    text: 'used len is no more than the writable bytes, and covers what the device type must write',
  },
  'completes-requests': {
    section: '2.7.13',
    level: 'should',
    text: 'buffers made available are used within the selftest time limit (a liveness check: the spec sets no time)',
  },
  'interrupts-with-cause': {
    section: '4.2.2',
    level: 'should',
    text: 'the interrupt line is raised only with a defined InterruptStatus bit set, and not in a storm',
  },
  'no-needs-reset': {
    section: '2.1.2',
    level: 'should',
    text: 'DEVICE_NEEDS_RESET stays clear during a valid exchange (set, it means the device hit an internal error)',
  },
} as const;

export type DeviceRule = keyof typeof DEVICE_RULES;

/** One broken rule, as `selftest --strict` reports it. */
export interface DeviceRuleViolation {
  rule: DeviceRule;
  section: string;
  level: 'must' | 'should';
  text: string;
  /** How many times it was seen, and what the first time looked like. */
  count: number;
  detail: string;
}

const INTERRUPT_DEFINED = 0x3;

/**
 * A register window that watches the device through the driver's own
 * accesses and records every DEVICE_RULES rule the device breaks. It
 * passes every access through unchanged; its only accesses of its own are
 * reads of InterruptStatus (no side effects, §4.2.2) after a reset and just
 * before DRIVER_OK.
 */
export class DeviceRuleWatch implements RegisterBlock {
  private readonly seen = new Map<DeviceRule, { count: number; detail: string }>();
  private version = 0;
  /** The driver's QueueSel and which queues it made live (until the Version read says otherwise, Version 2). */
  private queues = new QueueSelectTracker(2);
  private featuresSel = 0;
  private status = 0;
  private resetWritten = false;
  private resetDone = false;
  private generation?: number;
  private configChangeSeen = false;

  constructor(private readonly regs: RegisterBlock) {}

  get size(): number {
    return this.regs.size;
  }
  get closed(): boolean {
    return this.regs.closed;
  }
  get label(): string {
    return this.regs.label;
  }

  /** Records a broken rule (also used for what the driver's typed errors tell, via noteError). */
  note(rule: DeviceRule, detail: string): void {
    const entry = this.seen.get(rule);
    if (entry) entry.count++;
    else this.seen.set(rule, { count: 1, detail });
  }
  /** What the transport's interrupt counters show against the interrupt rules (wake-ups with no or undefined cause). */
  noteInterrupts(stats: Pick<TransportStats, 'interrupts' | 'spuriousInterrupts' | 'unknownInterruptBits'>): void {
    const { interrupts, spuriousInterrupts, unknownInterruptBits } = stats;
    if (spuriousInterrupts > 0)
      this.note(
        'interrupts-with-cause',
        `${spuriousInterrupts} of ${interrupts + spuriousInterrupts} wake-ups found InterruptStatus 0`,
      );
    if (unknownInterruptBits > 0)
      this.note(
        'interrupt-status-defined-bits',
        `${unknownInterruptBits} wake-ups found undefined InterruptStatus bits`,
      );
  }

  /** Every rule broken so far, in DEVICE_RULES order. */
  get violations(): DeviceRuleViolation[] {
    return (Object.keys(DEVICE_RULES) as DeviceRule[])
      .filter((rule) => this.seen.has(rule))
      .map((rule) => ({ rule, ...DEVICE_RULES[rule], ...this.seen.get(rule)! }));
  }

  /**
   * What a typed error from the driver says about the device, as a rule; false when it says nothing about the device.
   */
  noteError(error: unknown): boolean {
    const rule = ruleOfError(error);
    if (rule) this.note(rule, (error as Error).message);
    return rule !== undefined;
  }

  readb(offset: number): number {
    return this.regs.readb(offset);
  }
  readw(offset: number): number {
    return this.regs.readw(offset);
  }
  readl(offset: number): number {
    const value = this.regs.readl(offset);
    this.observeRead(offset, value);
    return value;
  }
  writeb(offset: number, value: number): void {
    this.configWritten(offset);
    this.regs.writeb(offset, value);
  }
  writew(offset: number, value: number): void {
    this.configWritten(offset);
    this.regs.writew(offset, value);
  }
  writel(offset: number, value: number): void {
    this.beforeWrite(offset, value);
    this.regs.writel(offset, value);
  }
  copyOut(offset: number, target: Uint8Array, width?: AccessWidth): Uint8Array {
    return this.regs.copyOut(offset, target, width);
  }
  copyIn(offset: number, source: Uint8Array, width?: AccessWidth): void {
    this.regs.copyIn(offset, source, width);
  }
  pollUntil(offset: number, mask: number, expected: number, timeoutMs: number, intervalUs?: number): number | null {
    const value = this.regs.pollUntil(offset, mask, expected, timeoutMs, intervalUs);
    if (offset === R.Status && expected === 0 && this.resetWritten) {
      if (value === null) this.note('reset-completes', `Status did not read 0 within ${timeoutMs} ms of the reset`);
      else this.afterReset();
    }
    return value;
  }
  /** Passed through: the watched window's own teardown write (a no-op where it has none, as on the sim). */
  armExitWrite(offset: number, value: number, pollMs?: number): void {
    this.regs.armExitWrite?.(offset, value, pollMs);
  }
  disarmExitWrite(): void {
    this.regs.disarmExitWrite?.();
  }
  close(): void {
    this.regs.close();
  }

  private observeRead(offset: number, value: number): void {
    switch (offset) {
      case R.MagicValue:
        if (value !== MMIO_MAGIC_VALUE) this.note('magic-value', `MagicValue read ${hex(value)}`);
        break;
      case R.Version:
        this.version = value;
        if (value !== 1 && value !== 2) this.note('version-value', `Version read ${value}`);
        else if (value !== this.queues.version) this.queues = new QueueSelectTracker(value);
        break;
      case R.DeviceFeatures:
        if (this.version === 2 && this.featuresSel === 1 && !(value & 1))
          this.note('version-1-offered', `DeviceFeatures word 1 read ${hex(value)} (bit 32 clear)`);
        break;
      case R.Status:
        if (this.resetWritten && !this.resetDone && value === 0) this.afterReset();
        if (value & DeviceStatus.DEVICE_NEEDS_RESET) this.note('no-needs-reset', `Status read ${hex(value)}`);
        if (
          this.status & DeviceStatus.FEATURES_OK &&
          !(value & DeviceStatus.FEATURES_OK) &&
          !(this.status & DeviceStatus.FAILED)
        ) {
          this.note('features-ok-kept', `Status read ${hex(value)} after the driver set FEATURES_OK`);
        }
        break;
      case R.InterruptStatus:
        this.checkInterruptStatus(value, 'read by the driver');
        break;
      case R.QueueReady:
        if (this.version === 2) this.checkQueueLive(value, 'QueueReady');
        break;
      case R.QueuePFN:
        if (this.version === 1) this.checkQueueLive(value, 'QueuePFN');
        break;
      case R.ConfigGeneration:
        if (this.version === 2) {
          if (this.generation !== undefined && value !== this.generation && !this.configChangeSeen) {
            this.note(
              'config-generation-settles',
              `ConfigGeneration went ${this.generation} → ${value} with no configuration change notification`,
            );
          }
          this.generation = value;
          this.configChangeSeen = false;
        }
        break;
    }
  }

  /**
   * A driver write to the configuration space may change what it reads (virtio-input's select and subsel, §5.8.4;
   * QEMU 7.2 notifies a configuration change for each): the generation may move before the notification is seen.
   */
  private configWritten(offset: number): void {
    if (offset >= R.Config) this.configChangeSeen = true;
  }

  private beforeWrite(offset: number, value: number): void {
    this.configWritten(offset);
    this.queues.write(offset, value);
    switch (offset) {
      case R.DeviceFeaturesSel:
        this.featuresSel = value;
        break;
      case R.Status:
        if (value === 0) {
          this.resetWritten = true;
          this.resetDone = false;
        } else if (value & DeviceStatus.DRIVER_OK && !(this.status & DeviceStatus.DRIVER_OK)) {
          // §2.1.2: nothing may have been used before DRIVER_OK.
          const pending = this.regs.readl(R.InterruptStatus);
          if (pending & 1)
            this.note('no-notification-before-driver-ok', `InterruptStatus read ${hex(pending)} just before DRIVER_OK`);
        }
        this.status = value;
        break;
    }
  }

  /** Status read 0 after the driver's reset: InterruptStatus must be clear and no queue live (§4.2.2.1). */
  private afterReset(): void {
    this.resetDone = true;
    this.queues.reset();
    this.status = 0;
    this.generation = undefined;
    const pending = this.regs.readl(R.InterruptStatus);
    if (pending !== 0)
      this.note('interrupt-status-cleared-on-reset', `InterruptStatus read ${hex(pending)} after the reset`);
  }

  private checkQueueLive(value: number, register: string): void {
    const queue = this.queues.queue(this.queues.selected);
    if (this.resetDone && value !== 0 && !queue.ready) {
      this.note(
        'queue-ready-cleared-on-reset',
        `${register} of queue ${queue.index} read ${hex(value)} after the reset, before the driver set it`,
      );
    }
  }

  private checkInterruptStatus(value: number, when: string): void {
    if (value & ~INTERRUPT_DEFINED)
      this.note('interrupt-status-defined-bits', `InterruptStatus ${when}: ${hex(value)}`);
    if (value & 2) this.configChangeSeen = true;
    if (value & 1 && !(this.status & DeviceStatus.DRIVER_OK))
      this.note('no-notification-before-driver-ok', `InterruptStatus ${when} before DRIVER_OK: ${hex(value)}`);
  }
}

/** The rule a typed library error says the device broke, if any. */
export function ruleOfError(error: unknown): DeviceRule | undefined {
  if (!(error instanceof VirtioError)) return undefined;
  if (error instanceof DeviceBrokenError) {
    if (error.reason === RingViolation.USED_LEN_TOO_LONG) return 'used-len-valid';
    if (error.reason.startsWith('used-') || error.reason.startsWith('packed-')) return 'used-ring-valid';
    if (error.reason === 'needs-reset') return 'no-needs-reset';
    if (error.reason === 'interrupt-storm') return 'interrupts-with-cause';
    return undefined;
  }
  if (error instanceof ProtocolError) return 'used-len-valid';
  if (error instanceof TimeoutError) return 'completes-requests';
  if (error instanceof DeviceGoneError) return undefined;
  return RULE_OF_CODE[error.code];
}

/** What the transport's and the negotiation's typed errors say about the device. */
const RULE_OF_CODE: Partial<Record<string, DeviceRule>> = {
  [TransportError.BAD_MAGIC]: 'magic-value',
  [TransportError.BAD_VERSION]: 'version-value',
  [TransportError.RESET_TIMEOUT]: 'reset-completes',
  [TransportError.QUEUE_IN_USE]: 'queue-ready-cleared-on-reset',
  [TransportError.QUEUE_UNAVAILABLE]: 'queues-present',
  [TransportError.CONFIG_UNSTABLE]: 'config-generation-settles',
  [TransportError.CONFIG_INVALID]: 'config-valid',
  [NegotiationError.VERSION_1_MISSING]: 'version-1-offered',
  [NegotiationError.FEATURES_REFUSED]: 'features-ok-kept',
};
