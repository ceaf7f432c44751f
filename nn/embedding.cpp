#include "rechub/nn/embedding.h"

#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "rechub/core/ops.h"
#include "rechub/core/rng.h"
#include "rechub/nn/sharded_embedding.h"

namespace rechub::nn {

EmbeddingCollection::EmbeddingCollection(std::vector<EmbeddingSpec> specs, EmbeddingOptions opts)
    : specs_(std::move(specs)), opts_(opts) {
  RECHUB_CHECK(!specs_.empty(), "EmbeddingCollection: no features given");
  RECHUB_CHECK(opts_.init_std >= 0, "EmbeddingCollection: init_std must be non-negative, got " << opts_.init_std);
  RECHUB_CHECK(is_floating(opts_.dtype), "EmbeddingCollection: dtype must be f32 or f64");
  std::map<std::string, int64_t> index;
  for (size_t i = 0; i < specs_.size(); ++i) {
    const auto& s = specs_[i];
    RECHUB_CHECK(!s.name.empty(), "EmbeddingCollection: feature " << i << " has an empty name");
    RECHUB_CHECK(index.emplace(s.name, static_cast<int64_t>(i)).second,
                 "EmbeddingCollection: feature '" << s.name << "' is defined twice");
  }
  // Resolve shared_with chains to the owning feature.
  const int64_t F = num_features();
  std::vector<int64_t> owner(F);
  for (int64_t i = 0; i < F; ++i) {
    int64_t cur = i;
    std::set<int64_t> visited{cur};
    while (!specs_[cur].shared_with.empty()) {
      auto it = index.find(specs_[cur].shared_with);
      RECHUB_CHECK(it != index.end(), "EmbeddingCollection: feature '"
                                          << specs_[cur].name << "' is shared_with '" << specs_[cur].shared_with
                                          << "', which is not a feature of this collection");
      cur = it->second;
      RECHUB_CHECK(visited.insert(cur).second,
                   "EmbeddingCollection: shared_with of feature '" << specs_[i].name << "' forms a cycle");
    }
    owner[i] = cur;
  }
  for (int64_t i = 0; i < F; ++i) {
    const auto& s = specs_[i];
    const auto& o = specs_[owner[i]];
    if (owner[i] == i) {
      RECHUB_CHECK(s.vocab_size > 0,
                   "EmbeddingCollection: feature '" << s.name << "' needs vocab_size > 0, got " << s.vocab_size);
      RECHUB_CHECK(s.embed_dim > 0,
                   "EmbeddingCollection: feature '" << s.name << "' needs embed_dim > 0, got " << s.embed_dim);
    } else {
      RECHUB_CHECK(s.embed_dim == 0 || s.embed_dim == o.embed_dim,
                   "EmbeddingCollection: feature '" << s.name << "' (embed_dim " << s.embed_dim
                                                    << ") shares the table of '" << o.name << "' (embed_dim "
                                                    << o.embed_dim << "); the widths must match");
      RECHUB_CHECK(s.vocab_size >= 0 && s.vocab_size <= o.vocab_size,
                   "EmbeddingCollection: feature '" << s.name << "' declares vocab_size " << s.vocab_size
                                                    << " but shares the table of '" << o.name << "' which has "
                                                    << o.vocab_size << " rows");
    }
  }
  // Arenas by width, in order of first appearance; owners get rows in feature order.
  std::map<int64_t, int64_t> arena_of_dim;
  std::vector<int64_t> arena_rows;
  slots_.resize(F);
  for (int64_t i = 0; i < F; ++i) {
    const auto& o = specs_[owner[i]];
    auto [it, added] = arena_of_dim.emplace(o.embed_dim, static_cast<int64_t>(arena_dims_.size()));
    if (added) {
      arena_dims_.push_back(o.embed_dim);
      arena_rows.push_back(0);
      arena_features_.emplace_back();
    }
    const int64_t a = it->second;
    arena_features_[a].push_back(i);
    if (owner[i] == i) {
      slots_[i] = {a, arena_rows[a], o.vocab_size, o.embed_dim, o.name};
      arena_rows[a] += o.vocab_size;
    }
  }
  for (int64_t i = 0; i < F; ++i)
    if (owner[i] != i) {
      slots_[i] = slots_[owner[i]];
      if (specs_[i].vocab_size > 0) slots_[i].rows = specs_[i].vocab_size;
    }
  for (int64_t i = 0; i < F; ++i) output_dim_ += slots_[i].dim;

  arena_rows_ = arena_rows;
  sharded_ = opts_.shards != nullptr && opts_.shards->size() > 1;
  if (sharded_) {
    RECHUB_CHECK(opts_.dtype == DType::f32,
                 "EmbeddingCollection: sharded arenas are f32 only, got " << dtype_name(opts_.dtype));
    init_sharded();
    return;
  }
  // N(0, init_std^2), drawn table by table in feature order.
  Generator gen(opts_.seed);
  std::vector<std::vector<double>> data(arena_dims_.size());
  for (size_t a = 0; a < arena_dims_.size(); ++a) data[a].resize(static_cast<size_t>(arena_rows[a] * arena_dims_[a]));
  for (int64_t i = 0; i < F; ++i) {
    if (owner[i] != i) continue;
    const Slot& s = slots_[i];
    double* p = data[s.arena].data() + s.offset * s.dim;
    for (int64_t k = 0; k < s.rows * s.dim; ++k) p[k] = opts_.init_std * gen.normal();
  }
  for (size_t a = 0; a < arena_dims_.size(); ++a)
    add_arena(a, from_vector(data[a], {arena_rows[a], arena_dims_[a]}).to(opts_.dtype));
}

void EmbeddingCollection::add_arena(size_t a, const Tensor& t) {
  Tensor& p = register_parameter("arena_d" + std::to_string(arena_dims_[a]), t);
  if (!opts_.sparse)  // dense mode: the optimizer sees what nn.Embedding(sparse=False) produces
    p.register_hook([](const Tensor& g) { return g.is_sparse() ? g.to_dense() : Tensor(); });
  arenas_.push_back(p);
}

// The unsharded draw (the same stream, in feature order, rounded from double as from_vector(...)
// .to(f32) does), keeping the rows this rank owns: time O(all rows), memory O(this rank's rows).
void EmbeddingCollection::init_sharded() {
  const int N = opts_.shards->size(), rank = opts_.shards->rank();
  std::vector<Tensor> shards;
  for (size_t a = 0; a < arena_dims_.size(); ++a)
    shards.push_back(empty({row_shard_rows(arena_rows_[a], rank, N), arena_dims_[a]}));
  Generator gen(opts_.seed);
  for (size_t i = 0; i < specs_.size(); ++i) {
    const Slot& s = slots_[i];
    if (s.owner != specs_[i].name) continue;
    float* p = shards[static_cast<size_t>(s.arena)].data<float>();
    for (int64_t r = 0; r < s.rows; ++r) {
      const int64_t row = s.offset + r;
      float* dst = row % N == rank ? p + (row / N) * s.dim : nullptr;
      for (int64_t k = 0; k < s.dim; ++k) {
        const double v = opts_.init_std * gen.normal();
        if (dst) dst[k] = static_cast<float>(v);
      }
    }
  }
  for (size_t a = 0; a < arena_dims_.size(); ++a) add_arena(a, shards[a]);
}

std::map<std::string, int64_t> EmbeddingCollection::row_shards(const std::string& prefix) const {
  std::map<std::string, int64_t> m;
  if (!sharded_) return m;
  for (size_t a = 0; a < arenas_.size(); ++a) m[prefix + "arena_d" + std::to_string(arena_dims_[a])] = arena_rows_[a];
  return m;
}

int64_t EmbeddingCollection::feature_index(const std::string& name) const {
  for (size_t i = 0; i < specs_.size(); ++i)
    if (specs_[i].name == name) return static_cast<int64_t>(i);
  std::ostringstream os;
  for (size_t i = 0; i < specs_.size(); ++i) os << (i ? ", " : "") << specs_[i].name;
  RECHUB_FAIL(describe() << ": no feature named '" << name << "'; features: " << os.str());
}

const EmbeddingCollection::Slot& EmbeddingCollection::slot(const std::string& feature) const {
  return slots_[feature_index(feature)];
}

Tensor EmbeddingCollection::table(const std::string& feature) const {
  RECHUB_CHECK(!sharded_, describe() << ": table('" << feature << "') is not available: the arenas are sharded over "
                                     << opts_.shards->size() << " ranks (each holds every " << opts_.shards->size()
                                     << "th row)");
  const Slot& s = slot(feature);
  return make_view(arenas_[s.arena], s.offset * s.dim, {s.rows, s.dim});
}

nlohmann::json EmbeddingCollection::layout_json() const {
  nlohmann::json j;
  j["arenas"] = nlohmann::json::array();
  for (size_t a = 0; a < arenas_.size(); ++a)
    j["arenas"].push_back(
        {{"name", "arena_d" + std::to_string(arena_dims_[a])}, {"dim", arena_dims_[a]}, {"rows", arena_rows_[a]}});
  j["features"] = nlohmann::json::array();
  for (size_t i = 0; i < specs_.size(); ++i) {
    const Slot& s = slots_[i];
    j["features"].push_back({{"name", specs_[i].name},
                             {"arena", "arena_d" + std::to_string(arena_dims_[s.arena])},
                             {"offset", s.offset},
                             {"rows", s.rows},
                             {"dim", s.dim},
                             {"owner", s.owner}});
  }
  return j;
}

namespace {
// dst[b, j] = offset of feature feats[j] + src[b, feats[j]]: one tight pass, and a second one to
// name the offender only when some id is outside its feature's vocabulary.
template <class I, class O>
void offset_ids(const I* src, int64_t B, int64_t F, const std::vector<int64_t>& feats,
                const std::vector<EmbeddingCollection::Slot>& slots, const std::vector<EmbeddingSpec>& specs,
                const std::string& who, O* dst) {
  const int64_t Fa = static_cast<int64_t>(feats.size());
  std::vector<int64_t> offset(Fa);
  std::vector<uint64_t> rows(Fa);
  for (int64_t j = 0; j < Fa; ++j) {
    offset[j] = slots[feats[j]].offset;
    rows[j] = static_cast<uint64_t>(slots[feats[j]].rows);
  }
  bool ok = true;
  bool all_columns = Fa == F;
  for (int64_t j = 0; j < Fa && all_columns; ++j) all_columns = feats[j] == j;
  if (all_columns) {
    // Every column in order (one arena): the ids are one flat array whose offsets and limits repeat
    // every F entries. Spread them over L = a multiple of F of at least 64 lanes, and keep one
    // "bad" flag per lane, so the loop vectorises with no per-row reduction or index table.
    const int64_t L = F * std::max<int64_t>(1, (64 + F - 1) / F), n = B * F;
    std::vector<int64_t> off(L);
    std::vector<uint64_t> lim(L), bad(L, 0);
    for (int64_t j = 0; j < L; ++j) {
      off[j] = offset[j % F];
      lim[j] = rows[j % F];
    }
    const int64_t* po = off.data();
    const uint64_t* pl = lim.data();
    uint64_t* pb = bad.data();
    int64_t c = 0;
    for (; c + L <= n; c += L) {
      const I* sc = src + c;
      O* dc = dst + c;
#pragma omp simd
      for (int64_t j = 0; j < L; ++j) {
        const int64_t id = static_cast<int64_t>(sc[j]);
        pb[j] |= static_cast<uint64_t>(static_cast<uint64_t>(id) >= pl[j]);
        dc[j] = static_cast<O>(po[j] + id);
      }
    }
    for (int64_t j = 0; c + j < n; ++j) {
      const int64_t id = static_cast<int64_t>(src[c + j]);
      pb[j] |= static_cast<uint64_t>(static_cast<uint64_t>(id) >= pl[j]);
      dst[c + j] = static_cast<O>(po[j] + id);
    }
    for (const uint64_t f : bad) ok &= f == 0;
  } else {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < Fa; ++j) {
        const int64_t id = static_cast<int64_t>(src[b * F + feats[j]]);
        ok &= static_cast<uint64_t>(id) < rows[j];  // (a negative id wraps to a huge one)
        dst[b * Fa + j] = static_cast<O>(offset[j] + id);
      }
  }
  if (ok) return;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < Fa; ++j) {
      const int64_t id = static_cast<int64_t>(src[b * F + feats[j]]);
      if (static_cast<uint64_t>(id) >= rows[j])
        RECHUB_FAIL(who << ": feature '" << specs[feats[j]].name << "', row " << b << ": id " << id
                        << " is outside the vocabulary of size " << rows[j]);
    }
}
}  // namespace

