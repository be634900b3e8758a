/**
 * A contract suite is a list of named async checks written once and run
 * against several devices: on the host under jest against the sim, and in
 * the QEMU lab guest (no jest there) against QEMU's own devices through UIO.
 * Checks use node:assert and throw on failure.
 */
export interface ContractCase {
  readonly name: string;
  run(): Promise<void>;
}

/** What a check can report besides pass/fail (e.g. interrupt counts), printed by the lab. */
export type ContractFacts = Record<string, number | string | boolean>;
