/** virtio-blk (virtio 1.2 §5.2): device ID 2. */

/** Feature bits (§5.2.3). */
export const BlkFeature = {
  SIZE_MAX: 1,
  SEG_MAX: 2,
  GEOMETRY: 4,
  RO: 5,
  BLK_SIZE: 6,
  FLUSH: 9,
  TOPOLOGY: 10,
  CONFIG_WCE: 11,
  MQ: 12,
  DISCARD: 13,
  WRITE_ZEROES: 14,
  LIFETIME: 15,
  SECURE_ERASE: 16,
  ZONED: 17,
} as const;

/** Legacy-only bits (§5.2.3.1): named for reports only. */
export const LegacyBlkFeature = {
  BARRIER: 0,
  SCSI: 7,
} as const;

/** Offsets in struct virtio_blk_config (§5.2.4). */
export const BlkConfig = {
  capacity: 0, // le64, in 512-byte sectors
  size_max: 8, // le32
  seg_max: 12, // le32
  geometry_cylinders: 16, // le16
  geometry_heads: 18, // u8
  geometry_sectors: 19, // u8
  blk_size: 20, // le32
  topology_physical_block_exp: 24, // u8
  topology_alignment_offset: 25, // u8
  topology_min_io_size: 26, // le16
  topology_opt_io_size: 28, // le32
  writeback: 32, // u8
  num_queues: 34, // le16
  max_discard_sectors: 36, // le32
  max_discard_seg: 40, // le32
  discard_sector_alignment: 44, // le32
  max_write_zeroes_sectors: 48, // le32
  max_write_zeroes_seg: 52, // le32
  write_zeroes_may_unmap: 56, // u8
  /** Bytes up to and including the write-zeroes fields. */
  SIZE: 60,
} as const;

/** Request types (§5.2.6). */
export const BlkRequestType = {
  IN: 0,
  OUT: 1,
  FLUSH: 4,
  GET_ID: 8,
  GET_LIFETIME: 10,
  DISCARD: 11,
  WRITE_ZEROES: 13,
  SECURE_ERASE: 14,
} as const;

/** The status byte at the end of every request (§5.2.6). */
export const BlkStatus = {
  OK: 0,
  IOERR: 1,
  UNSUPP: 2,
} as const;

/** struct virtio_blk_req header: le32 type, le32 reserved, le64 sector (§5.2.6). */
export const BLK_REQ_HEADER_SIZE = 16;
/** struct virtio_blk_discard_write_zeroes: le64 sector, le32 num_sectors, le32 flags (bit 0 unmap). */
export const BLK_DISCARD_SEGMENT_SIZE = 16;
export const BLK_WRITE_ZEROES_FLAG_UNMAP = 1;
/** Sectors are always 512 bytes, whatever blk_size says (§5.2.6). */
export const BLK_SECTOR_SIZE = 512;
/** GET_ID: a NUL-padded ASCII string of up to 20 bytes (§5.2.6). */
export const BLK_ID_BYTES = 20;
