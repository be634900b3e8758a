/**
 * The bytes of a descriptor chain taken as one stream, over the buffers a
 * sim model is given (SimRequest): any part of a request may be split over
 * several buffers or share one (virtio 1.2 §2.7.4).
 */

/** The bytes of all the buffers. */
export const total = (buffers: readonly Uint8Array[]): number => buffers.reduce((n, b) => n + b.length, 0);

/**
 * Calls `visit` for each piece of the byte range [start, start + length) of
 * the buffers taken as one stream; `at` is the piece's position in the range.
 */
export function eachPiece(
  buffers: readonly Uint8Array[],
  start: number,
  length: number,
  visit: (piece: Uint8Array, at: number) => void,
): void {
  let skip = start;
  let at = 0;
  for (const buffer of buffers) {
    if (at === length) return;
    if (skip >= buffer.length) {
      skip -= buffer.length;
      continue;
    }
    const piece = buffer.subarray(skip, Math.min(buffer.length, skip + length - at));
    skip = 0;
    visit(piece, at);
    at += piece.length;
  }
}

/** Copies the byte range [start, start + length) of the buffers, taken as one stream. */
export function gather(buffers: readonly Uint8Array[], start: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  eachPiece(buffers, start, length, (piece, at) => out.set(piece, at));
  return out;
}

/** How many buffers hold part of the range, and the largest such part. */
export function pieces(
  buffers: readonly Uint8Array[],
  start: number,
  length: number,
): { count: number; largest: number } {
  let count = 0;
  let largest = 0;
  eachPiece(buffers, start, length, (piece) => {
    if (piece.length === 0) return;
    count++;
    largest = Math.max(largest, piece.length);
  });
  return { count, largest };
}

/** A DataView over exactly these bytes. */
export const view = (bytes: Uint8Array): DataView => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
