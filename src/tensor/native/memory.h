// Aligned buffers for weights and scratch. Large ones are mapped 2 MiB-aligned and
// marked MADV_HUGEPAGE (transparent huge pages in `madvise` mode: about +10% on GEMV
// that streams from DRAM, PERF.md); small ones come from posix_memalign(64).
#pragma once
#include <cstddef>

namespace act {

class Buffer {
 public:
  Buffer() = default;
  ~Buffer() { reset(); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept { *this = static_cast<Buffer&&>(o); }
  Buffer& operator=(Buffer&& o) noexcept;

  // Replaces the contents with `bytes` of uninitialized memory; false if out of memory
  // (the buffer is then empty).
  bool allocate(size_t bytes);
  // Grows to at least `bytes` (contents not kept); false if out of memory.
  bool reserve(size_t bytes) { return bytes <= size_ || allocate(bytes); }
  void reset();

  float* floats() const { return static_cast<float*>(data_); }
  // Bytes held, including the rounding to whole huge pages.
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
};

}  // namespace act
