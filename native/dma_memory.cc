#include "dma_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "addon_data.h"
#include "errors.h"

namespace virtio_mmio {

static constexpr uint64_t kMaxDmaSize = uint64_t{1} << 34;  // 16 GiB
// mapPhysical's offset into /dev/mem is a physical address, above 4 GiB on
// LPAE (armhf): a 32-bit off_t would cut it and map other memory. node-gyp
// builds with _FILE_OFFSET_BITS=64 (musl's off_t is always 64-bit).
static_assert(sizeof(off_t) == 8, "off_t must be 64-bit: build with -D_FILE_OFFSET_BITS=64");
static constexpr const char* kPagemap = "/proc/self/pagemap";

// The last holder unmaps (for hugetlb, that gives the pages back): by then no
// JS object can reach the memory any more.
static void Release(DmaBlock* b) {
  if (b->holders.fetch_sub(1) != 1) return;
  munmap(b->map_base, b->map_len);
  delete b;
}

static size_t HugepageSize() {
  FILE* f = std::fopen("/proc/meminfo", "re");
  size_t kb = 2048;
  if (f != nullptr) {
    char line[128];
    while (std::fgets(line, sizeof line, f) != nullptr) {
      unsigned long v;
      if (std::sscanf(line, "Hugepagesize: %lu kB", &v) == 1) kb = v;
    }
    std::fclose(f);
  }
  return kb * 1024;
}

// Physical address of a virtual address from /proc/self/pagemap (bits 0-54
// PFN, bit 63 present). Without CAP_SYS_ADMIN the kernel reports PFN 0.
// Entries are 64-bit on every architecture and the PFN arithmetic is done in
// uint64_t, so an LPAE address above 4 GiB on a 32-bit build stays exact.
static uint64_t PhysicalAddress(Napi::Env env, const void* addr) {
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  // Through uintptr_t: GCC sign-extends a 32-bit pointer cast straight to a
  // wider integer, so an armhf address above 2 GiB became 0xffffffff........
  // and pagemap read nothing there (found by the armhf lab).
  const uint64_t va = reinterpret_cast<uintptr_t>(addr);
  int fd = open(kPagemap, O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw SyscallError(env, errno, "open", kPagemap);
  uint64_t entry = 0;
  ssize_t n = pread(fd, &entry, sizeof entry, static_cast<off_t>(va / page * sizeof entry));
  int read_errno = errno;
  close(fd);
  if (n != static_cast<ssize_t>(sizeof entry)) throw SyscallError(env, n < 0 ? read_errno : EIO, "read", kPagemap);
  if ((entry >> 63) == 0) throw TypedError(env, "dma", "page at " + Hex(va) + " is not present in " + kPagemap);
  uint64_t pfn = entry & ((uint64_t{1} << 55) - 1);
  if (pfn == 0) throw SyscallError(env, EPERM, "read", kPagemap, "the kernel hides page frame numbers without CAP_SYS_ADMIN");
  return pfn * page + va % page;
}

Napi::Function DmaMemory::Define(Napi::Env env) {
  return DefineClass(env, "DmaMemory",
                     {
                         InstanceMethod<&DmaMemory::Free>("free"),
                         InstanceMethod<&DmaMemory::Translate>("translate"),
                         InstanceAccessor<&DmaMemory::GetView>("view"),
                         InstanceAccessor<&DmaMemory::GetIova>("iova"),
                         InstanceAccessor<&DmaMemory::GetSize>("size"),
                         InstanceAccessor<&DmaMemory::GetKind>("kind"),
                         InstanceAccessor<&DmaMemory::GetFreed>("freed"),
                     });
}

// The backing store is gone: Node calls this on the JS thread once V8 has freed
// it, which is later than the detach in free() when transfer() moved the store
// to another ArrayBuffer, and at the latest when the environment exits.
static void ReleaseBackingStore(napi_env, void*, void* hint) { Release(static_cast<DmaBlock*>(hint)); }

// The ArrayBuffer object itself was collected (or the environment exits).
// Detaching frees a store that was not moved at once, but a native job started
// before free() (crypto.randomFill, fs.read: the thread pool) writes through
// the pointer it took from this buffer and keeps only the buffer object alive.
static void ReleaseBufferObject(napi_env, void* data, void*) { Release(static_cast<DmaBlock*>(data)); }

// Only the factories construct DmaMemory: they pass the block as an External.
DmaMemory::DmaMemory(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DmaMemory>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsExternal()) throw TypeErr(env, "DmaMemory is made by allocHugetlb, mapPhysical or allocAnonymous");
  DmaBlock* block = info[0].As<Napi::External<DmaBlock>>().Data();
  // A failure below leaves the holds already handed out to their finalizers;
  // the factory's own hold keeps the block until then.
  napi_value ab;
  block->holders++;  // the backing store
  if (napi_create_external_arraybuffer(env, block->data, block->size, ReleaseBackingStore, block, &ab) != napi_ok) {
    block->holders--;
    throw Napi::Error::New(env, "cannot create an external ArrayBuffer (is this runtime's V8 sandbox on?)");
  }
  block->holders++;  // the ArrayBuffer object
  if (napi_add_finalizer(env, ab, block, ReleaseBufferObject, nullptr, nullptr) != napi_ok) {
    block->holders--;
    // JS has not seen this buffer: detached, its store lets go of the block.
    napi_detach_arraybuffer(env, ab);
    throw Napi::Error::New(env, "cannot add a finalizer to the DMA memory's ArrayBuffer");
  }
  // Strong until free(): the buffer lives as long as this wrapper (or longer, if JS keeps it).
  buffer_ = Napi::Reference<Napi::ArrayBuffer>::New(Napi::ArrayBuffer(env, ab), 1);
  block->holders++;  // this wrapper, until free()
  block_ = block;
  iova_ = block->iova;
  size_ = block->size;
  kind_ = block->kind;
}

DmaMemory::~DmaMemory() {
  buffer_.Reset();
  if (block_ != nullptr) Release(block_);
}

static DmaBlock* NewBlock(void* map_base, size_t map_len, size_t data_offset, uint64_t size, uint64_t iova,
                          const char* kind) {
  auto* block = new DmaBlock();
  block->map_base = map_base;
  block->map_len = map_len;
  block->data = static_cast<uint8_t*>(map_base) + data_offset;
  block->size = static_cast<size_t>(size);
  block->iova = iova;
  block->kind = kind;
  block->holders = 1;  // the factory's, until Wrap
  return block;
}

Napi::Value DmaMemory::Wrap(Napi::Env env, DmaBlock* block) {
  Napi::Object obj;
  try {
    obj = GetAddonData(env).dma_memory.New({Napi::External<DmaBlock>::New(env, block)});
  } catch (...) {
    Release(block);
    throw;
  }
  Release(block);  // the wrapper and its buffer hold it now
  return obj;
}

// allocHugetlb(size): hugetlb pages, locked and populated; the device address
// is the physical address from pagemap, checked to be contiguous.
Napi::Value DmaMemory::AllocHugetlb(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t size = ArgIndex(info, 0, "size", kMaxDmaSize);
  if (size == 0) throw RangeErr(env, "size must be at least 1 byte");
  const size_t huge = HugepageSize();
  const size_t len = MapLength(env, (size + huge - 1) / huge * huge, "hugetlb allocation");
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_LOCKED | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) {
    throw SyscallError(env, errno, "mmap", "hugetlb", Hex(len) + " bytes in " + std::to_string(len / huge) + " hugepage(s) of " + Hex(huge));
  }
  DmaBlock* block = NewBlock(p, len, 0, size, 0, "hugetlb");
  try {
    block->iova = PhysicalAddress(env, p);
    for (size_t off = huge; off < len; off += huge) {
      if (PhysicalAddress(env, static_cast<uint8_t*>(p) + off) != block->iova + off) {
        throw TypedError(env, "dma-contiguity", "hugetlb allocation of " + Hex(len) +
                                                    " bytes is not physically contiguous; allocate at most one hugepage (" +
                                                    Hex(huge) + " bytes) per buffer");
      }
    }
  } catch (...) {
    Release(block);
    throw;
  }
  return Wrap(env, block);
}

