#include "raft/errors.h"

#include <string>

#include "absl/strings/cord.h"

namespace raftkv::raft {
namespace {

constexpr std::string_view kPayloadUrl = "raftkv.raft/ErrorKind";

struct KindInfo {
  absl::StatusCode code;
  std::string_view name;
  std::string_view text;
};

KindInfo Info(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kCompacted:
      return {absl::StatusCode::kOutOfRange, "Compacted",
              "requested index is unavailable due to compaction"};
    case ErrorKind::kUnavailable:
      return {absl::StatusCode::kOutOfRange, "Unavailable",
              "requested entry at index is unavailable"};
    case ErrorKind::kSnapshotOutOfDate:
      return {absl::StatusCode::kFailedPrecondition, "SnapshotOutOfDate",
              "requested index is older than the existing snapshot"};
    case ErrorKind::kSnapshotTemporarilyUnavailable:
      return {absl::StatusCode::kUnavailable, "SnapshotTemporarilyUnavailable",
              "snapshot is temporarily unavailable"};
    case ErrorKind::kProposalDropped:
      return {absl::StatusCode::kUnavailable, "ProposalDropped",
              "raft proposal dropped"};
    case ErrorKind::kStepLocalMsg:
      return {absl::StatusCode::kInvalidArgument, "StepLocalMsg",
              "cannot step raft local message"};
    case ErrorKind::kStepPeerNotFound:
      return {absl::StatusCode::kNotFound, "StepPeerNotFound",
              "cannot step as peer not found"};
  }
  return {absl::StatusCode::kUnknown, "Unknown", "unknown raft error"};
}

}  // namespace

absl::Status MakeError(ErrorKind kind, std::string_view detail) {
  KindInfo info = Info(kind);
  std::string text(info.text);
  if (!detail.empty()) {
    text.append(": ");
    text.append(detail);
  }
  absl::Status s(info.code, text);
  s.SetPayload(absl::string_view(kPayloadUrl.data(), kPayloadUrl.size()),
               absl::Cord(std::string(info.name)));
  return s;
}

bool IsError(const absl::Status& status, ErrorKind kind) {
  if (status.ok()) return false;
  auto payload = status.GetPayload(
      absl::string_view(kPayloadUrl.data(), kPayloadUrl.size()));
  std::string_view name = Info(kind).name;
  return payload.has_value() &&
         *payload == absl::string_view(name.data(), name.size());
}

}  // namespace raftkv::raft
