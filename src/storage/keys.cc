#include "storage/keys.h"

#include "absl/status/status.h"

namespace raftkv::storage {
namespace {

constexpr char kLocalPrefix = 0x01;
constexpr char kRegionRaftPrefix = 0x02;
constexpr char kRegionMetaPrefix = 0x03;
constexpr char kPrepareBootstrapSuffix = 0x01;
constexpr char kStoreIdentSuffix = 0x02;
constexpr char kRaftLogSuffix = 0x01;
constexpr char kRaftStateSuffix = 0x02;
constexpr char kApplyStateSuffix = 0x03;
constexpr char kRegionStateSuffix = 0x01;
constexpr char kDedupSuffix = 0x02;

void AppendU64(std::string* s, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    s->push_back(static_cast<char>((v >> shift) & 0xff));
  }
}

std::string RegionKey(char prefix, uint64_t region_id, char suffix) {
  std::string k;
  k.reserve(11);
  k.push_back(kLocalPrefix);
  k.push_back(prefix);
  AppendU64(&k, region_id);
  k.push_back(suffix);
  return k;
}

}  // namespace

bool IsValidCf(std::string_view cf) {
  return cf == kCfDefault || cf == kCfLock || cf == kCfWrite;
}

std::string PrepareBootstrapKey() {
  return {kLocalPrefix, kPrepareBootstrapSuffix};
}

std::string StoreIdentKey() { return {kLocalPrefix, kStoreIdentSuffix}; }

std::string RaftLogKey(uint64_t region_id, uint64_t index) {
  std::string k = RegionKey(kRegionRaftPrefix, region_id, kRaftLogSuffix);
  AppendU64(&k, index);
  return k;
}

std::string RaftStateKey(uint64_t region_id) {
  return RegionKey(kRegionRaftPrefix, region_id, kRaftStateSuffix);
}

std::string ApplyStateKey(uint64_t region_id) {
  return RegionKey(kRegionRaftPrefix, region_id, kApplyStateSuffix);
}

std::string RegionStateKey(uint64_t region_id) {
  return RegionKey(kRegionMetaPrefix, region_id, kRegionStateSuffix);
}

std::string DedupKey(uint64_t region_id, uint64_t client_id) {
  std::string k = RegionKey(kRegionMetaPrefix, region_id, kDedupSuffix);
  AppendU64(&k, client_id);
  return k;
}

std::string DedupStartKey(uint64_t region_id) {
  return RegionKey(kRegionMetaPrefix, region_id, kDedupSuffix);
}

std::string DedupEndKey(uint64_t region_id) {
  return RegionKey(kRegionMetaPrefix, region_id, kDedupSuffix + 1);
}

std::string EncodeU64(uint64_t v) {
  std::string s;
  AppendU64(&s, v);
  return s;
}

bool DecodeU64(std::string_view s, uint64_t* v) {
  if (s.size() != 8) return false;
  uint64_t r = 0;
  for (char c : s) r = (r << 8) | static_cast<unsigned char>(c);
  *v = r;
  return true;
}

std::string RaftLogStartKey(uint64_t region_id) {
  return RegionKey(kRegionRaftPrefix, region_id, kRaftLogSuffix);
}

std::string RaftLogEndKey(uint64_t region_id) {
  // The suffix after the log's: every log key sorts below it.
  return RegionKey(kRegionRaftPrefix, region_id, kRaftLogSuffix + 1);
}

absl::StatusOr<uint64_t> DecodeRaftLogIndex(uint64_t region_id,
                                            std::string_view key) {
  std::string prefix = RaftLogStartKey(region_id);
  if (key.size() != prefix.size() + 8 ||
      key.substr(0, prefix.size()) != prefix) {
    return absl::InvalidArgumentError("not a raft log key of the region");
  }
  uint64_t index = 0;
  for (char c : key.substr(prefix.size())) {
    index = (index << 8) | static_cast<unsigned char>(c);
  }
  return index;
}

std::string DataKey(std::string_view cf, std::string_view key) {
  std::string k;
  k.reserve(cf.size() + 1 + key.size());
  k.append(cf);
  k.push_back('_');
  k.append(key);
  return k;
}

std::string DataStartKey(std::string_view cf, std::string_view start_key) {
  return DataKey(cf, start_key);
}

std::string DataEndKey(std::string_view cf, std::string_view end_key) {
  if (!end_key.empty()) return DataKey(cf, end_key);
  // The first key after every "<cf>_..." key: "<cf>" followed by the byte
  // after '_'.
  std::string k(cf);
  k.push_back('_' + 1);
  return k;
}

absl::StatusOr<std::string> DecodeDataKey(std::string_view cf,
                                          std::string_view engine_key) {
  if (engine_key.size() <= cf.size() || engine_key.substr(0, cf.size()) != cf ||
      engine_key[cf.size()] != '_') {
    return absl::InvalidArgumentError("not a data key of the column family");
  }
  return std::string(engine_key.substr(cf.size() + 1));
}

}  // namespace raftkv::storage
