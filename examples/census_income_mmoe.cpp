// The MMoE paper's census-income task group 1 (Ma et al., KDD 2018, section 5.2, Table 2):
// income > 50K and marital status = never married, both label columns removed from the inputs,
// on the real UCI rows bundled in examples/data/census-income-kdd/ (the raw file, 99,762 rows,
// read with label mapping by its data config), split 50/25/25 by a seeded fraction. Trains
// SharedBottom, OMoE, MMoE and PLE with the same budget and prints test AUCs beside the paper's.
//
//   ./census_income_mmoe [epochs=5] [data config=examples/data/census-income-kdd/census_income_kdd.json]
#include <cstdio>
#include <cstdlib>
#include <string>

#include "rechub/core/error.h"
#include "rechub/mtl/data/load.h"
#include "rechub/mtl/metrics/evaluate.h"
#include "rechub/mtl/trainer/model_builder.h"
#include "rechub/mtl/trainer/trainer.h"

using namespace rechub;

// The examples folder of the source tree (this file's directory), for the bundled data.
static std::string examples_dir() {
  const std::string f = __FILE__;
  const auto slash = f.find_last_of('/');
  return slash == std::string::npos ? "." : f.substr(0, slash);
}

int main(int argc, char** argv) {
  try {
    const int64_t epochs = argc > 1 ? std::atoll(argv[1]) : 5;
    const std::string config = argc > 2 ? argv[2] : examples_dir() + "/data/census-income-kdd/census_income_kdd.json";
    const data::DataConfig cfg = data::load_data_config(config);
    const data::LoadedData d = data::load_data(cfg.files, cfg.schema, cfg.options);
    std::printf("census-income (KDD): %lld train / %lld val / %lld test rows; tasks income, marital\n",
                static_cast<long long>(d.train->rows()), static_cast<long long>(d.val->rows()),
                static_cast<long long>(d.test->rows()));
    const auto& schema = d.preprocessor->schema();
    std::printf("%-14s %10s %10s %10s %10s\n", "model", "income", "marital", "paper inc", "paper mar");
    struct Paper {
      const char* kind;
      const char* income;
      const char* marital;
    };
    // Table 2 of the MMoE paper, group 1 (OMoE and PLE are not in that table).
    for (const Paper p : {Paper{"shared_bottom", "0.9295", "0.9921"}, Paper{"omoe", "-", "-"},
                          Paper{"mmoe", "0.9359", "0.9927"}, Paper{"ple", "-", "-"}}) {
      auto model =
          trainer::build_model(p.kind, models::features_from_schema(schema), schema.task_names(), schema.task_types(),
                               {.embed_dim = 4,
                                .hidden_units = {32},
                                .expert_units = {16},
                                .num_experts = 8,
                                .num_shared_experts = 2,
                                .num_layers = 1,
                                .tower_units = {8},
                                .seed = 7});
      trainer::MTLTrainer t(
          model, {.optimizer_params = {.lr = 2e-3}, .n_epochs = epochs, .earlystop_patience = 2, .progress = false});
      data::DataLoader train(d.train, {.batch_size = 512, .seed = 2018});
      data::DataLoader val(d.val, {.batch_size = 4096, .shuffle = false, .prefetch = 0});
      t.fit(train, &val);
      const auto r = metrics::evaluate_multi_task(*model, *d.test);
      std::printf("%-14s %10.4f %10.4f %10s %10s\n", p.kind, r.at("income").auc, r.at("marital").auc, p.income,
                  p.marital);
      std::fflush(stdout);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "census_income_mmoe: %s\n", e.what());
    return 1;
  }
}
