#include "memory.h"

#include <cstdint>
#include <cstdlib>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace act {

namespace {
constexpr size_t kHugePage = size_t{2} << 20;
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    reset();
    data_ = o.data_;
    size_ = o.size_;
    mapped_ = o.mapped_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

bool Buffer::allocate(size_t bytes) {
  reset();
  if (bytes == 0) bytes = 64;
#if defined(__linux__)
  if (bytes >= kHugePage) {
    // Round up to whole huge pages, over-map by one so a 2 MiB boundary can be chosen,
    // and give back the unaligned head and the tail.
    const size_t len = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    void* raw = mmap(nullptr, len + kHugePage, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return false;
    const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
    const uintptr_t aligned = (start + kHugePage - 1) & ~(kHugePage - 1);
    if (aligned > start) munmap(raw, aligned - start);
    const size_t tail = start + len + kHugePage - (aligned + len);
    if (tail > 0) munmap(reinterpret_cast<void*>(aligned + len), tail);
    data_ = reinterpret_cast<void*>(aligned);
    // Advisory: without THP support the buffer simply uses 4 KiB pages.
    madvise(data_, len, MADV_HUGEPAGE);
    size_ = len;
    mapped_ = true;
    return true;
  }
#endif
  const size_t len = (bytes + 63) / 64 * 64;
  void* p = nullptr;
  if (posix_memalign(&p, 64, len) != 0) return false;
  data_ = p;
  size_ = len;
  mapped_ = false;
  return true;
}

void Buffer::reset() {
  if (!data_) return;
#if defined(__linux__)
  if (mapped_) munmap(data_, size_);
  else free(data_);
#else
  free(data_);
#endif
  data_ = nullptr;
  size_ = 0;
  mapped_ = false;
}

}  // namespace act
