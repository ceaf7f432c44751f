#pragma once
// BigAllocator: the allocator of the data module's large arrays (parsed cells, encoded datasets).
// Arrays of 2 MiB and more are mappings of their own, 2 MiB aligned and advised to use transparent
// huge pages (core/huge_pages.h, shared with the CPU storage allocator; never blocks inside malloc's
// heap): filling a multi-gigabyte table then takes 512 times fewer page faults, which dominate
// parsing on virtual machines. Elements are default-initialised (no zeroing on resize) since every cell is written
// before it is read; ask for zeros explicitly (assign(n, 0)) where they matter.
#include <cstddef>
#include <new>
#include <utility>
#include <vector>

namespace rechub::data {

void* big_allocate(size_t bytes);
// `bytes`: the size the block was allocated with.
void big_free(void* p, size_t bytes) noexcept;

template <class T>
struct BigAllocator {
  using value_type = T;
  BigAllocator() = default;
  template <class U>
  BigAllocator(const BigAllocator<U>&) noexcept {}
  T* allocate(size_t n) { return static_cast<T*>(big_allocate(n * sizeof(T))); }
  void deallocate(T* p, size_t n) noexcept { big_free(p, n * sizeof(T)); }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    if constexpr (sizeof...(Args) == 0)
      ::new (static_cast<void*>(p)) U;
    else
      ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
  template <class U>
  bool operator==(const BigAllocator<U>&) const noexcept {
    return true;
  }
};

template <class T>
using BigVector = std::vector<T, BigAllocator<T>>;

}  // namespace rechub::data
