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
  MQ: 22,
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
 * struct virtio_net_hdr without hash or tunnel fields (§5.1.6): flags,
 * gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers — 12
 * bytes; a legacy device without VIRTIO_NET_F_MRG_RXBUF leaves out
 * num_buffers (10 bytes, §5.1.6.1).
 */
export const NET_HDR_SIZE = 12;
export const NET_HDR_SIZE_LEGACY = 10;
export const NET_HDR_NUM_BUFFERS = 10;
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
