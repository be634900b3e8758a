import type { Hostile } from './hostile';

/**
 * Hostile late-completion (FAULT_CATALOGUE 24): chains taken and not yet
 * done. Each is done after a seeded delay, or when completeLate() says.
 */
export class LateWork {
  private readonly work: (() => void)[] = [];

  constructor(private readonly hostile?: Hostile) {}

  get held(): number {
    return this.work.length;
  }

  /** Holds one chain's work: until complete(), or with `delayMs` set, a seeded delay in [delayMs, 2 × delayMs]. */
  hold(work: () => void): void {
    const delayMs = this.hostile?.options('late-completion')?.delayMs;
    this.work.push(work);
    if (delayMs === undefined) return;
    const timer = setTimeout(
      () => {
        const at = this.work.indexOf(work);
        if (at < 0) return;
        this.work.splice(at, 1);
        work();
      },
      this.hostile!.int(delayMs, 2 * delayMs),
    );
    // A held chain must not keep a process alive that has nothing else to do.
    timer.unref();
  }

  /** Does up to `count` held chains now, in a seeded order; returns how many. */
  complete(count: number): number {
    let done = 0;
    while (done < count && this.work.length > 0) {
      const at = this.hostile ? this.hostile.int(0, this.work.length - 1) : 0;
      const [work] = this.work.splice(at, 1);
      work();
      done++;
    }
    return done;
  }
}
