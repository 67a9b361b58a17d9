// The correctness checks of the simulated client workload.
//
// (a) TinyKV's checkClntAppends: a client's final scan must hold every value
//     it put, once each, in order;
// (b) linearizability of the whole client history (see check/
//     linearizability.h), with each client's keys modelled as ONE append
//     list per client: a Put of "<cli> <j>" is an Append of its value to key
//     "<cli>", a scan of the client's keys is a Get of "<cli>" returning the
//     concatenation (absent when empty), and deleting them all is a Delete.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "check/linearizability.h"

namespace raftkv::sim {

// The value client `client` puts with its `j`-th Put: "x <client> <j> y".
std::string AppendValue(int client, int j);

// TinyKV's checkClntAppends: for every k < count, AppendValue(client, k)
// occurs in `value` exactly once, after AppendValue(client, k - 1). Errors:
// FailedPrecondition naming the missing, duplicate or misplaced element.
absl::Status CheckClientAppends(int client, const std::string& value,
                                int count);

// Runs the linearizability checker on `history` with a deterministic step
// budget; `summary` (if not null) gets its explanation. Errors: Internal
// when the history is not linearizable, DeadlineExceeded when the checker
// could not decide (kUnknown counts as a failure).
absl::Status CheckLinearizable(const std::vector<check::KvOperation>& history,
                               std::string* summary);

}  // namespace raftkv::sim
