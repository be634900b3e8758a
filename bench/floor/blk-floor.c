/*
 * blk-floor: the floor under our virtio-blk numbers in the lab. A minimal
 * polled virtio-blk driver in C that runs in the lab guest on the same
 * device our blk-bench drives (the first virtio-blk transport left on
 * UIO), with the same pattern (4 KiB random reads, a fixed queue depth,
 * a fixed time), so "ours poll / C" says how much of a request's time is
 * ours and how much is the device and the emulator's.
 *
 *   blk-floor <iodepth> <seconds> [poll|interrupt]
 *
 * poll (the default) spins on used.idx with interrupts suppressed;
 * interrupt waits for the device's used buffer notifications the way a
 * user-space driver on UIO must: a blocking read() of /dev/uioN, then the
 * InterruptStatus acknowledgement (§4.2.2) and the write() that unmasks
 * the line again (uio_pdrv_genirq masks it in its handler) — two syscalls
 * per interrupt, the least a UIO driver can pay. "C interrupt / kernel"
 * thus bounds what any user-space driver's interrupt mode can reach here.
 *
 * Prints one result line, as the guest programs do (scripts/lab/guest/report.ts):
 *   @@LAB-RESULT {"kind":"blk-floor","iodepth":1,"iops":...,"meanUs":...,"requests":...}
 * A Version 1 (legacy) transport is not driven: the line then carries
 * "skipped":"floor: Version 2 only" and the exit status is 0.
 *
 * What it does, with the virtio 1.2 sections it follows:
 *   - the register window through /dev/uioN (map 0 is mmap offset 0), the
 *     registers at the map's in-page offset; MagicValue, Version 2,
 *     DeviceID 2 checked (§4.2.2);
 *   - one 2 MiB hugetlb page, populated and locked, for the ring and the
 *     buffers; its physical address from /proc/self/pagemap (no IOMMU in
 *     the lab: device address = physical address);
 *   - the init sequence (§3.1.1, §4.2.3.1): reset, ACKNOWLEDGE | DRIVER,
 *     VIRTIO_F_VERSION_1 and nothing else (no RING_PACKED, no EVENT_IDX,
 *     no INDIRECT_DESC), FEATURES_OK, queue 0 as a split ring of
 *     min(QueueNumMax, 128) (§4.2.3.2), DRIVER_OK;
 *   - no interrupts: VIRTQ_AVAIL_F_NO_INTERRUPT (§2.7.7) and a spin on
 *     used.idx; notifications only when the device has not set
 *     VIRTQ_USED_F_NO_NOTIFY (§2.7.10);
 *   - each request a fixed three-descriptor chain (§5.2.6): the 16-byte
 *     header (type VIRTIO_BLK_T_IN, a random 4 KiB-aligned sector below the
 *     capacity), 4 KiB device-writable data, the device-writable status
 *     byte; status 0 (VIRTIO_BLK_S_OK) and used len 4097 are checked;
 *   - a reset at the end (§2.4), so the next driver finds the device as
 *     it was.
 *
 * Memory ordering, as Linux orders the same accesses on arm64:
 *   - MMIO reads are a plain ldr then "dmb oshld", writes "dmb oshst" then a
 *     plain str (Linux's readl/writel); the notify write thus follows all
 *     earlier stores to the ring;
 *   - ring publishing (§2.7.13.3): descriptors and the ring entry, then the
 *     index with a store-release; a full fence before reading used.flags
 *     for the notify decision (§2.7.13.4; Linux's virtio_mb);
 *   - ring consuming (§2.7.14): used.idx with a load-acquire before the
 *     elements and the buffers it covers.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <stdbool.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "virtio 1.x structures are little-endian; this program stores them in host order"
#endif

/* ---- virtio-mmio registers (§4.2.2, "MMIO Device Register Layout") ---- */
#define REG_MAGIC_VALUE 0x000
#define REG_VERSION 0x004
#define REG_DEVICE_ID 0x008
#define REG_DEVICE_FEATURES 0x010
#define REG_DEVICE_FEATURES_SEL 0x014
#define REG_DRIVER_FEATURES 0x020
#define REG_DRIVER_FEATURES_SEL 0x024
#define REG_QUEUE_SEL 0x030
#define REG_QUEUE_NUM_MAX 0x034
#define REG_QUEUE_NUM 0x038
#define REG_QUEUE_READY 0x044
#define REG_QUEUE_NOTIFY 0x050
#define REG_INTERRUPT_STATUS 0x060
#define REG_INTERRUPT_ACK 0x064
#define REG_STATUS 0x070
#define REG_QUEUE_DESC_LOW 0x080
#define REG_QUEUE_DESC_HIGH 0x084
#define REG_QUEUE_DRIVER_LOW 0x090
#define REG_QUEUE_DRIVER_HIGH 0x094
#define REG_QUEUE_DEVICE_LOW 0x0a0
#define REG_QUEUE_DEVICE_HIGH 0x0a4
#define REG_CONFIG_GENERATION 0x0fc
#define REG_CONFIG 0x100
#define REGISTER_WINDOW 0x200 /* the extent of one transport on -M virt (device-tree reg) */

