import { native, type BarrierKind } from './addon';

/**
 * Memory barriers with Linux's meaning (asm/barrier.h): mb/rmb/wmb order
 * all memory and MMIO accesses; dmaRmb/dmaWmb order accesses to coherent
 * DMA memory only (ring publishing and consuming, virtio 1.2 §2.7.13.3).
 * arm64: dsb sy/ld/st and dmb oshld/oshst; x86-64: mfence/lfence/sfence and
 * compiler barriers.
 */
export interface Barriers {
  mb(): void;
  rmb(): void;
  wmb(): void;
  dmaRmb(): void;
  dmaWmb(): void;
}

/** Which architecture's barriers the loaded addon uses (native/io_access.h). */
export const barrierKind: BarrierKind = native.barrierKind;

export const nativeBarriers: Barriers = {
  mb: native.mb,
  rmb: native.rmb,
  wmb: native.wmb,
  dmaRmb: native.dmaRmb,
  dmaWmb: native.dmaWmb,
};
