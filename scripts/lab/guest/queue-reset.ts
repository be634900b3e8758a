import type { ProbeReport } from '../../../lib/transport';
import { blkSubjects, rngSubjects } from './devices';
import { report } from './report';

const codeOf = (error: unknown): string => String((error as { code?: string })?.code ?? error);

/**
 * RING_RESET on QEMU's own devices (virtio 1.2 §2.6.1; MMIO §4.2.2.1):
 * QEMU offers VIRTIO_F_RING_RESET on virtio-mmio Version 2. One queue of
 * blk (with two queues, the other is read from after) and of rng is reset
 * through the driver, and what the device did is reported: a completed
 * reset (QueueReset and QueueReady read 0; the queue serves again, the
 * other one never stopped) or a reset the device ignored
 * (QUEUE_RESET_IGNORED; the device is then failed and its own reset takes
 * the memory back). Run last: a device that ignores it is failed.
 */
export async function queueResetCheck(reports: ProbeReport[]): Promise<void> {
  for (const subject of blkSubjects(reports)) {
    const { blk, transport, close } = subject.open({});
    try {
      if (transport.version !== 2) continue;
      const queues = Array.from({ length: blk.info.queues }, (_, i) => i);
      for (const queue of queues) await blk.read(0, 512, { queue });
      const offered = transport.queueResettable;
      const reset = attempt(() => blk.resetQueue(0));
      const reads: Record<string, string> = {};
      for (const queue of queues) reads[queue] = await blk.read(0, 512, { queue }).then(() => 'ok', codeOf);
      report({ kind: 'queue-reset', device: 'blk', queues: queues.length, offered, reset, ...after(transport), reads });
    } finally {
      close();
    }
  }
  for (const subject of rngSubjects(reports)) {
    const { rng, transport, close } = subject.open({});
    try {
      if (transport.version !== 2) continue;
      await rng.read(16);
      const offered = transport.queueResettable;
      const reset = attempt(() => rng.resetQueue(0));
      const reads = { 0: await rng.read(16).then(() => 'ok', codeOf) };
      report({ kind: 'queue-reset', device: 'rng', queues: 1, offered, reset, ...after(transport), reads });
    } finally {
      close();
    }
  }
}

function attempt(reset: () => void): string {
  try {
    reset();
    return 'ok';
  } catch (error) {
    return codeOf(error);
  }
}

function after(transport: { failure?: Error; live: boolean; queueResettable: boolean }): Record<string, unknown> {
  return {
    failure: transport.failure ? codeOf(transport.failure) : undefined,
    live: transport.live,
    resettableAfter: transport.queueResettable,
  };
}