Tensor EmbeddingCollection::forward(const Tensor& ids) const {
  const int64_t F = num_features();
  RECHUB_CHECK(ids.defined() && (ids.dtype() == DType::i32 || ids.dtype() == DType::i64) && ids.dim() == 2,
               describe() << ": expected ids as a 2-D i32/i64 tensor [batch, " << F << "], got "
                          << (ids.defined() ? shape_str(ids.shape()) + " " + dtype_name(ids.dtype())
                                            : std::string("an undefined tensor")));
  RECHUB_CHECK(ids.size(1) == F,
               describe() << ": ids have " << ids.size(1) << " columns but " << F << " features are defined");
  // Ids are validated and offset on the host (errors name the feature and the row); on a CUDA
  // device the offset ids are then uploaded (pinned staging, stream-ordered) for the lookup.
  const Tensor host_ids = ids.device().is_cpu() ? ids : ids.to(Device::cpu());
  const int64_t B = ids.size(0);
  const Device dev = arenas_.empty() ? Device::cpu() : arenas_[0].device();
  std::vector<Tensor> per_arena;
  for (size_t a = 0; a < arenas_.size(); ++a) {
    const auto& feats = arena_features_[a];
    const int64_t Fa = static_cast<int64_t>(feats.size());
    // Arena row numbers as i32 when they fit: half the bytes for the lookup and its backward.
    const bool narrow = !sharded_ && arena_rows_[a] <= std::numeric_limits<int32_t>::max();
    Tensor ida = empty({B, Fa}, {.dtype = narrow ? DType::i32 : DType::i64});
    auto offset_into = [&](auto* dst) {
      if (host_ids.dtype() == DType::i32)
        offset_ids(host_ids.data<int32_t>(), B, F, feats, slots_, specs_, describe(), dst);
      else
        offset_ids(host_ids.data<int64_t>(), B, F, feats, slots_, specs_, describe(), dst);
    };
    if (narrow)
      offset_into(ida.data<int32_t>());
    else
      offset_into(ida.data<int64_t>());
    if (sharded_) {  // every id checked: its owner's row comes back (nn/sharded_embedding.h)
      const Tensor rows =
          sharded_lookup(opts_.shards, arenas_[a], arena_rows_[a], ida.data<int64_t>(), B * Fa, describe());
      per_arena.push_back(ops::reshape(rows, {B, Fa * arena_dims_[a]}));
      continue;
    }
    if (!dev.is_cpu()) ida = upload(ida, arenas_[a].device());  // no host wait (core/tensor.h)
    // offset_ids has checked every id: the lookup skips its own pass (on a device, a wait for the GPU).
    ops::EmbeddingCheck check{.ids_checked = true};
    for (int64_t f : feats) {
      check.feature_names.push_back(specs_[f].name);
      check.row_ranges.emplace_back(slots_[f].offset, slots_[f].offset + slots_[f].rows);
    }
    per_arena.push_back(ops::embedding_lookup(arenas_[a], ida, &check));
  }
  if (per_arena.size() == 1) return per_arena[0];
  // Several widths: put the features' columns back in spec order.
  std::vector<Tensor> cols(F);
  for (size_t a = 0; a < arenas_.size(); ++a) {
    const auto parts = ops::split(per_arena[a], arena_dims_[a], 1);
    for (size_t j = 0; j < parts.size(); ++j) cols[arena_features_[a][j]] = parts[j];
  }
  return ops::concat(cols, 1);
}

Tensor EmbeddingCollection::forward_3d(const Tensor& ids) const {
  RECHUB_CHECK(arenas_.size() == 1, describe() << ": forward_3d needs every feature to have the same embed_dim; "
                                               << arenas_.size() << " different widths are defined");
  Tensor out = forward(ids);
  return ops::reshape(out, {out.size(0), num_features(), arena_dims_[0]});
}

}  // namespace rechub::nn
