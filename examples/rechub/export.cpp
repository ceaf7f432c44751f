// rechub export: a trained checkpoint as an ONNX model (see mtl/export/onnx_export.h for the graph's
// inputs and outputs), with the preprocessor's vocabularies and normalisers beside it.
//
//   rechub export --model runs/mmoe/model.safetensors --onnx runs/mmoe/model.onnx
#include <filesystem>
#include <iostream>

#include "examples/rechub/cli.h"
#include "rechub/core/error.h"
#if RECHUB_WITH_ONNX
#include "rechub/mtl/export/onnx_export.h"
#endif

namespace rechub::cli {

Runner add_export(CLI::App& app) {
  struct Opts {
    std::string model, onnx;
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("export", "Export a trained model to ONNX (opset 17) for ONNX Runtime, Triton, ...");
  c->add_option("--model", o->model, "Checkpoint written by `rechub train` (model.safetensors)")->required();
  c->add_option("--onnx", o->onnx,
                "Output ONNX file (written atomically); the vocabularies go to <name>.preprocessor.json beside it")
      ->required();
  return [o]() -> int {
#if RECHUB_WITH_ONNX
    namespace fs = std::filesystem;
    const fs::path out(o->onnx);
    RECHUB_CHECK(out.parent_path().empty() || fs::is_directory(out.parent_path()),
                 "--onnx '" << o->onnx << "': the directory '" << out.parent_path().string() << "' does not exist");
    const exporter::CheckpointExport r = exporter::export_checkpoint_onnx(o->model, o->onnx);
    std::cerr << "wrote " << r.onnx_path;
    if (!r.preprocessor_path.empty()) std::cerr << " and " << r.preprocessor_path;
    std::cerr << "\n";
    return 0;
#else
    (void)o;
    RECHUB_FAIL(
        "this rechub was built without the ONNX exporter: install libonnx-dev, libprotobuf-dev and "
        "protobuf-compiler (cmake/install_deps.sh) and configure again");
#endif
  };
}

}  // namespace rechub::cli
