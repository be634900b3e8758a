import { outOfRange } from '../errors';
import type { ShmRegion } from './virtio-transport';

/** The largest shared memory region id this library asks for (SHMSel, virtio 1.2 §4.2.2). */
export const MAX_SHM_ID = 255;

/** `id` when it is a region id (an integer in [0, MAX_SHM_ID]); RangeError otherwise. */
export function checkShmId(id: number): number {
  if (!Number.isInteger(id) || id < 0 || id > MAX_SHM_ID)
    throw outOfRange(`SHM id must be an integer in [0, ${MAX_SHM_ID}], got ${id}`);
  return id;
}

/** Every region `read` finds, by id (§2.10: ids need not be contiguous, so each one is asked). */
export function everyShmRegion(read: (id: number) => ShmRegion | undefined): ShmRegion[] {
  const regions: ShmRegion[] = [];
  for (let id = 0; id <= MAX_SHM_ID; id++) {
    const region = read(id);
    if (region) regions.push(region);
  }
  return regions;
}
