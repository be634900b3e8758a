/**
 * virtio-input in the lab guest (test/lab/input.test.ts): opens every
 * input transport the scan finds, reports what its config space says and
 * prints INPUT_READY for the host (which then sends events through QMP),
 * reports the events each device delivered once the expected ones are in
 * (or after a time limit), then whether QEMU takes an LED event on statusq.
 *
 *   node scripts/lab/guest/input-check.js [waitSeconds]
 */
import { VirtioInput } from '../../../lib/devices';
import { describeError } from '../../../lib/diag/selftest';
import { describeInput } from '../../../lib/diag/input-steps';
import { DeviceId, InputAbs, InputEventType, InputKey, InputLed, type InputEvent } from '../../../lib/spec';
import type { UioDeviceSpec } from '../../../lib/transport';
import { openOnUio, scan } from './devices';
import { report, runMain } from './report';

/** The line the host waits for before it sends events. */
export const INPUT_READY = '@@INPUT-READY';
/** Events reported per device at most. */
const MAX_REPORTED = 64;

interface Opened {
  path: string;
  input: VirtioInput;
  events: InputEvent[];
  /** 'report' emits seen (batches up to SYN_REPORT). */
  reports: number[];
  /** Whether what the host sends to this kind of device has all arrived. */
  done(): boolean;
  close(): void;
}

const has = (events: InputEvent[], type: number, code: number, value?: number): boolean =>
  events.some((e) => e.type === type && e.code === code && (value === undefined || e.value === value));

async function main(): Promise<void> {
  const waitMs = Number(process.argv[2] ?? 60) * 1000;
  const opened: Opened[] = [];
  try {
    for (const found of scan().filter((r) => r.result?.deviceId === DeviceId.INPUT)) {
      const spec = found.spec as UioDeviceSpec;
      const path = spec.device.devicePath;
      const {
        driver: input,
        transport,
        close,
      } = openOnUio(spec, (t, memory) => VirtioInput.open(t, { memory, requestTimeoutMs: 5000 }));
      const description = describeInput(input);
      report({ kind: 'input-device', path, version: transport.version, ...description });
      const events: InputEvent[] = [];
      input.on('event', (event) => events.length < MAX_REPORTED && events.push(event));
      const reports: number[] = [];
      input.on('report', (batch) => reports.push(batch.length));
      const abs = description.events.EV_ABS !== undefined;
      const done = abs
        ? () => has(events, InputEventType.EV_ABS, InputAbs.ABS_Y) && has(events, InputEventType.EV_SYN, 0)
        : () => has(events, InputEventType.EV_KEY, InputKey.KEY_A, 0);
      opened.push({ path, input, events, reports, done, close });
    }
    // The event buffers are published in a microtask after open(); QEMU drops events while eventq has no room.
    await new Promise((resolve) => setImmediate(resolve));
    process.stdout.write(`${INPUT_READY} ${opened.length}\n`);
    const deadline = performance.now() + waitMs;
    while (opened.some((o) => !o.done()) && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    for (const o of opened) {
      report({
        kind: 'input-events',
        path: o.path,
        complete: o.done(),
        events: o.events,
        reports: o.reports,
        stats: o.input.inputStats,
      });
    }
    // §5.8.6.2: an LED event on statusq, last: a device that breaks the ring protocol there is failed (reset).
    for (const o of opened) {
      const started = performance.now();
      try {
        await o.input.sendStatus(InputEventType.EV_LED, InputLed.LED_CAPSL, 1);
        const { usedLenIgnored } = o.input.queueStats(1);
        report({
          kind: 'input-status',
          path: o.path,
          ok: true,
          usedLenIgnored,
          ms: Math.round(performance.now() - started),
        });
      } catch (error) {
        report({ kind: 'input-status', path: o.path, ok: false, error: describeError(error) });
      }
    }
  } finally {
    for (const o of opened) o.close();
  }
}

if (require.main === module) runMain(main);
