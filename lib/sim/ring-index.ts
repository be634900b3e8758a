/**
 * A 16-bit ring index (avail.idx, used.idx) in DMA memory. Loads and
 * stores go through Atomics when the view is 2-byte aligned (so the JIT
 * never reorders or splits them, as publishing an index needs: virtio 1.2
 * §2.7.13.3.1 and §2.7.8 order the index store after the ring entries);
 * a view the memory hands out unaligned falls back to a DataView, which is
 * still a single access in this single-threaded device. Typed arrays are
 * host-endian: like the rest of the library, this assumes a little-endian
 * host (x86-64, arm64), where they match the rings' little-endian fields.
 */
export class RingIndex {
  private readonly word?: Uint16Array;
  private readonly view: DataView;

  constructor(area: Uint8Array, offset: number) {
    const at = area.byteOffset + offset;
    if (at % 2 === 0) this.word = new Uint16Array(area.buffer, at, 1);
    this.view = new DataView(area.buffer, at, 2);
  }

  load(): number {
    return this.word ? Atomics.load(this.word, 0) : this.view.getUint16(0, true);
  }

  store(value: number): void {
    if (this.word) Atomics.store(this.word, 0, value);
    else this.view.setUint16(0, value, true);
  }
}
