/**
 * The QEMU labs for jest: scripts/lab/run.js typed, and the preparation
 * that brings a lab up to date with the sources before its tests run.
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

export interface LabRun {
  exitCode: number | null;
  timedOut: boolean;
  results: Record<string, unknown>[];
  console: string;
  ms: number;
}

export type LabArch = 'arm64' | 'armhf' | 'amd64';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const runner = require('../../scripts/lab/run.js') as {
  runLab(options: object): Promise<LabRun>;
  kernelDriverCommands(platformDevice: string, modules: string[]): string[];
  CARVE_OUT: Partial<Record<LabArch, { base: number; size: number }>>;
};

export const { kernelDriverCommands } = runner;

/** Guest memory the kernel does not own (run.js boots the arch with mem= below its RAM), for DmaPool.physical. */
export const carveOut = (arch: LabArch): { base: number; size: number } | undefined => runner.CARVE_OUT[arch];

/** Boots the `arch` guest (arm64 unless told otherwise: LAB_ARCH does not move the tests). */
export const runLab = (options: object, arch: LabArch = 'arm64'): Promise<LabRun> =>
  runner.runLab({ arch, ...options });

/** Brings a lab up to date with the sources (seconds when warm); the reason when it cannot. */
export function prepareLab(arch: LabArch): { ok: boolean; reason: string } {
  const child = spawnSync('bash', [resolve(__dirname, '../../scripts/lab/prepare.sh'), '--arch', arch], {
    encoding: 'utf8',
    timeout: 900_000,
  });
  if (child.status === 0) return { ok: true, reason: '' };
  const last = `${child.stderr ?? ''}${child.error?.message ?? ''}`.trim().split('\n').pop();
  return { ok: false, reason: `the ${arch} lab could not be prepared: ${last}` };
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const netns = require('../../scripts/lab/netns.js') as {
  createLabNetwork(spec: { name?: string; taps: { name: string; queues?: number }[]; mtu?: number }): {
    name: string;
    remove(): void;
  };
  labNetworkUnavailable(): string;
  tapNetdev(id: string, ifname: string, queues?: number): string[];
};

/** A network namespace with taps on a bridge, for runLab's `netns` (scripts/lab/netns.js). */
export const { createLabNetwork, labNetworkUnavailable, tapNetdev } = netns;
