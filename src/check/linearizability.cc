#include "check/linearizability.h"

#include <algorithm>
#include <ostream>
#include <tuple>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace raftkv::check {

const char* CheckResultName(CheckResult result) {
  switch (result) {
    case CheckResult::kOk:
      return "ok";
    case CheckResult::kIllegal:
      return "illegal";
    case CheckResult::kUnknown:
      return "unknown";
  }
  return "invalid";
}

std::ostream& operator<<(std::ostream& os, CheckResult result) {
  return os << CheckResultName(result);
}

namespace internal {

EntryList::EntryList(
    const std::vector<std::pair<int64_t, int64_t>>& intervals) {
  // The order of events at one time t (see the tie rules in the header):
  //   0: returns of operations called before t,
  //   1: calls of instantaneous operations (call == return == t),
  //   2: returns of instantaneous operations,
  //   3: calls of operations returning after t.
  // Within a phase, events are concurrent, so any fixed order will do; the
  // operation index keeps the result deterministic.
  struct Event {
    int64_t time;
    int phase;
    uint32_t op;
    bool is_call;
  };
  std::vector<Event> events;
  events.reserve(intervals.size() * 2);
  for (size_t i = 0; i < intervals.size(); ++i) {
    const auto [call, ret] = intervals[i];
    const bool instant = call == ret;
    const auto op = static_cast<uint32_t>(i);
    events.push_back(Event{call, instant ? 1 : 3, op, true});
    events.push_back(Event{ret, instant ? 2 : 0, op, false});
  }
  std::sort(events.begin(), events.end(), [](const Event& a, const Event& b) {
    return std::tie(a.time, a.phase, a.op) < std::tie(b.time, b.phase, b.op);
  });

  nodes_.resize(events.size() + 1);
  std::vector<int32_t> call_node(intervals.size(), kNil);
  std::vector<int32_t> return_node(intervals.size(), kNil);
  for (size_t i = 0; i < events.size(); ++i) {
    const auto node = static_cast<int32_t>(i + 1);
    nodes_[node].op = events[i].op;
    (events[i].is_call ? call_node : return_node)[events[i].op] = node;
  }
  for (size_t op = 0; op < intervals.size(); ++op) {
    nodes_[call_node[op]].match = return_node[op];
  }
  for (size_t node = 0; node < nodes_.size(); ++node) {
    nodes_[node].prev = static_cast<int32_t>(node) - 1;
    nodes_[node].next =
        node + 1 < nodes_.size() ? static_cast<int32_t>(node + 1) : kNil;
  }
}

std::string FormatOperationLine(size_t index, int64_t client_id,
                                const std::string& description,
                                int64_t call_time, int64_t return_time) {
  const std::string ret = return_time == kUnknownReturnTime
                              ? std::string("unknown")
                              : absl::StrCat(return_time);
  return absl::StrCat("#", index, " client ", client_id, ": ", description,
                      " [call ", call_time, ", return ", ret, "]");
}

namespace {

// A C-escaped, quoted string; a long one shows only its head and tail.
std::string Quote(const std::string& s) {
  constexpr size_t kHead = 24;
  constexpr size_t kTail = 16;
  if (s.size() <= kHead + kTail + 8) {
    return absl::StrCat("\"", absl::CHexEscape(s), "\"");
  }
  return absl::StrCat("\"", absl::CHexEscape(s.substr(0, kHead)), "\"...\"",
                      absl::CHexEscape(s.substr(s.size() - kTail)), "\" (",
                      s.size(), " bytes)");
}

std::string QuoteOptional(const std::optional<std::string>& s) {
  return s.has_value() ? Quote(*s) : std::string("absent");
}

}  // namespace

std::string QuotePartition(const std::string& key) { return Quote(key); }

}  // namespace internal