// mapPhysical(phys, size, cached = false): a /dev/mem carve-out (reserved
// memory on a board); O_SYNC unless `cached`, so the CPU maps it uncached.
Napi::Value DmaMemory::MapPhysical(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t phys = ArgU64(info, 0, "phys");
  uint64_t size = ArgIndex(info, 1, "size", kMaxDmaSize);
  bool cached = ArgBool(info, 2, false);
  if (size == 0) throw RangeErr(env, "size must be at least 1 byte");
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t aligned = phys / page * page;
  const size_t len = MapLength(env, (phys - aligned + size + page - 1) / page * page, "physical mapping");
  const char* path = "/dev/mem";
  int fd = open(path, O_RDWR | O_CLOEXEC | (cached ? 0 : O_SYNC));
  if (fd < 0) throw SyscallError(env, errno, "open", path);
  // Exact up to 2^63 - 1; beyond, negative, and mmap fails (see mmio_region.cc).
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(aligned));
  int map_errno = errno;
  close(fd);
  if (p == MAP_FAILED) throw SyscallError(env, map_errno, "mmap", path, "physical " + Hex(aligned) + ", length " + Hex(len));
  return Wrap(env, NewBlock(p, len, static_cast<size_t>(phys - aligned), size, phys, "physical"));
}

