import { RingViolation } from '../spec/ring-violations';

/** Why a queue stopped trusting its device: a RingViolation and what exactly was seen. */
export interface RingBreak {
  readonly reason: RingViolation;
  readonly message: string;
}

/** Where a request id is (RingEngine's shadow); only a PUBLISHED id may come back used. */
export const IdState = { FREE: 0, PLACED: 1, PUBLISHED: 2 } as const;

/**
 * The one check of a used entry the device wrote (virtio 1.2 §2.7.8,
 * §2.7.8.1; §2.8.7 for the packed ring's Buffer ID): the id names a request
 * published to the device and not yet used, and the len is within the
 * device-writable bytes posted with it. `inFlight` (IdState) and `writable`
 * are the driver's private shadow, indexed by id. Returns undefined when
 * the entry may be trusted.
 */
export function checkUsedEntry(
  id: number,
  len: number,
  inFlight: Uint8Array,
  writable: Float64Array,
): RingBreak | undefined {
  if (id >= inFlight.length) {
    return {
      reason: RingViolation.USED_ID_OUT_OF_RANGE,
      message: `used element id ${id} is outside the queue (size ${inFlight.length})`,
    };
  }
  // Only what was published can have been used: a free id, or one placed and not yet published, is a lie.
  if (inFlight[id] !== IdState.PUBLISHED)
    return { reason: RingViolation.USED_ID_NOT_HEAD, message: `used element id ${id} is not an outstanding request` };
  if (len > writable[id]) {
    return {
      reason: RingViolation.USED_LEN_TOO_LONG,
      message: `used element for request ${id} reports ${len} bytes written into ${writable[id]} writable bytes`,
    };
  }
  return undefined;
}

/**
 * IN_ORDER (§2.7 and §2.8, "In-order use of descriptors"): the ids in the
 * order they were made available, so that one used entry can stand for
 * every request before it. Preallocated; nothing per request.
 */
export class AvailOrder {
  private readonly order: Uint16Array;
  private readonly sequence: Float64Array;
  private start = 0;
  private count = 0;
  private next = 0;

  constructor(private readonly size: number) {
    this.order = new Uint16Array(size);
    this.sequence = new Float64Array(size);
  }

  get length(): number {
    return this.count;
  }

  push(id: number): void {
    this.order[(this.start + this.count++) % this.size] = id;
    this.sequence[id] = this.next++;
  }

  /** Requests from the oldest in flight up to `id` inclusive (`id` must be in flight). */
  batchTo(id: number): number {
    return this.sequence[id] - this.sequence[this.order[this.start]] + 1;
  }

  shift(): number {
    const id = this.order[this.start];
    this.start = (this.start + 1) % this.size;
    this.count--;
    return id;
  }

  clear(): void {
    this.start = 0;
    this.count = 0;
  }
}
