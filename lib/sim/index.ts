/**
 * The software virtio-mmio device: a SimDevice (register window, split
 * or packed rings, eventfd interrupt line) with a pluggable
 * SimDeviceModel, strict checking of the driver requirements (SIM_RULES),
 * and one catalogue of faults (FAULT_CATALOGUE) that hostile mode switches
 * on, for tests of drivers. Users test their own drivers with it.
 */
export { SimDevice, SIM_VENDOR_ID } from './sim-device';
export type { SimOptions, SimStats, SimFaults, SimInterruptLine } from './sim-options';
export {
  FAULT_CATALOGUE,
  faultEntry,
  faultOfRegister,
  parseFaultSetting,
  type FaultEntry,
  type FaultName,
  type FaultParameter,
  type FaultSubject,
} from './fault-catalogue';
export {
  Hostile,
  HOSTILE_BEHAVIOURS,
  type HostileBehaviour,
  type HostileBehaviourOptions,
  type HostileOptions,
  type HostileEvent,
  type ConfigOutOfRangeField,
  type ConfigPatch,
} from './hostile';
export type { SimQueueState, SimRingKind, UsedElement } from './sim-queue';
export { RngModel, type RngModelOptions } from './rng-model';
export { NetModel, type NetModelOptions } from './net-model';
export { ConsoleModel, type ConsoleModelOptions } from './console-model';
export type { ConsolePortSpec, ConsoleMultiportOptions } from './console-multiport';
export { BlkModel, type BlkModelOptions } from './blk-model';
export { InputModel, type InputModelOptions, type InputModelAbsInfo } from './input-model';
export { SIM_RULES, type SimRule } from './strict-rules';
export type { SimDeviceModel, SimRequest, SimConfigField, SimViolation } from './sim-model';