// allocAnonymous(size, iova): ordinary zeroed memory with a caller-given
// device address, for the software device and tests.
Napi::Value DmaMemory::AllocAnonymous(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t size = ArgIndex(info, 0, "size", kMaxDmaSize);
  uint64_t iova = ArgU64(info, 1, "iova");
  if (size == 0) throw RangeErr(env, "size must be at least 1 byte");
  if (iova + size < iova) throw RangeErr(env, "iova " + Hex(iova) + " + size " + Hex(size) + " overflows 64 bits");
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const size_t len = MapLength(env, (size + page - 1) / page * page, "anonymous allocation");
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw SyscallError(env, errno, "mmap", "anonymous", Hex(len) + " bytes");
  return Wrap(env, NewBlock(p, len, 0, size, iova, "anonymous"));
}

// free(): for this object the memory is gone at once (freed, translate()
// throws) and its ArrayBuffer is detached; the mapping itself goes when the
// last thing that can reach it does (see the finalizers above), never under a
// buffer that transfer() made or a job still writing. Idempotent.
Napi::Value DmaMemory::Free(const Napi::CallbackInfo& info) {
  if (block_ == nullptr) return info.Env().Undefined();
  Napi::ArrayBuffer ab = buffer_.Value();
  if (!ab.IsDetached()) ab.Detach();
  buffer_.Unref();  // weak: a freed wrapper that JS keeps must not keep the memory
  DmaBlock* block = block_;
  block_ = nullptr;
  // Hugepages and /dev/mem go back now, not when the collector gets to the
  // buffer object: an anonymous mapping takes the range over in place
  // (MAP_FIXED, one step), so a job still writing through an old pointer
  // writes into it and the range cannot be handed to anything else before
  // the last holder unmaps it. Without this, a loop that opens and closes
  // pools ran out of hugepages (ENOMEM) with all of them freed. If the
  // replacement fails, the original stays mapped until then, as before.
  if (block->kind != "anonymous" && block->holders.load() > 1) {
    mmap(block->map_base, block->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE,
         -1, 0);
  }
  Release(block);
  return info.Env().Undefined();
}

// translate(offset): the device address of byte `offset`; for hugetlb it is
// read again from pagemap (so callers can check it is stable).
Napi::Value DmaMemory::Translate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (block_ == nullptr) throw TypedError(env, "closed", kind_ + " DMA memory was freed");
  uint64_t offset = ArgIndex(info, 0, "offset", size_ > 0 ? size_ - 1 : 0);
  uint64_t address = kind_ == "hugetlb" ? PhysicalAddress(env, block_->data + offset) : iova_ + offset;
  return Napi::BigInt::New(env, address);
}

// After free() the buffer is held weakly: once collected, a detached empty one stands in.
Napi::Value DmaMemory::GetView(const Napi::CallbackInfo& info) {
  Napi::ArrayBuffer ab = buffer_.Value();
  if (!ab.IsEmpty()) return ab;
  Napi::ArrayBuffer empty = Napi::ArrayBuffer::New(info.Env(), 0);
  empty.Detach();
  return empty;
}

Napi::Value DmaMemory::GetIova(const Napi::CallbackInfo& info) { return Napi::BigInt::New(info.Env(), iova_); }
Napi::Value DmaMemory::GetSize(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), size_); }
Napi::Value DmaMemory::GetKind(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), kind_); }
Napi::Value DmaMemory::GetFreed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), block_ == nullptr); }

}  // namespace virtio_mmio

