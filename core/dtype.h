#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace rechub {

// Element types: f32 for compute, f64 for gradient checks on the CPU, i32/i64 for ids.
enum class DType : uint8_t { f32, f64, i32, i64 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32:
      return 4;
    case DType::f64:
      return 8;
    case DType::i32:
      return 4;
    case DType::i64:
      return 8;
  }
  return 0;
}
constexpr bool is_floating(DType t) { return t == DType::f32 || t == DType::f64; }
const char* dtype_name(DType t);
DType dtype_from_name(const std::string& name);  // "f32", "float32", ...; throws rechub::Error

template <class T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr DType value = DType::f32;
};
template <>
struct dtype_of<double> {
  static constexpr DType value = DType::f64;
};
template <>
struct dtype_of<int32_t> {
  static constexpr DType value = DType::i32;
};
template <>
struct dtype_of<int64_t> {
  static constexpr DType value = DType::i64;
};

}  // namespace rechub
