import { runInThisContext } from 'node:vm';

/**
 * The process object of Node's own realm. Jest gives test code a copy
 * whose listeners never see the process's events; uncaught exceptions and
 * unhandled rejections are emitted on this one (where Jest listens too).
 */
function realProcess(): NodeJS.Process {
  return runInThisContext('process') as NodeJS.Process;
}

/**
 * Catches what escapes into the event loop while installed: uncaught
 * exceptions and unhandled rejections. Jest's own listeners are set aside
 * meanwhile (they would fail the test at once) and put back by uninstall().
 */
export class CrashCatcher {
  readonly crashes: { seed: number; error: unknown }[] = [];
  seed = -1;
  private readonly process = realProcess();
  private saved?: { exception: NodeJS.UncaughtExceptionListener[]; rejection: NodeJS.UnhandledRejectionListener[] };
  private readonly onException = (error: unknown): void => {
    this.crashes.push({ seed: this.seed, error });
  };
  private readonly onRejection = (reason: unknown): void => {
    this.crashes.push({ seed: this.seed, error: reason });
  };

  install(): void {
    const p = this.process;
    this.saved = { exception: p.listeners('uncaughtException'), rejection: p.listeners('unhandledRejection') };
    p.removeAllListeners('uncaughtException');
    p.removeAllListeners('unhandledRejection');
    p.on('uncaughtException', this.onException);
    p.on('unhandledRejection', this.onRejection);
  }

  uninstall(): void {
    const p = this.process;
    p.off('uncaughtException', this.onException);
    p.off('unhandledRejection', this.onRejection);
    for (const listener of this.saved?.exception ?? []) p.on('uncaughtException', listener);
    for (const listener of this.saved?.rejection ?? []) p.on('unhandledRejection', listener);
    this.saved = undefined;
  }
}
