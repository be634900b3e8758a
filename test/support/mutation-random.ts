import { SeededRandom } from '../../lib/sim/seeded-random';

/**
 * A small seeded PRNG (mulberry32) for the mutation run: the same seed
 * gives the same scenario, operations and mutations, so a failing seed can
 * be replayed alone (MUTATION_FIRST_SEED=n MUTATION_SEEDS=1).
 */
export class MutationRandom extends SeededRandom {
  constructor(readonly seed: number) {
    super(seed ^ 0x9e3779b9);
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** An unsigned 32-bit integer. */
  u32(): number {
    return (this.next() * 4294967296) >>> 0;
  }

  chance(p: number): boolean {
    return p > 0 && this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** A new generator whose sequence does not depend on how much of this one is used later. */
  fork(salt: number): MutationRandom {
    return new MutationRandom((Math.imul(this.seed, 0x85ebca6b) ^ Math.imul(salt + 1, 0xc2b2ae35)) >>> 0);
  }

  /** `length` bytes. */
  bytes(length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    for (let i = 0; i < length; i += 4) {
      const word = this.u32();
      for (let b = 0; b < 4 && i + b < length; b++) out[i + b] = (word >>> (8 * b)) & 0xff;
    }
    return out;
  }
}

/**
 * A device-written value as a lying device might return it: one bit
 * flipped, several bits flipped, 0, all ones, off by one, or random.
 * `bits` is the field width (8, 16 or 32). May return the value unchanged.
 */
export function mutateValue(random: MutationRandom, value: number, bits: 8 | 16 | 32): number {
  const mask = bits === 32 ? 0xffff_ffff : (1 << bits) - 1;
  let out: number;
  switch (random.int(7)) {
    case 0:
      out = value ^ (1 << random.int(bits));
      break;
    case 1:
      out = value ^ random.u32();
      break;
    case 2:
      out = 0;
      break;
    case 3:
      out = mask;
      break;
    case 4:
      out = value + 1;
      break;
    case 5:
      out = value - 1;
      break;
    default:
      out = random.u32();
  }
  return (out & mask) >>> 0;
}