#define MAGIC_VALUE 0x74726976u /* "virt" */
#define DEVICE_ID_BLOCK 2

/* Device status bits (§2.1). */
#define STATUS_ACKNOWLEDGE 1u
#define STATUS_DRIVER 2u
#define STATUS_DRIVER_OK 4u
#define STATUS_FEATURES_OK 8u
#define STATUS_DEVICE_NEEDS_RESET 64u
#define STATUS_FAILED 128u

/* VIRTIO_F_VERSION_1 is feature bit 32 (§6): bit 0 of the second 32-bit word. */
#define FEATURE_WORD1_VERSION_1 (1u << 0)

/* ---- split virtqueue (§2.7) ---- */
#define QUEUE_SIZE_CAP 128
#define VIRTQ_DESC_F_NEXT 1    /* §2.7.5 */
#define VIRTQ_DESC_F_WRITE 2   /* §2.7.5 */
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1 /* §2.7.7 */
#define VIRTQ_USED_F_NO_NOTIFY 1     /* §2.7.10 */

struct virtq_desc { /* §2.7.5 */
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
struct virtq_avail { /* §2.7.6 (used_event follows the ring; unused without EVENT_IDX) */
  uint16_t flags;
  uint16_t idx;
  uint16_t ring[];
};
struct virtq_used_elem { /* §2.7.8 */
  uint32_t id;
  uint32_t len;
};
struct virtq_used { /* §2.7.8 (avail_event follows the ring; unused without EVENT_IDX) */
  uint16_t flags;
  uint16_t idx;
  struct virtq_used_elem ring[];
};

/* ---- virtio-blk (§5.2.6) ---- */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_S_OK 0
#define SECTOR_BYTES 512
#define READ_BYTES 4096
#define SECTORS_PER_READ (READ_BYTES / SECTOR_BYTES)
struct virtio_blk_req_header {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};

/* ---- the hugepage: where everything the device reads or writes lives ---- */
#define HUGEPAGE_BYTES (2u << 20)
#define AT_DESC 0x0000     /* 16-byte aligned (§2.7 "Virtqueue Part Alignment") */
#define AT_AVAIL 0x1000    /* 2-byte aligned */
#define AT_USED 0x2000     /* 4-byte aligned */
#define AT_HEADERS 0x3000  /* 16 bytes per slot */
#define AT_STATUS 0x3800   /* 1 byte per slot */
#define AT_DATA 0x10000    /* 4 KiB per slot */
#define SLOT_DESCRIPTORS 3 /* header, data, status */
#define MAX_DEPTH (QUEUE_SIZE_CAP / SLOT_DESCRIPTORS)

static const char *uio_path = "";

static void die(const char *format, ...) {
  va_list args;
  va_start(args, format);
  fprintf(stderr, "blk-floor: ");
  vfprintf(stderr, format, args);
  fprintf(stderr, "\n");
  va_end(args);
  exit(1);
}

/* ---- MMIO accessors: Linux's readl/writel on arm64 ---- */
#if defined(__aarch64__)
/* A plain ldr/str with a base register only (no writeback addressing forms, which a hypervisor cannot emulate). */
static inline uint32_t raw_read32(volatile void *at) {
  uint32_t value;
  __asm__ volatile("ldr %w0, [%1]" : "=r"(value) : "r"(at) : "memory");
  return value;
}
static inline void raw_write32(volatile void *at, uint32_t value) {
  __asm__ volatile("str %w0, [%1]" : : "rZ"(value), "r"(at) : "memory");
}
/* dma_rmb / dma_wmb: order against the device's view of memory (outer shareable). */
static inline void io_read_barrier(void) { __asm__ volatile("dmb oshld" : : : "memory"); }
static inline void io_write_barrier(void) { __asm__ volatile("dmb oshst" : : : "memory"); }
#else
/* Any other host (only to compile-check this file): volatile accesses and C11 fences. */
static inline uint32_t raw_read32(volatile void *at) { return *(volatile uint32_t *)at; }
static inline void raw_write32(volatile void *at, uint32_t value) { *(volatile uint32_t *)at = value; }
static inline void io_read_barrier(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
static inline void io_write_barrier(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
#endif

static volatile uint8_t *regs;
static int uio_fd = -1;

static inline uint32_t reg_read(uint32_t offset) {
  uint32_t value = raw_read32(regs + offset);
  io_read_barrier(); /* readl: later memory reads wait for this one */
  return value;
}
static inline void reg_write(uint32_t offset, uint32_t value) {
  io_write_barrier(); /* writel: earlier stores (the ring) are visible to the device first */
  raw_write32(regs + offset, value);
}

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* xorshift64*: cheap, good enough to spread reads over the disk. */
static uint64_t random_state;
static inline uint64_t next_random(void) {
  random_state ^= random_state >> 12;
  random_state ^= random_state << 25;
  random_state ^= random_state >> 27;
  return random_state * 0x2545F4914F6CDD1DULL;
}

static int read_sysfs_u64(const char *path, uint64_t *out) {
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  unsigned long long value;
  int ok = fscanf(f, "%llx", &value) == 1; /* UIO prints addr, size and offset as 0x... */
  fclose(f);
  if (!ok) return -1;
  *out = value;
  return 0;
}

static int by_uio_number(const struct dirent **a, const struct dirent **b) {
  return atoi((*a)->d_name + 3) - atoi((*b)->d_name + 3);
}
static int is_uio_entry(const struct dirent *entry) { return strncmp(entry->d_name, "uio", 3) == 0; }

/*
 * The first virtio-blk transport on UIO, in uio number order (what our
 * scan() finds): maps it, leaves `regs` at its registers and returns its
 * Version. A transport that is not virtio (bad magic), empty (DeviceID 0)
 * or not a block device is passed over.
 */
static uint32_t open_first_blk(void) {
  struct dirent **entries;
  int count = scandir("/sys/class/uio", &entries, is_uio_entry, by_uio_number);
  if (count < 0) die("cannot list /sys/class/uio: %s", strerror(errno));
  long page = sysconf(_SC_PAGESIZE);
  uint32_t version = 0;
  for (int i = 0; i < count && version == 0; i++) {
    char path[320];
    uint64_t addr, size, offset = 0;
    snprintf(path, sizeof path, "/sys/class/uio/%s/maps/map0/addr", entries[i]->d_name);
    if (read_sysfs_u64(path, &addr) != 0) continue;
    snprintf(path, sizeof path, "/sys/class/uio/%s/maps/map0/size", entries[i]->d_name);
    if (read_sysfs_u64(path, &size) != 0) continue;
    snprintf(path, sizeof path, "/sys/class/uio/%s/maps/map0/offset", entries[i]->d_name);
    read_sysfs_u64(path, &offset); /* absent on old kernels: registers at the page */
    /* Current kernels give a page-aligned addr, a page-rounded size and the in-page start in offset; older ones an unaligned addr and the raw size. */
    int aligned = addr % (uint64_t)page == 0;
    uint64_t in_page = aligned ? offset : addr % (uint64_t)page;
    uint64_t length = aligned ? size : (in_page + size + (uint64_t)page - 1) / (uint64_t)page * (uint64_t)page;
    if (length < in_page + REGISTER_WINDOW) continue;
    static char device[272];
    snprintf(device, sizeof device, "/dev/%s", entries[i]->d_name);
    int fd = open(device, O_RDWR | O_CLOEXEC);
    if (fd < 0) continue;
    /* Map N of a UIO device is mmap offset N pages: map 0 at offset 0. */
    void *map = mmap(NULL, (size_t)length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
      close(fd);
      continue;
    }
    regs = (volatile uint8_t *)map + in_page;
    if (reg_read(REG_MAGIC_VALUE) == MAGIC_VALUE && reg_read(REG_DEVICE_ID) == DEVICE_ID_BLOCK) {
      version = reg_read(REG_VERSION);
      uio_path = device;
      uio_fd = fd;
    } else {
      munmap(map, (size_t)length);
      close(fd);
      regs = NULL;
    }
  }
  for (int i = 0; i < count; i++) free(entries[i]);
  free(entries);
  if (version == 0) die("no virtio-blk transport on UIO");
  return version;
}

/* The physical address behind a virtual one, from /proc/self/pagemap (needs CAP_SYS_ADMIN for the PFN). */
static uint64_t physical_address(const void *virt) {
  long page = sysconf(_SC_PAGESIZE);
  int fd = open("/proc/self/pagemap", O_RDONLY);
  if (fd < 0) die("cannot open /proc/self/pagemap: %s", strerror(errno));
  uint64_t entry;
  off_t at = (off_t)((uintptr_t)virt / (uintptr_t)page) * (off_t)sizeof entry;
  if (pread(fd, &entry, sizeof entry, at) != (ssize_t)sizeof entry) die("cannot read /proc/self/pagemap: %s", strerror(errno));
  close(fd);
  if (!(entry & (1ULL << 63))) die("the hugepage is not present");
  uint64_t pfn = entry & ((1ULL << 55) - 1);
  if (pfn == 0) die("/proc/self/pagemap gives no frame number (not root?)");
  return pfn * (uint64_t)page + (uintptr_t)virt % (uintptr_t)page;
}

static void set_status(uint32_t bits) { reg_write(REG_STATUS, reg_read(REG_STATUS) | bits); }

/* §2.4: write 0, then wait until the device reads back 0 (reset complete). */
static void reset_device(void) {
  reg_write(REG_STATUS, 0);
  for (int i = 0; reg_read(REG_STATUS) != 0; i++) {
    if (i > 1000000) die("%s: the device did not reset", uio_path);
  }
}

/* A 64-bit config field read consistently (§2.5.1: retry while ConfigGeneration moves). */
static uint64_t config_read64(uint32_t offset) {
  uint32_t before, after, low, high;
  do {
    before = reg_read(REG_CONFIG_GENERATION);
    low = reg_read(REG_CONFIG + offset);
    high = reg_read(REG_CONFIG + offset + 4);
    after = reg_read(REG_CONFIG_GENERATION);
  } while (before != after);
  return (uint64_t)high << 32 | low;
}

/*
 * Unmasks the line (uio_pdrv_genirq's irqcontrol write). Unmasking an
 * unmasked line is a no-op; a UIO driver without irqcontrol answers an
 * error, ignored here (the poll floor needs no interrupt).
 */
static void unmask_line(void) {
  int32_t unmask = 1;
  if (write(uio_fd, &unmask, sizeof unmask) != (ssize_t)sizeof unmask && errno != ENOSYS) {
    fprintf(stderr, "blk-floor: %s: unmasking the interrupt: %s\n", uio_path, strerror(errno));
  }
}

/*
 * Sleeps until the device interrupts: read() returns the line's event
 * count once it moved. Then §4.2.2: InterruptStatus acknowledged (the
 * level-triggered line drops) and the line unmasked. An interrupt raised
 * after the caller last looked at used.idx is never lost: the line stays
 * asserted until acknowledged, so an unmask re-raises it and the next read
 * returns at once.
 */
static void wait_for_interrupt(void) {
  uint32_t count;
  ssize_t n;
  do {
    n = read(uio_fd, &count, sizeof count);
  } while (n < 0 && errno == EINTR);
  if (n != (ssize_t)sizeof count) die("%s: waiting for the interrupt: %s", uio_path, n < 0 ? strerror(errno) : "short read");
  uint32_t pending = reg_read(REG_INTERRUPT_STATUS);
  if (pending) reg_write(REG_INTERRUPT_ACK, pending);
  unmask_line();
}

int main(int argc, char **argv) {
  if (argc != 3 && argc != 4) {
    fprintf(stderr, "usage: blk-floor <iodepth> <seconds> [poll|interrupt]\n");
    return 2;
  }
  const char *mode = argc == 4 ? argv[3] : "poll";
  if (strcmp(mode, "poll") != 0 && strcmp(mode, "interrupt") != 0) die("mode must be poll or interrupt, got %s", mode);
  bool interrupts = strcmp(mode, "interrupt") == 0;
  int depth = atoi(argv[1]);
  double seconds = atof(argv[2]);
  if (depth < 1 || depth > MAX_DEPTH) die("iodepth must be in [1, %d]", MAX_DEPTH);
  if (!(seconds > 0)) die("seconds must be positive");

  uint32_t version = open_first_blk();
  if (version != 2) {
    printf("blk-floor: %s is virtio-mmio Version %u; floor: Version 2 only, skipped\n", uio_path, version);
    printf("@@LAB-RESULT {\"kind\":\"blk-floor\",\"mode\":\"%s\",\"iodepth\":%d,\"skipped\":\"floor: Version 2 only\",\"version\":%u}\n",
           mode, depth, version);
    return 0;
  }

  void *page = mmap(NULL, HUGEPAGE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1, 0);
  if (page == MAP_FAILED) die("cannot map a 2 MiB hugetlb page: %s (is /proc/sys/vm/nr_hugepages set?)", strerror(errno));
  if (mlock(page, HUGEPAGE_BYTES) != 0) die("cannot lock the hugepage: %s", strerror(errno));
  memset(page, 0, HUGEPAGE_BYTES);
  uint8_t *base = page;
  uint64_t base_phys = physical_address(page);
  struct virtq_desc *desc = (struct virtq_desc *)(base + AT_DESC);
  struct virtq_avail *avail = (struct virtq_avail *)(base + AT_AVAIL);
  struct virtq_used *used = (struct virtq_used *)(base + AT_USED);
  struct virtio_blk_req_header *headers = (struct virtio_blk_req_header *)(base + AT_HEADERS);
  volatile uint8_t *status_bytes = base + AT_STATUS;

  /* ---- device initialization (§3.1.1, §4.2.3.1) ---- */
  reset_device();
  set_status(STATUS_ACKNOWLEDGE);
  set_status(STATUS_DRIVER);
  reg_write(REG_DEVICE_FEATURES_SEL, 1);
  if (!(reg_read(REG_DEVICE_FEATURES) & FEATURE_WORD1_VERSION_1)) die("%s does not offer VIRTIO_F_VERSION_1", uio_path);
  /* VERSION_1 only: RING_PACKED, EVENT_IDX, INDIRECT_DESC and every device feature declined. */
  reg_write(REG_DRIVER_FEATURES_SEL, 0);
  reg_write(REG_DRIVER_FEATURES, 0);
  reg_write(REG_DRIVER_FEATURES_SEL, 1);
  reg_write(REG_DRIVER_FEATURES, FEATURE_WORD1_VERSION_1);
  set_status(STATUS_FEATURES_OK);
  if (!(reg_read(REG_STATUS) & STATUS_FEATURES_OK)) die("%s refused the features (FEATURES_OK not kept)", uio_path);

  /* Virtqueue 0 (§4.2.3.2). */
  reg_write(REG_QUEUE_SEL, 0);
  if (reg_read(REG_QUEUE_READY) != 0) die("%s: queue 0 is already in use", uio_path);
  uint32_t queue_num_max = reg_read(REG_QUEUE_NUM_MAX);
  if (queue_num_max == 0) die("%s: queue 0 is not available", uio_path);
  uint16_t queue_size = (uint16_t)(queue_num_max < QUEUE_SIZE_CAP ? queue_num_max : QUEUE_SIZE_CAP);
  if (queue_size < (unsigned)depth * SLOT_DESCRIPTORS) die("%s: a queue of %u cannot hold %d requests", uio_path, queue_size, depth);
  reg_write(REG_QUEUE_NUM, queue_size);
  uint64_t desc_phys = base_phys + AT_DESC, avail_phys = base_phys + AT_AVAIL, used_phys = base_phys + AT_USED;
  reg_write(REG_QUEUE_DESC_LOW, (uint32_t)desc_phys);
  reg_write(REG_QUEUE_DESC_HIGH, (uint32_t)(desc_phys >> 32));
  reg_write(REG_QUEUE_DRIVER_LOW, (uint32_t)avail_phys);
  reg_write(REG_QUEUE_DRIVER_HIGH, (uint32_t)(avail_phys >> 32));
  reg_write(REG_QUEUE_DEVICE_LOW, (uint32_t)used_phys);
  reg_write(REG_QUEUE_DEVICE_HIGH, (uint32_t)(used_phys >> 32));
  /* §2.7.7: polling needs no used buffer notifications. */
  avail->flags = interrupts ? 0 : VIRTQ_AVAIL_F_NO_INTERRUPT;
  reg_write(REG_QUEUE_READY, 1);

  uint64_t capacity = config_read64(0); /* §5.2.4: capacity in 512-byte sectors */
  uint64_t reads = capacity / SECTORS_PER_READ;
  if (reads == 0) die("%s: capacity %" PRIu64 " sectors is below one 4 KiB read", uio_path, capacity);
  set_status(STATUS_DRIVER_OK);
  if (reg_read(REG_STATUS) & (STATUS_DEVICE_NEEDS_RESET | STATUS_FAILED)) die("%s: device status 0x%x after DRIVER_OK", uio_path, reg_read(REG_STATUS));

  /* One fixed three-descriptor chain per slot (§5.2.6): slot s heads at descriptor 3s. */
  for (int s = 0; s < depth; s++) {
    int d = s * SLOT_DESCRIPTORS;
    desc[d] = (struct virtq_desc){ base_phys + AT_HEADERS + (uint64_t)s * sizeof *headers, sizeof *headers, VIRTQ_DESC_F_NEXT, (uint16_t)(d + 1) };
    desc[d + 1] = (struct virtq_desc){ base_phys + AT_DATA + (uint64_t)s * READ_BYTES, READ_BYTES, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, (uint16_t)(d + 2) };
    desc[d + 2] = (struct virtq_desc){ base_phys + AT_STATUS + (uint64_t)s, 1, VIRTQ_DESC_F_WRITE, 0 };
    headers[s].type = VIRTIO_BLK_T_IN;
  }

  random_state = (uint64_t)now_us() | 1;
  double submitted_at[MAX_DEPTH];
  uint16_t avail_idx = 0, used_seen = 0;
  uint64_t notifications = 0, requests = 0, in_flight = 0, wakeups = 0;
  if (interrupts) unmask_line(); /* a line an earlier driver left masked */
  double latency_sum = 0;

  /* Places slot s's request in the avail ring (not yet published). */
#define PLACE(s)                                                                      \
  do {                                                                                \
    headers[s].sector = next_random() % reads * SECTORS_PER_READ;                      \
    status_bytes[s] = 0xff; /* the device must overwrite it */                         \
    avail->ring[avail_idx % queue_size] = (uint16_t)((s) * SLOT_DESCRIPTORS);           \
    avail_idx++;                                                                      \
    submitted_at[s] = now_us();                                                       \
    in_flight++;                                                                      \
  } while (0)

  /*
   * Publishes the placed entries (§2.7.13.3: the ring entries before the
   * index) and notifies unless the device asked not to be (§2.7.13.4,
   * §2.7.10: the index store before the flags load, hence the full fence).
   */
#define PUBLISH()                                                                     \
  do {                                                                                \
    __atomic_store_n(&avail->idx, avail_idx, __ATOMIC_RELEASE);                       \
    __atomic_thread_fence(__ATOMIC_SEQ_CST);                                          \
    if (!(__atomic_load_n(&used->flags, __ATOMIC_RELAXED) & VIRTQ_USED_F_NO_NOTIFY)) { \
      reg_write(REG_QUEUE_NOTIFY, 0);                                                 \
      notifications++;                                                                \
    }                                                                                 \
  } while (0)

  double started = now_us();
  double until = started + seconds * 1e6;
  double ended = started;
  for (int s = 0; s < depth; s++) PLACE(s);
  PUBLISH();
  int measuring = 1;
  while (in_flight > 0) {
    /* Interrupt mode looks at the ring only when woken, as an interrupt-driven driver does. */
    if (interrupts) {
      wait_for_interrupt();
      wakeups++;
    }
    /* §2.7.14: used.idx (acquire) before the elements it covers. */
    uint16_t used_idx = __atomic_load_n(&used->idx, __ATOMIC_ACQUIRE);
    if (used_idx == used_seen) continue;
    if ((uint16_t)(used_idx - used_seen) > in_flight) die("%s: used.idx moved %u past %u in flight", uio_path, (unsigned)(uint16_t)(used_idx - used_seen), (unsigned)in_flight);
    double completed_at = now_us();
    if (measuring && completed_at >= until) {
      measuring = 0; /* time is up: drain what is in flight, uncounted */
      ended = completed_at;
    }
    int placed = 0;
    for (; used_seen != used_idx; used_seen++) {
      struct virtq_used_elem elem = used->ring[used_seen % queue_size];
      uint32_t s = elem.id / SLOT_DESCRIPTORS;
      if (elem.id % SLOT_DESCRIPTORS != 0 || s >= (uint32_t)depth) die("%s: used id %u is no chain head", uio_path, elem.id);
      if (elem.len != READ_BYTES + 1) die("%s: used len %u for a 4 KiB read (want %u)", uio_path, elem.len, READ_BYTES + 1);
      if (status_bytes[s] != VIRTIO_BLK_S_OK) die("%s: request status %u", uio_path, status_bytes[s]);
      in_flight--;
      if (measuring) {
        latency_sum += completed_at - submitted_at[s];
        requests++;
        PLACE(s);
        placed++;
      }
    }
    if (placed) PUBLISH();
  }
  if (measuring) ended = now_us();

  /* Leave the device as we found it (§2.4); acknowledge an interrupt it raised anyway first. */
  uint32_t pending = reg_read(REG_INTERRUPT_STATUS);
  if (pending) reg_write(REG_INTERRUPT_ACK, pending);
  reset_device();
  /*
   * Unmask the line in case the device interrupted anyway (NO_INTERRUPT is
   * a hint) and uio_pdrv_genirq masked it; unmasking an unmasked line is a
   * no-op, and a driver without irqcontrol answers an error we ignore.
   */
  unmask_line();
  close(uio_fd);
  munlock(page, HUGEPAGE_BYTES);
  munmap(page, HUGEPAGE_BYTES);

  double elapsed = (ended - started) / 1e6;
  printf("@@LAB-RESULT {\"kind\":\"blk-floor\",\"driver\":\"c\",\"mode\":\"%s\",\"iodepth\":%d,\"iops\":%.1f,"
         "\"meanUs\":%.2f,\"requests\":%" PRIu64 ",\"seconds\":%.3f,\"queueSize\":%u,"
         "\"notificationsPerRequest\":%.4f,\"interruptsPerRequest\":%.4f}\n",
         mode, depth, requests / elapsed, requests ? latency_sum / requests : 0.0, requests, elapsed, queue_size,
         requests ? (double)notifications / requests : 0.0, requests ? (double)wakeups / requests : 0.0);
  return 0;
}
