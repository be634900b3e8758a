import type { SimViolation } from './sim-model';

/**
 * Every driver-side rule the software device checks, with the virtio 1.2
 * section it comes from. Ids are stable: tests and users match on them.
 */
export const SIM_RULES = {
  // Register access (§4.2.2.2).
  'register-width': '4.2.2.2',
  'undefined-register': '4.2.2.2',
  'read-write-only': '4.2.2.2',
  'write-read-only': '4.2.2.2',
  'register-value': '4.2.2',
  // Discovery (§4.2.2.2, §4.2.3.1.1).
  'empty-slot-access': '4.2.3.1.1',
  'ignored-device-access': '4.2.2.2',
  'init-without-probe': '4.2.3.1.1',
  // Reset (§2.4.2: the reset is complete when Status reads 0).
  'reset-not-complete': '2.4.2',
  // Features (§2.2.1, §3.1.1, §4.2.2.2, §6.1).
  'device-features-sel-unset': '4.2.2.2',
  'driver-features-sel-unset': '4.2.2.2',
  'feature-not-offered': '2.2.1',
  'features-before-driver': '3.1.1',
  'driver-features-too-late': '3.1.1',
  'version-1-not-accepted': '6.1',
  // Device status (§2.1, §2.1.1, §3.1.1, §3.1.2).
  'status-bit-cleared': '2.1.1',
  'status-reserved-bit': '2.1',
  'status-after-failed': '2.1.1',
  'status-order': '3.1.1',
  'driver-ok-without-features-ok': '3.1.1',
  'legacy-features-ok': '3.1.2',
  // Virtqueue configuration (§2.6.1, §2.7, §2.7.1, §4.2.2.2, §4.2.3.2, §4.2.4).
  'queue-unavailable': '4.2.3.2',
  'queue-num-above-max': '4.2.2.2',
  'queue-num-not-power-of-two': '2.7',
  'queue-num-unset': '4.2.3.2',
  'queue-register-while-ready': '4.2.2.2',
  'queue-setup-after-driver-ok': '3.1.1',
  'queue-misaligned': '2.7.1',
  'queue-memory-unreachable': '4.2.3.2',
  'used-flags-not-zero': '2.7.10.1',
  'guest-page-size-unset': '4.2.4',
  'guest-page-size-invalid': '4.2.4',
  'queue-align-invalid': '4.2.4',
  'queue-reset-not-negotiated': '4.2.2.2',
  'queue-reset-not-complete': '2.6.1.1.2',
  // Notifications and interrupts (§2.9, §3.1.1, §4.2.2.2, §4.2.3.3).
  'notify-before-driver-ok': '3.1.1',
  'notify-queue-not-ready': '4.2.3.3',
  'notification-data-mismatch': '2.9',
  'interrupt-ack-undefined-bits': '4.2.2.2',
  // Configuration space (§3.1.1, §4.2.2.2).
  'config-width': '4.2.2.2',
  'config-out-of-range': '4.2.2.2',
  'config-write-read-only': '4.2.2.2',
  'config-write-before-features-ok': '3.1.1',
  // The split ring (§2.7.4.2, §2.7.5.2, §2.7.5.3.1, §2.7.6.1, §2.7.7.1).
  'avail-idx-jump': '2.7.6.1',
  'avail-flags-invalid': '2.7.7.1',
  'descriptor-index-out-of-range': '2.7.5',
  'descriptor-loop': '2.7.5.2',
  'chain-too-long': '2.7.5.2',
  'readable-after-writable': '2.7.4.2',
  'indirect-not-negotiated': '2.7.5.3.1',
  'indirect-with-next': '2.7.5.3.1',
  'nested-indirect': '2.7.5.3.1',
  'indirect-len': '2.7.5.3',
  'buffer-unreachable': '2.7.5',
  'chain-in-flight': '2.7.13',
  // VIRTIO_F_IN_ORDER on the split ring: descriptors in ring order (§2.7.5, §2.7.5.2, §2.7.5.3.1).
  'in-order-descriptor-order': '2.7.5',
  'in-order-next': '2.7.5.2',
  'in-order-indirect-next': '2.7.5.3.1',
  // The packed ring (§2.8.1, §2.8.7, §2.8.10, §2.8.16, §2.8.17, §2.8.19, §2.8.21.1).
  'packed-desc-flags-inconsistent': '2.8.1',
  'packed-chain-incomplete': '2.8.17',
  'packed-chain-too-long': '2.8.17',
  'packed-ring-overrun': '2.8.16',
  'packed-readable-after-writable': '2.8.17',
  'packed-indirect-not-negotiated': '2.8.19',
  'packed-indirect-with-next': '2.8.19',
  'packed-indirect-flags': '2.8.19',
  'packed-indirect-len': '2.8.7',
  'packed-buffer-id-in-flight': '2.8.21.1',
  'packed-event-flags-invalid': '2.8.10',
  'packed-notification-data-mismatch': '2.8.16',
} as const;

export type SimRule = keyof typeof SIM_RULES;

/**
 * Strict mode's record of broken rules. Disabled, it records nothing (the
 * device behaves the same either way).
 */
export class StrictRules {
  private readonly list: SimViolation[] = [];

  constructor(
    private readonly enabled: boolean,
    private readonly label: string,
    private readonly onViolation?: (violation: SimViolation) => void,
  ) {}

  get violations(): readonly SimViolation[] {
    return this.list;
  }

  record(rule: SimRule, message: string): void {
    if (!this.enabled) return;
    const violation: SimViolation = Object.freeze({
      rule,
      message: `${this.label}: ${message}`,
      section: SIM_RULES[rule],
    });
    this.list.push(violation);
    this.onViolation?.(violation);
  }

  clear(): void {
    this.list.length = 0;
  }
}
