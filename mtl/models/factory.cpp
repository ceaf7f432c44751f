// make_model: a model from kind() and config_json(), as a checkpoint stores them.
#include "rechub/mtl/models/aitm.h"
#include "rechub/mtl/models/esmm.h"
#include "rechub/mtl/models/mmoe.h"
#include "rechub/mtl/models/model.h"
#include "rechub/mtl/models/ple.h"
#include "rechub/mtl/models/shared_bottom.h"

namespace rechub::models {

std::vector<std::string> model_kinds() { return {"shared_bottom", "esmm", "mmoe", "omoe", "ple", "aitm"}; }

std::shared_ptr<MultiTaskModel> make_model(const std::string& kind, const nlohmann::json& config) {
  if (kind == "shared_bottom") return std::make_shared<SharedBottom>(shared_bottom_config_from_json(config));
  if (kind == "esmm") return std::make_shared<ESMM>(esmm_config_from_json(config));
  if (kind == "mmoe") return std::make_shared<MMoE>(mmoe_config_from_json(config, "mmoe"));
  if (kind == "omoe") return std::make_shared<OMoE>(mmoe_config_from_json(config, "omoe"));
  if (kind == "ple") return std::make_shared<PLE>(ple_config_from_json(config));
  if (kind == "aitm") return std::make_shared<AITM>(aitm_config_from_json(config));
  RECHUB_FAIL("make_model: unknown model kind '" << kind
                                                 << "': expected one of shared_bottom, esmm, mmoe, omoe, ple, aitm");
}

}  // namespace rechub::models
