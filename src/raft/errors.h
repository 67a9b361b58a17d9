// The error kinds of the raft core. Each is an absl::Status carrying a payload
// that names the kind, so callers test for a kind with IsError() rather than
// by comparing messages. The status codes are chosen so that a caller that
// only looks at the code still gets a sensible meaning.
#pragma once

#include <string_view>

#include "absl/status/status.h"

namespace raftkv::raft {

enum class ErrorKind {
  // The requested index is below the first index: it was compacted away.
  // Code: OutOfRange.
  kCompacted,
  // The requested entries are not yet in the log (past the last index).
  // Code: OutOfRange.
  kUnavailable,
  // The snapshot being applied is older than the storage's current one.
  // Code: FailedPrecondition.
  kSnapshotOutOfDate,
  // The storage is still producing a snapshot; ask again later.
  // Code: Unavailable.
  kSnapshotTemporarilyUnavailable,
  // A proposal was refused: this node is not the leader, there is no leader,
  // or the leader cannot accept it now. Code: Unavailable.
  kProposalDropped,
  // A local-only message type was handed to Step from the network.
  // Code: InvalidArgument.
  kStepLocalMsg,
  // A message came from a node that is not in the group. Code: NotFound.
  kStepPeerNotFound,
};

// Builds the status for `kind`, with `detail` appended to its standard text.
absl::Status MakeError(ErrorKind kind, std::string_view detail = {});

// True when `status` was built by MakeError(kind, ...).
bool IsError(const absl::Status& status, ErrorKind kind);

}  // namespace raftkv::raft
