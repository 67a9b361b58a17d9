// The key encoding of a store's two engines (TinyKV's layout).
//
// Every integer is 8 bytes, big-endian, so keys sort numerically. Local
// (store and region metadata) keys start with 0x01; user data keys start
// with a column-family name, so they sort after every local key.
//
// clang-format off
//   key                 bytes                         engine  value
//   prepare-bootstrap   01 01                         kv      RegionLocalState
//   store ident         01 02                         kv      StoreIdent
//   raft log entry      01 02 <region> 01 <index>     raft    raftpb.Entry
//   raft state          01 02 <region> 02             raft    RaftLocalState
//   apply state         01 02 <region> 03             kv      RaftApplyState
//   region state        01 03 <region> 01             kv      RegionLocalState
//   exactly-once entry  01 03 <region> 02 <client>    kv      last applied
//                                                             sequence (u64)
//   user data           <cf> '_' <user key>           kv      user value
// clang-format on
//
// A region's raft log entries are contiguous in key order and lie in
// [RaftLogKey(region, 0), RaftLogKey(region, 2^64-1)], so ranges of the log
// can be deleted or scanned without touching other regions. Column families
// are "default", "lock" and "write" (TinyKV's three; user keys go to
// "default").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace raftkv::storage {

inline constexpr std::string_view kCfDefault = "default";
inline constexpr std::string_view kCfLock = "lock";
inline constexpr std::string_view kCfWrite = "write";

// True for "default", "lock" and "write".
bool IsValidCf(std::string_view cf);

std::string PrepareBootstrapKey();
std::string StoreIdentKey();
std::string RaftLogKey(uint64_t region_id, uint64_t index);
std::string RaftStateKey(uint64_t region_id);
std::string ApplyStateKey(uint64_t region_id);
std::string RegionStateKey(uint64_t region_id);
// The exactly-once entry of `client_id` in `region_id`, and the bounds
// [start, end) of every such entry of the region.
std::string DedupKey(uint64_t region_id, uint64_t client_id);
std::string DedupStartKey(uint64_t region_id);
std::string DedupEndKey(uint64_t region_id);
// Encodes and decodes the 8-byte big-endian integers used in keys and in the
// exactly-once table's values. Decode returns false on a wrong size.
std::string EncodeU64(uint64_t v);
bool DecodeU64(std::string_view s, uint64_t* v);

// The first and one-past-the-last keys of a region's raft log, for range
// deletion and scans: every RaftLogKey(region_id, i) lies in [start, end).
std::string RaftLogStartKey(uint64_t region_id);
std::string RaftLogEndKey(uint64_t region_id);

// Decodes the entry index of a raft log key of `region_id`. Errors:
// InvalidArgument if `key` is not such a key.
absl::StatusOr<uint64_t> DecodeRaftLogIndex(uint64_t region_id,
                                            std::string_view key);

// The engine key of user key `key` in column family `cf`: cf + '_' + key.
// Precondition: IsValidCf(cf).
std::string DataKey(std::string_view cf, std::string_view key);

// The bounds [start, end) of the engine keys of column family `cf` whose user
// keys lie in [start_key, end_key); an empty end_key means "no upper bound"
// (the end of the column family).
std::string DataStartKey(std::string_view cf, std::string_view start_key);
std::string DataEndKey(std::string_view cf, std::string_view end_key);

// Strips the column-family prefix of a data key of `cf`. Errors:
// InvalidArgument if `engine_key` is not a data key of `cf`.
absl::StatusOr<std::string> DecodeDataKey(std::string_view cf,
                                          std::string_view engine_key);

}  // namespace raftkv::storage
