#include "sim/checkers.h"

#include "absl/strings/str_cat.h"

namespace raftkv::sim {

std::string AppendValue(int client, int j) {
  return absl::StrCat("x ", client, " ", j, " y");
}

absl::Status CheckClientAppends(int client, const std::string& value,
                                int count) {
  size_t last = std::string::npos;
  for (int k = 0; k < count; ++k) {
    std::string wanted = AppendValue(client, k);
    size_t off = value.find(wanted);
    if (off == std::string::npos) {
      return absl::FailedPreconditionError(
          absl::StrCat("client ", client, ": missing element \"", wanted,
                       "\" in scan result \"", value, "\""));
    }
    if (value.rfind(wanted) != off) {
      return absl::FailedPreconditionError(
          absl::StrCat("client ", client, ": duplicate element \"", wanted,
                       "\" in scan result \"", value, "\""));
    }
    if (last != std::string::npos && off <= last) {
      return absl::FailedPreconditionError(
          absl::StrCat("client ", client, ": wrong order for element \"",
                       wanted, "\" in scan result \"", value, "\""));
    }
    last = off;
  }
  return absl::OkStatus();
}

absl::Status CheckLinearizable(const std::vector<check::KvOperation>& history,
                               std::string* summary) {
  check::CheckOptions options;
  options.max_steps = 50'000'000;
  std::string explanation;
  check::CheckResult r = check::CheckKvHistory(history, options, &explanation);
  if (summary != nullptr) *summary = explanation;
  switch (r) {
    case check::CheckResult::kOk:
      return absl::OkStatus();
    case check::CheckResult::kIllegal:
      return absl::InternalError(
          absl::StrCat("history is not linearizable: ", explanation));
    case check::CheckResult::kUnknown:
      break;
  }
  return absl::DeadlineExceededError(
      absl::StrCat("linearizability undecided: ", explanation));
}

}  // namespace raftkv::sim
