import { invalidArgType, outOfRange } from '../errors';
import { NET_HDR_GSO_NONE, NET_HDR_NUM_BUFFERS, NetHdr, NetHdrFlag, internetChecksum } from '../spec';

/** Where the device is to put a transmitted frame's checksum (VIRTIO_NET_F_CSUM, virtio 1.2 §5.1.6.2). */
export interface NetChecksumRequest {
  /** Offset in the frame where summing starts (e.g. the TCP/UDP header). */
  start: number;
  /** Offset of the 16-bit checksum field from `start`; the field holds the pseudo-header sum. */
  offset: number;
}

/** What a received header says about the frame's checksum (VIRTIO_NET_F_GUEST_CSUM, §5.1.6.4.1). */
export interface NetReceivedChecksum {
  /** DATA_VALID: the device has validated the checksum(s). */
  checksumValid: boolean;
  /** NEEDS_CSUM: only a partial checksum is in the frame; the sum from `start` goes at `start + offset`. */
  needsChecksum?: NetChecksumRequest;
}

/** A received header, validated. */
export interface NetReceiveHeader extends NetReceivedChecksum {
  /** Buffers the frame spans (MRG_RXBUF), else 1. */
  numBuffers: number;
}

/** Why a received header was refused: a ProtocolError reason and a message. */
export interface NetHeaderFault {
  reason: string;
  message: string;
}

/**
 * Reads and validates the header at the start of a frame's first receive
 * buffer (§5.1.6.4). Flags are honoured only with GUEST_CSUM and
 * gso_type must be NONE (no GUEST_TSO/UFO negotiated); num_buffers must
 * be 1..`maxBuffers` (the buffers the device may still hold). The
 * checksum range is checked against the frame once its length is known
 * (checkChecksumRange).
 */
export function parseReceiveHeader(
  header: DataView,
  opts: { mergeable: boolean; guestCsum: boolean; maxBuffers: number },
): NetReceiveHeader | NetHeaderFault {
  const flags = header.getUint8(NetHdr.flags);
  const allowed = opts.guestCsum ? NetHdrFlag.NEEDS_CSUM | NetHdrFlag.DATA_VALID : 0;
  if ((flags & ~allowed) !== 0)
    return { reason: 'net-header-flags', message: `flags 0x${flags.toString(16)} outside the negotiated 0x${allowed}` };
  const gso = header.getUint8(NetHdr.gso_type);
  if (gso !== NET_HDR_GSO_NONE)
    return { reason: 'net-header-gso', message: `gso_type ${gso} without a GSO feature negotiated` };
  const numBuffers = opts.mergeable ? header.getUint16(NET_HDR_NUM_BUFFERS, true) : 1;
  if (numBuffers < 1 || numBuffers > opts.maxBuffers)
    return {
      reason: 'net-num-buffers',
      message: `num_buffers ${numBuffers}, the device holds ${opts.maxBuffers} receive buffers`,
    };
  const result: NetReceiveHeader = { numBuffers, checksumValid: (flags & NetHdrFlag.DATA_VALID) !== 0 };
  if (flags & NetHdrFlag.NEEDS_CSUM)
    result.needsChecksum = {
      start: header.getUint16(NetHdr.csum_start, true),
      offset: header.getUint16(NetHdr.csum_offset, true),
    };
  return result;
}

/** §5.1.6.4.1: with NEEDS_CSUM, csum_start + csum_offset + 2 lies within the frame. */
export function checksumFits(checksum: NetChecksumRequest, frameBytes: number): boolean {
  return checksum.start + checksum.offset + 2 <= frameBytes;
}

/** Fills a transmit header (§5.1.6.2): zeroes, or NEEDS_CSUM with csum_start/csum_offset. */
export function writeTransmitHeader(header: DataView, checksum?: NetChecksumRequest): void {
  for (let i = 0; i < header.byteLength; i++) header.setUint8(i, 0);
  if (!checksum) return;
  header.setUint8(NetHdr.flags, NetHdrFlag.NEEDS_CSUM);
  header.setUint16(NetHdr.csum_start, checksum.start, true);
  header.setUint16(NetHdr.csum_offset, checksum.offset, true);
}

/** ERR_OUT_OF_RANGE unless `checksum` names a field inside a `frameBytes`-byte frame. */
export function checkChecksumRequest(checksum: NetChecksumRequest, frameBytes: number): void {
  const { start, offset } = checksum ?? {};
  if (!Number.isInteger(start) || !Number.isInteger(offset) || start < 0 || offset < 0)
    throw outOfRange(`checksum start and offset must be non-negative integers, got ${start}, ${offset}`);
  if (!checksumFits(checksum, frameBytes))
    throw outOfRange(`checksum at ${start} + ${offset} does not fit a ${frameBytes}-byte frame`);
}

/**
 * Completes a partial checksum in place: what NEEDS_CSUM on a received
 * frame (VIRTIO_NET_F_GUEST_CSUM, §5.1.6.4.1) leaves to the driver, as a
 * network stack given CHECKSUM_PARTIAL would. The Internet checksum of
 * frame[start..] (its field at start + offset holding the pseudo-header
 * sum) replaces the field. A range outside the frame is ERR_OUT_OF_RANGE;
 * a frame that is not a Uint8Array ERR_INVALID_ARG_TYPE.
 */
export function completeChecksum(frame: Uint8Array, checksum: NetChecksumRequest): void {
  if (!(frame instanceof Uint8Array)) throw invalidArgType('frame must be a Buffer or Uint8Array');
  checkChecksumRequest(checksum, frame.length);
  fillChecksum(frame, checksum);
}

/** completeChecksum() for a range already checked against the frame (a received header's, checksumFits). */
export function fillChecksum(frame: Uint8Array, { start, offset }: NetChecksumRequest): void {
  // A sum of zero goes out as 0xffff, its other ones'-complement form: zero means "no checksum" to UDP (RFC 768).
  const sum = internetChecksum(frame, start) || 0xffff;
  frame[start + offset] = sum >>> 8;
  frame[start + offset + 1] = sum & 0xff;
}
