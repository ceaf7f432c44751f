// Writes the seed corpora of the fuzz targets that link the rechub library: valid safetensors
// files, checkpoints of the checkpoint target's model (with the mode byte first), a config of
// every model kind, schema files and fitted preprocessor / vocabulary files. Each is what the
// library itself writes, so the fuzzers start from inputs that load.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "rechub/core/autograd.h"
#include "rechub/core/ops.h"
#include "rechub/mtl/data/csv.h"
#include "rechub/mtl/data/preprocessor.h"
#include "rechub/mtl/models/model.h"
#include "rechub/mtl/trainer/model_builder.h"
#include "rechub/nn/checkpoint.h"
#include "rechub/nn/optim.h"
#include "tests/fuzz/checkpoint_net.h"

using namespace rechub;

namespace {
void put(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }
std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr,
                 "usage: make_model_seeds CORPUS_ROOT (writes safetensors/ checkpoint/ model_config/ schema/ "
                 "vocabulary/ under it)\n");
    return 2;
  }
  const std::string root = argv[1];
  try {
    // safetensors: every dtype, a scalar, an empty tensor, metadata.
    put(root + "/safetensors/seed_dtypes",
        nn::serialize_safetensors({{"a", from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3})},
                                   {"b", from_vector(std::vector<double>{0.5}, {})},
                                   {"c", from_vector(std::vector<int32_t>{7, 8}, {2})},
                                   {"d", from_vector(std::vector<int64_t>{}, {0, 3})}},
                                  {{"format", "pt"}}));
    put(root + "/safetensors/seed_one",
        nn::serialize_safetensors({{"w", from_vector(std::vector<float>{1.5f}, {1, 1})}}, {}));

    // checkpoints of the fuzz model, with and without optimizer state
    fuzz::CheckpointNet net;
    nn::Adam opt({{net.parameters(), 0.01}});
    backward(ops::sum(net.forward(from_vector(std::vector<int64_t>{0, 1, 2, 3}, {2, 2}))));
    opt.step();
    const std::string tmp = root + "/checkpoint/tmp.safetensors";
    nn::save_checkpoint(tmp, net, &opt, {{"kind", "fuzz"}, {"epoch", 1}});
    const std::string with_opt = slurp(tmp);
    nn::save_checkpoint(tmp, net, nullptr, {{"kind", "fuzz"}});
    const std::string without = slurp(tmp);
    std::remove(tmp.c_str());
    for (char mode : {0, 1, 2, 3}) {
      put(root + "/checkpoint/seed_opt_" + std::to_string(int(mode)), std::string(1, mode) + with_opt);
      put(root + "/checkpoint/seed_noopt_" + std::to_string(int(mode)), std::string(1, mode) + without);
    }
    put(root + "/safetensors/seed_checkpoint", with_opt);

    // model configs: every kind, small sizes (numbers <= 64, see model_config_fuzz.cpp)
    data::Schema schema{.sparse = {{.name = "u", .vocab_size = 20, .embed_dim = 4},
                                   {.name = "i", .vocab_size = 30, .embed_dim = 4},
                                   {.name = "h", .vocab_size = 0, .embed_dim = 4, .shared_with = "i"}},
                        .dense = {{.name = "x"}},
                        .labels = {{.task = "ctr", .column = "click"}, {.task = "ctcvr", .column = "buy"}}};
    const auto kinds = models::model_kinds();
    for (size_t k = 0; k < kinds.size(); ++k) {
      auto m = trainer::build_model(kinds[k], models::features_from_schema(schema), {"ctr", "ctcvr"}, {},
                                    {.embed_dim = 4,
                                     .hidden_units = {8, 4},
                                     .expert_units = {8},
                                     .num_experts = 2,
                                     .num_shared_experts = 1,
                                     .num_layers = 1,
                                     .tower_units = {4}});
      put(root + "/model_config/seed_" + kinds[k], std::string(1, static_cast<char>(k)) + m->config_json().dump());
    }

    // schema files: a schema object and a data config holding one
    const nlohmann::json sj = data::schema_to_json(schema);
    put(root + "/schema/seed_schema.json", sj.dump(1));
    put(root + "/schema/seed_config.json", nlohmann::json{{"train", "t.csv"}, {"schema", sj}}.dump());

    // a fitted preprocessor and one of its vocabularies
    const std::string csv = "click,buy,u,i,h,x\n1,0,a,p,q,0.5\n0,0,b,q,p,1.5\n1,1,a,r,,2\n0,0,c,p,p,0.25\n";
    data::Preprocessor p(schema);
    p.fit(data::read_csv_bytes(csv, "seed.csv", schema));
    put(root + "/vocabulary/seed_preprocessor", std::string(1, '\0') + p.to_json().dump());
    put(root + "/vocabulary/seed_vocabulary", std::string(1, '\1') + p.vocabulary("i").to_json().dump());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_model_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
