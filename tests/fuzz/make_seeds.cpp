// Writes seed corpora for the fuzz targets: small valid CSV files (with the option byte first)
// and valid cache images (plain and zstd), so the fuzzers start from inputs that parse.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "rechub/mtl/data/cache.h"
#include "rechub/mtl/data/csv.h"

using namespace rechub::data;

namespace {

void put(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: make_seeds CSV_CORPUS_DIR CACHE_CORPUS_DIR\n");
    return 2;
  }
  const std::string csv_dir = argv[1], cache_dir = argv[2];
  const std::vector<std::string> bodies = {
      "a,b,y,m\nx,1.5,0,1\ny,2,1,0\n",
      "a,b,y,m\r\n\"q,\"\"r\"\"\",3,1,1\r\n\r\n\"multi\nline\",4,0,0",
      "a,b,y,m\nx,?,0,?\n,1,1,1\n",
      "x,1,0,1\ny,-2e3,1,0\n",
  };
  int n = 0;
  for (const auto& b : bodies)
    for (uint8_t k : {0, 4, 32, 128 + 32 + 16})
      put(csv_dir + "/seed" + std::to_string(n++), std::string(1, char(k)) + b);
  Schema s{.sparse = {{.name = "a"}},
           .dense = {{.name = "b"}},
           .labels = {{.task = "y", .column = "y"}, {.task = "m", .column = "m", .positive_values = {"1"}}}};
  const ColumnTable t = read_csv_bytes(bodies[0], "seed.csv", s);
  for (bool z : {false, true}) {
    const std::string p = cache_dir + "/tmp.rhcache";
    write_cache(t, p, z);
    const std::string img = slurp(p);
    std::remove(p.c_str());
    put(cache_dir + "/seed_" + (z ? "zstd" : "plain") + "_verify", std::string(1, '\1') + img);
    put(cache_dir + "/seed_" + (z ? "zstd" : "plain"), std::string(1, '\0') + img);
  }
  return 0;
}
