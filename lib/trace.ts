import { debuglog } from 'node:util';

/**
 * Debug tracing through Node's util.debuglog: `NODE_DEBUG=virtio-mmio`
 * prints one line per event on stderr, `VIRTIO-MMIO <pid>: <topic> <text>`.
 * Topics: status (Status register transitions and resets), features (what
 * was offered and accepted), queue (set-up, tear-down, queue reset), irq
 * (each interrupt handled), broken (a device or queue given up on).
 *
 * Off and free when not enabled: `tracing` is read once, at load, and
 * every call site tests it before building any text; nothing is traced on
 * the per-request path (submit, notify, reap, complete).
 */
const log = debuglog('virtio-mmio');

/** Whether NODE_DEBUG names virtio-mmio; fixed for the life of the process, as debuglog's own test is. */
export const tracing: boolean = log.enabled;

/** One trace line, formatted as util.format does. Call only under `if (tracing)`. */
export function trace(
  topic: 'status' | 'features' | 'queue' | 'irq' | 'broken',
  format: string,
  ...args: unknown[]
): void {
  log(`${topic} ${format}`, ...args);
}
