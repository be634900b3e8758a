import { constants } from 'node:os';
import { isMainThread } from 'node:worker_threads';
import { invalidArgType, invalidArgValue, TransportError } from '../errors';
import type { TransportOps } from './transport-ops';

/**
 * The devices this thread drives past DRIVER_OK, and the hooks that reset
 * them when the thread ends. A device left live keeps DMAing into memory
 * the kernel takes back when the process (or, for a worker, its
 * environment) goes away: memory that is soon another process's. Every
 * module instance belongs to one thread (worker_threads load their own),
 * so the registry is per thread, as `process.on('exit')` in a worker is.
 *
 * Covered: the thread ending by itself, process.exit(), an uncaught
 * exception or unhandled rejection (Node emits 'exit' for them with exit
 * code 1, then prints the error; no 'uncaughtException' listener is added,
 * which would swallow it), and with
 * resetDevicesOnSignals() SIGINT/SIGTERM/SIGHUP. worker.terminate() and
 * workers still running when the main thread exits (Node terminates them)
 * run no JavaScript: there the addon's windows reset by themselves, from the
 * environment cleanup hook that MmioTransport arms with
 * RegisterBlock.armExitWrite (native/exit_write.cc); a window without it
 * (the sim's) is not reset then. Not covered, because nothing runs: SIGKILL,
 * a signal nobody listens for, a crash in native code,
 * --abort-on-uncaught-exception. There the next open resets the device
 * (§3.1.1 step 1).
 */

/** What the registry needs of a live device. */
export interface LiveDevice {
  /** For messages (e.g. the register window's label). */
  readonly label: string;
  /**
   * Stops the device using its rings, now: Status ← 0 (§2.4). Synchronous,
   * bounded and never throws: it runs from an 'exit' listener or a signal
   * handler, where no promise settles and an exception would change the
   * exit code.
   */
  emergencyReset(): void;
}

/** One tracking of a device; the same device tracked twice is two entries, each untracked once. */
interface Entry {
  readonly device: LiveDevice;
}

const live = new Set<Entry>();
let exitHooked = false;

/**
 * Adds `device` to this thread's live devices until the returned function
 * is called (idempotent). The 'exit' listener is installed with the first
 * live device and removed with the last, so an idle process carries none.
 */
export function trackLiveDevice(device: LiveDevice): () => void {
  const entry: Entry = { device };
  live.add(entry);
  if (!exitHooked) {
    // First in line: a later 'exit' listener that throws cannot keep the devices from their reset.
    process.prependListener('exit', resetAtExit);
    exitHooked = true;
  }
  return () => {
    if (live.delete(entry) && live.size === 0) unhookExit();
  };
}

/**
 * A live device is reset when this thread ends: by this registry ('exit',
 * opt-in signals), and, where the registers can (the addon's window), by a
 * Status ← 0 armed for the thread's teardown (TransportOps.armExitReset),
 * the one reset that also runs for worker.terminate() (no JavaScript runs
 * in the worker then). Both, when both run, write the same 0. Returns the
 * undo (idempotent).
 */
export function guardLiveDevice(
  device: LiveDevice,
  ops: Pick<TransportOps, 'armExitReset' | 'disarmExitReset'>,
  pollMs: number,
): () => void {
  ops.armExitReset(pollMs);
  const untrack = trackLiveDevice(device);
  let tracked = true;
  return () => {
    if (!tracked) return;
    tracked = false;
    untrack();
    ops.disarmExitReset();
  };
}

/** How long a reset at thread exit waits for Status to read 0: 10 ms, never beyond `resetTimeoutMs`. */
export function exitPollMs(resetTimeoutMs: number): number {
  return Math.min(10, resetTimeoutMs);
}

/**
 * The reset of the exit paths (this registry's 'exit' listener, opt-in
 * signals): Status ← 0 (§2.4) if the registers are still there, then at
 * most 10 ms (and never beyond `resetTimeoutMs`) for Status to read 0. Not
 * unbounded: an exit must not hang on a device that never resets. Not
 * without a read either: the DMA memory goes back to the kernel right
 * after, and a reset that reads 0 is the device saying it let go of the
 * rings (§2.4.1). Changes no driver-side state; synchronous; never throws.
 */
export function resetForExit(ops: Pick<TransportOps, 'closed' | 'reset'>, resetTimeoutMs: number): void {
  try {
    if (ops.closed) return;
    ops.reset(exitPollMs(resetTimeoutMs));
  } catch {
    // Registers gone or refusing accesses: nothing more can be done from here.
  }
}

