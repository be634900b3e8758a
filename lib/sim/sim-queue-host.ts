import type { DeviceMemory } from '../platform';
import { FeatureBit, MmioInterrupt } from '../spec';
import type { Hostile } from './hostile';
import type { LateWork } from './late-work';
import type { RegisterFaults } from './register-faults';
import type { SimDeviceModel } from './sim-model';
import type { SimStats } from './sim-options';
import type { SimQueueHost, UsedElement } from './sim-ring';
import type { StrictRules } from './strict-rules';

/** What the device hands its queues (SimDevice's constructor). */
export interface SimQueueHostParts {
  memory: DeviceMemory;
  model(): SimDeviceModel;
  rules: StrictRules;
  suppressNotifications: boolean;
  inOrderBatch: number;
  negotiated(bit: number): boolean;
  /** SimOptions.faults.usedElement. */
  usedElement?: (queue: number, element: UsedElement) => UsedElement;
  stats: SimStats;
  /** Sets an InterruptStatus bit and raises the line (nothing before DRIVER_OK). */
  signal(bit: number): unknown;
  queueBroken(): unknown;
  scheduleFlush(): void;
  modelError(error: Error): void;
  hostile?: Hostile;
  faults?: RegisterFaults;
  late: LateWork;
  resetIncomplete(): boolean;
}

/** The host every SimQueue of one device shares; it counts into the device's `stats`. */
export function simQueueHost(parts: SimQueueHostParts): SimQueueHost {
  const { faults, late } = parts;
  const { stats } = parts;
  return {
    memory: parts.memory,
    get model() {
      return parts.model();
    },
    rules: parts.rules,
    suppressNotifications: parts.suppressNotifications,
    get indirectDesc() {
      return parts.negotiated(FeatureBit.INDIRECT_DESC);
    },
    get eventIdx() {
      return parts.negotiated(FeatureBit.EVENT_IDX);
    },
    get packed() {
      return parts.negotiated(FeatureBit.RING_PACKED);
    },
    get inOrder() {
      return parts.negotiated(FeatureBit.IN_ORDER);
    },
    inOrderBatch: parts.inOrderBatch,
    rewriteUsed: parts.usedElement,
    notifyUsed: () => {
      parts.signal(MmioInterrupt.VRING);
    },
    notifySuppressed: () => {
      stats.interruptsSuppressed++;
    },
    queueBroken: () => {
      parts.queueBroken();
    },
    scheduleFlush: () => parts.scheduleFlush(),
    countRequest: () => {
      stats.requests++;
    },
    modelError: (error) => parts.modelError(error),
    hostile: parts.hostile,
    get halted() {
      return faults?.halted ?? false;
    },
    haltAtTake: (queue) => faults?.haltAtTake(queue) ?? false,
    holdLate: (work) => late.hold(work),
    // A device whose reset has not completed (Status not yet 0, or QueueReset never 0) goes on with the work it took.
    resetIncomplete: () => parts.resetIncomplete(),
  };
}
