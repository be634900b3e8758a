import assert from 'node:assert/strict';

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

/**
 * Byte-for-byte equality with a short message: assert.deepEqual's diff of
 * large buffers takes minutes, which looks like a hang.
 */
export function sameBytes(actual: Uint8Array, expected: Uint8Array, what = 'data'): void {
  if (Buffer.compare(actual, expected) === 0) return;
  let at = 0;
  while (at < Math.min(actual.length, expected.length) && actual[at] === expected[at]) at++;
  assert.fail(
    `${what}: ${actual.length} bytes, ${expected.length} expected; first difference at byte ${at} (${actual[at]} ` +
      `≠ ${expected[at]})`,
  );
}