/** How many devices this thread has live (tracked and not untracked). */
export function liveDeviceCount(): number {
  return live.size;
}

/**
 * Resets every live device of this thread now (emergencyReset, one after
 * the other, none skipped when one fails) and forgets them: a device is
 * reset once even if 'exit' follows. Returns their labels. For handlers
 * that end the process themselves; ordinary code closes its drivers.
 */
export function resetLiveDevices(): string[] {
  const entries = [...live];
  live.clear();
  unhookExit();
  const labels: string[] = [];
  for (const { device } of entries) {
    try {
      device.emergencyReset();
    } catch {
      // The contract says it never throws; a device that does anyway must not cost the others their reset.
    }
    try {
      labels.push(String(device.label));
    } catch {
      labels.push('(a device without a label)');
    }
  }
  return labels;
}

function resetAtExit(): void {
  resetLiveDevices();
}

function unhookExit(): void {
  if (!exitHooked) return;
  process.removeListener('exit', resetAtExit);
  exitHooked = false;
}

/** Signals whose default action ends the process and that a handler can catch. */
export type ResetSignal = 'SIGINT' | 'SIGTERM' | 'SIGHUP';

const RESET_SIGNALS: readonly ResetSignal[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

export interface ResetOnSignalsOptions {
  /** Default SIGINT and SIGTERM. */
  signals?: readonly ResetSignal[];
  /**
   * Called after the reset and before the exit, with the labels of the devices reset (e.g. to say so on stderr). Its
   * exceptions are ignored.
   */
  onReset?: (signal: ResetSignal, labels: readonly string[]) => void;
}

/** One call of resetDevicesOnSignals that is not yet uninstalled. */
interface Install {
  readonly onReset?: ResetOnSignalsOptions['onReset'];
}

/** Per signal: the one listener installed for it, shared by every install that names it. */
const signalHooks = new Map<ResetSignal, { readonly listener: () => void; readonly installs: Set<Install> }>();

/**
 * Opt-in (main thread only): on each of `signals`, reset every device this
 * thread drives, then exit with 128 + the signal number (SIGINT 130,
 * SIGTERM 143), the status a shell shows for a process killed by it.
 * Installing a listener replaces Node's default action (die by the
 * signal, with no JavaScript run and so no reset), which is why this is
 * never done silently. 'exit' listeners run as for process.exit(). A
 * program that shuts down gracefully on a signal should not use this: its
 * handler closes the drivers (close() resets). Returns the uninstall
 * function (idempotent); the last uninstall of a signal gives it back its
 * default action.
 */
export function resetDevicesOnSignals(options: ResetOnSignalsOptions = {}): () => void {
  if (options === null || typeof options !== 'object') throw invalidArgType('options must be an object');
  const signals = options.signals ?? ['SIGINT', 'SIGTERM'];
  if (!Array.isArray(signals) || signals.length === 0) throw invalidArgType('signals must be a non-empty array');
  for (const signal of signals) {
    if (!RESET_SIGNALS.includes(signal))
      throw invalidArgValue(`signals may be ${RESET_SIGNALS.join(', ')}; got ${String(signal)}`, 'range');
  }
  if (options.onReset !== undefined && typeof options.onReset !== 'function')
    throw invalidArgType('onReset must be a function');
  if (!isMainThread) {
    throw new TransportError(
      TransportError.STATE,
      'resetDevicesOnSignals: signals are delivered to the main thread only; a worker resets its devices when ' +
        'it ends by itself or calls process.exit()',
    );
  }
  const install: Install = { onReset: options.onReset };
  const unique = [...new Set(signals)];
  for (const signal of unique) {
    let hook = signalHooks.get(signal);
    if (!hook) {
      const installs = new Set<Install>();
      hook = { listener: () => onSignal(signal, installs), installs };
      signalHooks.set(signal, hook);
      process.on(signal, hook.listener);
    }
    hook.installs.add(install);
  }
  return () => {
    for (const signal of unique) {
      const hook = signalHooks.get(signal);
      if (!hook?.installs.delete(install) || hook.installs.size > 0) continue;
      process.removeListener(signal, hook.listener);
      signalHooks.delete(signal);
    }
  };
}

function onSignal(signal: ResetSignal, installs: ReadonlySet<Install>): void {
  const labels = resetLiveDevices();
  for (const { onReset } of [...installs]) {
    try {
      onReset?.(signal, labels);
    } catch {
      // Reporting is best effort; the exit below is what the signal asked for.
    }
  }
  process.exit(128 + constants.signals[signal]);
}
