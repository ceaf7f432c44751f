// libFuzzer target: the CSV reader on any bytes. The first byte picks the options (separator,
// header, quoting, trimming, missing values, skipping, window size); the rest is the file. Any
// input must give a table or a rechub::Error: never a crash, a hang or a sanitizer report.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "rechub/core/error.h"
#include "rechub/mtl/data/csv.h"
#include "rechub/mtl/data/infer.h"

using namespace rechub::data;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t k = data[0];
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  CsvOptions o;
  static const char* seps[] = {",", ";", ", ", "\t"};
  o.separator = seps[k & 3];
  o.header = (k & 4) == 0;
  o.quote = (k & 8) ? '\0' : '"';
  o.trim = (k & 16) != 0 && o.separator[0] != '\t';
  o.missing = (k & 32) ? "?" : "";
  o.allow_missing_dense = (k & 32) != 0;
  o.sparse_missing_as_oov = (k & 64) != 0;
  o.skip_bad_rows = (k & 128) != 0;
  o.max_errors = 5;
  o.window_bytes = 1 + (k % 61);  // tiny windows: records cross window boundaries
  Schema s{.sparse = {{.name = "a"}},
           .dense = {{.name = "b"}},
           .labels = {{.task = "y", .column = "y"}, {.task = "m", .column = "m", .positive_values = {"1"}}}};
  if (!o.header) s.columns = {"a", "b", "y", "m"};
  try {
    const ColumnTable t = read_csv_bytes(body, "fuzz.csv", s, o);
    volatile uint64_t sum = 0;
    for (int c = 0; c < t.num_columns(); ++c)
      for (int64_t r = 0; r < t.rows(); ++r) {
        const uint32_t code = t.code(r, c);
        sum = sum + code;
        if (is_categorical(t.spec(c).role) && code != Dictionary::kMissing && code >= t.dictionary(c).size())
          __builtin_trap();  // a code outside its dictionary is a reader bug
      }
  } catch (const rechub::Error&) {
  }
  try {
    const RawRows raw = read_raw_rows_bytes(body, "fuzz.csv", o, 50, {"a", "b", "y", "m"});
    if (!raw.header.empty()) (void)infer_schema_from_rows(raw, "fuzz.csv", {}, o, !o.header);
  } catch (const rechub::Error&) {
  }
  return 0;
}
