/**
 * barrierKind says which of native/io_access.h's barrier sets the loaded
 * addon was compiled with; the lab guests check it on their own CPUs
 * (test/lab/microvm.test.ts for x86-64), this checks the host's build.
 */
import { arch } from 'node:os';
import { barrierKind, nativeBarriers } from '../../lib/platform';

const EXPECTED: Record<string, string> = { x64: 'x86', ia32: 'x86', arm64: 'arm64', arm: 'armv7' };

test("the host addon's barrier set is its CPU's", () => {
  expect(barrierKind).toBe(EXPECTED[arch()] ?? 'fences');
});

test('every barrier runs', () => {
  for (const barrier of Object.values(nativeBarriers)) expect(barrier()).toBeUndefined();
});
