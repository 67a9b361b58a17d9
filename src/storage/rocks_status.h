// Internal to src/storage: the one place where RocksDB statuses become
// absl statuses (the mapping is documented in engine.h). Not installed for
// other layers, which never see RocksDB.
#pragma once

#include <rocksdb/status.h>

#include <string>

#include "absl/status/status.h"

namespace raftkv::storage::internal {

// NotFound (and the PathNotFound subcode of IO errors, which file systems
// use for a missing file) -> NotFound, Corruption -> DataLoss,
// InvalidArgument / NotSupported -> InvalidArgument, Busy / TryAgain /
// TimedOut -> Unavailable, anything else -> Internal.
inline absl::Status FromRocks(const rocksdb::Status& s) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = "rocksdb: " + s.ToString();
  if (s.IsPathNotFound()) return absl::NotFoundError(msg);
  switch (s.code()) {
    case rocksdb::Status::kNotFound:
      return absl::NotFoundError(msg);
    case rocksdb::Status::kCorruption:
      return absl::DataLossError(msg);
    case rocksdb::Status::kInvalidArgument:
    case rocksdb::Status::kNotSupported:
      return absl::InvalidArgumentError(msg);
    case rocksdb::Status::kBusy:
    case rocksdb::Status::kTryAgain:
    case rocksdb::Status::kTimedOut:
      return absl::UnavailableError(msg);
    default:
      return absl::InternalError(msg);
  }
}

}  // namespace raftkv::storage::internal
