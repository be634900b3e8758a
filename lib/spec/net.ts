/** virtio-net (virtio 1.2 §5.1): device ID 1. */

/** Feature bits this library knows by name (§5.1.3). */
/** Legacy-only bits (§5.1.3.2): named for reports only. */
export const LegacyNetFeature = {
  GSO: 6,
} as const;

export const NetFeature = {
  CSUM: 0,
  GUEST_CSUM: 1,
  MTU: 3,
  MAC: 5,
  MRG_RXBUF: 15,
  STATUS: 16,
  CTRL_VQ: 17,
  CTRL_RX: 18,
  MQ: 22,
  CTRL_MAC_ADDR: 23,
  SPEED_DUPLEX: 63,
} as const;

/** Offsets in struct virtio_net_config (§5.1.4). */
export const NetConfig = {
  mac: 0, // u8[6]
  status: 6, // le16
  max_virtqueue_pairs: 8, // le16
  mtu: 10, // le16
  SIZE: 12,
} as const;

/** Bits of the config `status` field (§5.1.4). */
export const NetStatus = {
  LINK_UP: 1,
  ANNOUNCE: 2,
} as const;

/** Queues of the first pair (§5.1.2). */
export const NetQueue = {
  RECEIVE0: 0,
  TRANSMIT0: 1,
} as const;

/**
 * §5.1.2: receiveqK is 2(K-1), transmitqK is 2(K-1)+1 (K counted from 1);
 * the controlq follows the last pair, 2N, where N is max_virtqueue_pairs
 * with VIRTIO_NET_F_MQ and 1 without.
 */
export const netReceiveQueue = (pair: number): number => 2 * pair;
export const netTransmitQueue = (pair: number): number => 2 * pair + 1;
export const netControlQueue = (pairs: number): number => 2 * pairs;

/**
 * struct virtio_net_hdr without hash or tunnel fields (§5.1.6): flags,
 * gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers — 12
 * bytes; a legacy device without VIRTIO_NET_F_MRG_RXBUF leaves out
 * num_buffers (10 bytes, §5.1.6.1).
 */
export const NET_HDR_SIZE = 12;
export const NET_HDR_SIZE_LEGACY = 10;
export const NET_HDR_NUM_BUFFERS = 10;
/** Offsets of the other struct virtio_net_hdr fields (§5.1.6). */
export const NetHdr = {
  flags: 0, // u8
  gso_type: 1, // u8
  hdr_len: 2, // le16
  gso_size: 4, // le16
  csum_start: 6, // le16
  csum_offset: 8, // le16
} as const;
/** virtio_net_hdr flags (§5.1.6). */
export const NetHdrFlag = {
  NEEDS_CSUM: 1,
  DATA_VALID: 2,
  RSC_INFO: 4,
} as const;
/** virtio_net_hdr gso_type values (§5.1.6): only NONE without GSO features. */
export const NET_HDR_GSO_NONE = 0;

/** Control queue classes and commands (§5.1.6.5). */
export const NetCtrl = {
  RX: 0,
  RX_PROMISC: 0,
  RX_ALLMULTI: 1,
  MAC: 1,
  MAC_ADDR_SET: 1,
  MQ: 4,
  MQ_VQ_PAIRS_SET: 0,
} as const;
/** The ack byte the device writes after a control command (§5.1.6.5). */
export const NetCtrlAck = {
  OK: 0,
  ERR: 1,
} as const;
/** max_virtqueue_pairs and VQ_PAIRS_SET's range (§5.1.4, §5.1.6.5.5). */
export const NET_MQ_PAIRS_MIN = 1;
export const NET_MQ_PAIRS_MAX = 0x8000;
/** Smallest mtu a device may report (§5.1.4.1: at least 68). */
export const NET_MIN_MTU = 68;
/**
 * Bytes a frame may have beyond the mtu: the Ethernet header and a VLAN
 * tag (18, so mtu 1500 gives NET_MAX_FRAME).
 */
export const NET_FRAME_OVERHEAD = 18;
/**
 * Largest Ethernet frame without offloads and without VIRTIO_NET_F_MTU:
 * 1514 bytes plus a VLAN tag (§5.1.6.3.1 asks for receive buffers of 1526
 * bytes with the header; Linux's virtio_net allows ETH_HLEN + VLAN_HLEN +
 * ETH_DATA_LEN). The most send() takes and the most a received frame may be.
 */
export const NET_MAX_FRAME = 1518;
/** Smallest Ethernet frame: the header alone (destination, source, EtherType). */
export const NET_MIN_FRAME = 14;

/** A MAC address as six colon-separated hex bytes ("52:54:00:12:34:56"). */
export const macText = (mac: Uint8Array): string => Array.from(mac, (b) => b.toString(16).padStart(2, '0')).join(':');

/** A 32-bit sum of 16-bit words folded to 16 bits, carries added back in (ones'-complement addition, RFC 1071). */
const foldSum = (sum: number): number => {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
};

/**
 * The Internet checksum (RFC 1071) of bytes[start..end): the 16-bit
 * ones'-complement of the ones'-complement sum, as a device computes it
 * for NEEDS_CSUM (the field's own bytes included: it holds the
 * pseudo-header sum).
 */
export function internetChecksum(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let sum = 0;
  let i = start;
  for (; i + 1 < end; i += 2) sum += (bytes[i] << 8) | bytes[i + 1];
  if (i < end) sum += bytes[i] << 8;
  return ~foldSum(sum) & 0xffff;
}

/**
 * The IPv4 pseudo-header sum (RFC 768, RFC 793) for a TCP or UDP segment of
 * `length` bytes: the 16-bit ones'-complement sum, not complemented. A
 * frame sent with a checksum request (VIRTIO_NET_F_CSUM, §5.1.6.2) carries
 * this in its checksum field; the device sums from csum_start onwards.
 */
export function ipv4PseudoHeaderSum(
  source: Uint8Array,
  destination: Uint8Array,
  protocol: number,
  length: number,
): number {
  let sum = protocol + length;
  for (const address of [source, destination])
    sum += ((address[0] << 8) | address[1]) + ((address[2] << 8) | address[3]);
  return foldSum(sum);
}