std::optional<KvModel::State> KvModel::Step(const State& state,
                                            const KvInput& input,
                                            const KvOutput* output) const {
  switch (input.type) {
    case KvOpType::kGet:
      if (output != nullptr && output->value != state) return std::nullopt;
      return state;
    case KvOpType::kPut:
      return State(input.value);
    case KvOpType::kDelete:
      return State(std::nullopt);
    case KvOpType::kAppend: {
      std::string result = state.value_or("");
      result += input.value;
      if (output != nullptr && output->value.has_value() &&
          *output->value != result) {
        return std::nullopt;
      }
      return State(std::move(result));
    }
    case KvOpType::kCompareAndSet: {
      const bool swaps = state == input.expected;
      if (output != nullptr && output->succeeded != swaps) return std::nullopt;
      return swaps ? State(input.value) : state;
    }
  }
  return std::nullopt;
}

std::string KvModel::DescribeOperation(const KvInput& input,
                                       const KvOutput* output) const {
  using internal::Quote;
  using internal::QuoteOptional;
  const std::string key = Quote(input.key);
  switch (input.type) {
    case KvOpType::kGet:
      return absl::StrCat(
          "Get(", key, ") -> ",
          output == nullptr ? std::string("?") : QuoteOptional(output->value));
    case KvOpType::kPut:
      return absl::StrCat("Put(", key, ", ", Quote(input.value), ")",
                          output == nullptr ? " -> ?" : "");
    case KvOpType::kDelete:
      return absl::StrCat("Delete(", key, ")",
                          output == nullptr ? " -> ?" : "");
    case KvOpType::kAppend: {
      std::string result = "?";
      if (output != nullptr) {
        result = output->value.has_value() ? Quote(*output->value)
                                           : std::string("(not observed)");
      }
      return absl::StrCat("Append(", key, ", ", Quote(input.value), ") -> ",
                          result);
    }
    case KvOpType::kCompareAndSet:
      return absl::StrCat(
          "CompareAndSet(", key, ", ", QuoteOptional(input.expected), ", ",
          Quote(input.value), ") -> ",
          output == nullptr ? "?" : (output->succeeded ? "true" : "false"));
  }
  return "invalid operation";
}

std::string KvModel::DescribeState(const State& state) const {
  return internal::QuoteOptional(state);
}

CheckResult CheckKvHistory(const std::vector<KvOperation>& history,
                           const CheckOptions& options,
                           std::string* explanation) {
  return CheckHistory(KvModel(), history, options, explanation);
}

KvOperation KvGet(int64_t client_id, std::string key,
                  std::optional<std::string> value, int64_t call_time,
                  int64_t return_time) {
  KvOperation op;
  op.client_id = client_id;
  op.input.type = KvOpType::kGet;
  op.input.key = std::move(key);
  op.output.value = std::move(value);
  op.call_time = call_time;
  op.return_time = return_time;
  return op;
}

KvOperation KvPut(int64_t client_id, std::string key, std::string value,
                  int64_t call_time, int64_t return_time) {
  KvOperation op;
  op.client_id = client_id;
  op.input.type = KvOpType::kPut;
  op.input.key = std::move(key);
  op.input.value = std::move(value);
  op.call_time = call_time;
  op.return_time = return_time;
  return op;
}

KvOperation KvDelete(int64_t client_id, std::string key, int64_t call_time,
                     int64_t return_time) {
  KvOperation op;
  op.client_id = client_id;
  op.input.type = KvOpType::kDelete;
  op.input.key = std::move(key);
  op.call_time = call_time;
  op.return_time = return_time;
  return op;
}

KvOperation KvAppend(int64_t client_id, std::string key, std::string suffix,
                     std::optional<std::string> result, int64_t call_time,
                     int64_t return_time) {
  KvOperation op;
  op.client_id = client_id;
  op.input.type = KvOpType::kAppend;
  op.input.key = std::move(key);
  op.input.value = std::move(suffix);
  op.output.value = std::move(result);
  op.call_time = call_time;
  op.return_time = return_time;
  return op;
}

KvOperation KvCompareAndSet(int64_t client_id, std::string key,
                            std::optional<std::string> expected,
                            std::string new_value, bool succeeded,
                            int64_t call_time, int64_t return_time) {
  KvOperation op;
  op.client_id = client_id;
  op.input.type = KvOpType::kCompareAndSet;
  op.input.key = std::move(key);
  op.input.value = std::move(new_value);
  op.input.expected = std::move(expected);
  op.output.succeeded = succeeded;
  op.call_time = call_time;
  op.return_time = return_time;
  return op;
}

}  // namespace raftkv::check
