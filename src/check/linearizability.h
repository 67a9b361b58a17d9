// A linearizability checker: the correctness oracle for the simulator and the
// server tests.
//
// A history is a list of operations, each with the client that issued it, its
// input, its output, and the times at which it was called and returned. The
// history is linearizable with respect to a sequential model when each
// operation can be given a single point in time between its call and its
// return at which it takes effect atomically, so that applying the operations
// in the order of those points to the model produces exactly the recorded
// outputs (Herlihy & Wing). Operations that do not overlap in real time must
// therefore keep their real-time order; overlapping ones may take effect in
// either order.
//
// The search is Wing & Gong's algorithm with Lowe's memoization, as in
// Porcupine: the call and return events of a partition are kept in a doubly
// linked list sorted by time; the search repeatedly picks a pending call that
// the model accepts from the current state, lifts it (and its return) out of
// the list and pushes it on a stack, and backtracks when it meets a return
// event, since that operation must have taken effect before anything called
// later. A cache of (set of linearized operations, model state) pairs prunes
// configurations already explored. The model partitions the history into
// independent sub-histories (for a key-value store, one per key), which are
// checked separately: a history is linearizable if and only if every
// partition is (linearizability is compositional).
//
// Times. Times are int64 values of any monotone clock (nanoseconds, simulator
// ticks). Ties are resolved as follows, and this is part of the contract:
//   * A return at time t and a call at time t are NOT concurrent: the return
//     happened first, so the returning operation precedes the called one.
//   * An instantaneous operation (call time == return time == t) comes after
//     every other operation that returns at t and before every other
//     operation that is called at t. Instantaneous operations at the same
//     time t are concurrent with each other.
//   * Calls at the same time are concurrent with each other, as are returns.
//
// Indeterminate operations. An operation whose outcome the client never
// learned (a request that timed out) has return time kUnknownReturnTime. It
// may take effect at any point after its call, or never; its output is
// ignored and the model is stepped with a null output, which must accept any
// output. Taking effect "never" is equivalent to taking effect after every
// other operation, which is what a return at +infinity allows.
//
// Budgets. The search is exponential in the worst case. CheckOptions bounds
// it with a step budget per partition and a wall-clock timeout; when either
// runs out the result is kUnknown, which callers must treat as a failure.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace raftkv::check {

// The return time of an indeterminate operation: one whose client never
// learned whether it took effect (for example, it timed out).
inline constexpr int64_t kUnknownReturnTime =
    std::numeric_limits<int64_t>::max();

// One operation of a history. `Input` is what the client asked for, `Output`
// what it was told. call_time <= return_time must hold unless the operation
// is indeterminate; call_time must be less than kUnknownReturnTime.
template <typename InputT, typename OutputT>
struct Operation {
  using Input = InputT;
  using Output = OutputT;

  // The client that issued the operation (for messages only: the checker
  // does not assume that a client's operations are sequential).
  int64_t client_id = 0;
  Input input{};
  // Ignored when the operation is indeterminate.
  Output output{};
  int64_t call_time = 0;
  // kUnknownReturnTime when the operation is indeterminate.
  int64_t return_time = 0;

  // True when the client never learned the outcome of the operation.
  bool indeterminate() const { return return_time == kUnknownReturnTime; }
};

// The verdict of a check.
enum class CheckResult {
  // Every partition is linearizable.
  kOk,
  // Some partition is not linearizable; the explanation says which and why.
  kIllegal,
  // The step budget or the timeout ran out, or the history is malformed
  // (an operation returns before it is called). Treat it as a failure.
  kUnknown,
};

// "ok", "illegal" or "unknown".
const char* CheckResultName(CheckResult result);

// Prints CheckResultName(result) (for test messages).
std::ostream& operator<<(std::ostream& os, CheckResult result);

// Limits on the search.
struct CheckOptions {
  // The maximum number of search steps (events visited) for each partition;
  // zero or negative means no limit. Deterministic, unlike the timeout.
  int64_t max_steps = 0;
  // The wall-clock limit for the whole check, measured from its start
  // (checked every 1024 steps). Not deterministic: prefer max_steps in
  // reproducible tests.
  absl::Duration timeout = absl::InfiniteDuration();
};

// A sequential specification that the checker can test histories against.
// A model M provides:
//   M::Input, M::Output: the operation's input and output types.
//   M::State: the model state; copyable, equality-comparable and hashable
//     with absl::Hash (states are memoized). Keep it small: it is copied at
//     every step.
//   State Init() const: the initial state of every partition.
//   std::string PartitionKey(const Input&) const: operations with different
//     keys must be independent (they never affect each other's outputs), and
//     are checked separately. A model that cannot partition returns a
//     constant.
//   std::optional<State> Step(const State&, const Input&,
//     const Output* output) const: the state after applying the input to the
//     state, or nullopt if the output is impossible from that state. A null
//     output means the output is unknown (an indeterminate operation): the
//     model must accept any output, and the next state must then be
//     determined by the state and the input alone.
//   std::string DescribeOperation(const Input&, const Output*) const, and
//   std::string DescribeState(const State&) const: human-readable text for
//     explanations (a null output is an unknown one).
template <typename M>
concept Model = std::copyable<typename M::State> &&
    std::equality_comparable<typename M::State> &&
    requires(const M& model, const typename M::State& state,
             const typename M::Input& input, const typename M::Output* output) {
  { model.Init() } -> std::convertible_to<typename M::State>;
  { model.PartitionKey(input) } -> std::convertible_to<std::string>;
  {
    model.Step(state, input, output)
    } -> std::same_as<std::optional<typename M::State>>;
  {
    model.DescribeOperation(input, output)
    } -> std::convertible_to<std::string>;
  { model.DescribeState(state) } -> std::convertible_to<std::string>;
  { absl::Hash<typename M::State>{}(state) } -> std::convertible_to<size_t>;
};

namespace internal {

// A fixed-size set of operation indices: which operations are linearized.
class Bitset {
 public:
  // An empty set over [0, size).
  explicit Bitset(size_t size) : words_((size + 63) / 64, 0) {}

  // Adds i. Precondition: i < size.
  void Set(size_t i) { words_[i / 64] |= uint64_t{1} << (i % 64); }
  // Removes i. Precondition: i < size.
  void Clear(size_t i) { words_[i / 64] &= ~(uint64_t{1} << (i % 64)); }

  // Equal when the same indices are set (sizes are equal within a search).
  friend bool operator==(const Bitset& a, const Bitset& b) {
    return a.words_ == b.words_;
  }
  // Hashes the words.
  template <typename H>
  friend H AbslHashValue(H h, const Bitset& b) {
    return H::combine_contiguous(std::move(h), b.words_.data(),
                                 b.words_.size());
  }

 private:
  std::vector<uint64_t> words_;
};

// The call and return events of one partition, in the order of the tie rules
// in the file comment, as a doubly linked list that supports lifting an
// operation (its call and return) out and putting it back (dancing links).
// Node 0 is the head sentinel.
class EntryList {
 public:
  static constexpr int32_t kNil = -1;

  // The list over operations 0..intervals.size()-1, where intervals[i] is
  // (call time, return time) of operation i. Preconditions: call <= return
  // for each, and fewer than 2^30 operations.
  explicit EntryList(const std::vector<std::pair<int64_t, int64_t>>& intervals);

  // True when every operation has been lifted out.
  bool empty() const { return nodes_[0].next == kNil; }
  // The first event still in the list, or kNil.
  int32_t first() const { return nodes_[0].next; }
  // The event after `node`, or kNil.
  int32_t next(int32_t node) const { return nodes_[node].next; }
  // True when `node` is a call event (else a return event).
  bool is_call(int32_t node) const { return nodes_[node].match != kNil; }
  // The operation of `node`.
  size_t op(int32_t node) const { return nodes_[node].op; }

  // Removes the call event `call_node` and its return event from the list.
  // Precondition: is_call(call_node), and both events are in the list.
  void Lift(int32_t call_node) {
    Node& call = nodes_[call_node];
    nodes_[call.prev].next = call.next;
    if (call.next != kNil) nodes_[call.next].prev = call.prev;
    Node& ret = nodes_[call.match];
    nodes_[ret.prev].next = ret.next;
    if (ret.next != kNil) nodes_[ret.next].prev = ret.prev;
  }
  // Undoes the last Lift (lifts must be undone in reverse order).
  void Unlift(int32_t call_node) {
    const Node& call = nodes_[call_node];
    const int32_t ret_node = call.match;
    const Node& ret = nodes_[ret_node];
    nodes_[ret.prev].next = ret_node;
    if (ret.next != kNil) nodes_[ret.next].prev = ret_node;
    nodes_[call.prev].next = call_node;
    if (call.next != kNil) nodes_[call.next].prev = call_node;
  }

 private:
  struct Node {
    int32_t prev = kNil;
    int32_t next = kNil;
    // For a call event, its return event; kNil for a return event.
    int32_t match = kNil;
    uint32_t op = 0;
  };
  std::vector<Node> nodes_;
};

// A configuration the search has explored: which operations are linearized,
// and the model state they led to.
template <typename State>
struct CacheEntry {
  Bitset linearized;
  State state;

  // Equal when both parts are.
  bool operator==(const CacheEntry& other) const {
    return linearized == other.linearized && state == other.state;
  }
  // Hashes both parts.
  template <typename H>
  friend H AbslHashValue(H h, const CacheEntry& e) {
    return H::combine(std::move(h), e.linearized, e.state);
  }
};

// The outcome of searching one partition.
struct SearchOutcome {
  CheckResult result = CheckResult::kOk;
  // Set with kUnknown when the wall-clock deadline (not the step budget) was
  // the reason.
  bool deadline_exceeded = false;
  int64_t steps = 0;
  // The longest linearizable prefix found, as operation indices of the
  // partition, in linearization order.
  std::vector<size_t> best_prefix;
  // With kIllegal: the operation that could not be linearized after
  // best_prefix (the first pending one to return).
  std::optional<size_t> blocked;
};

// The Wing & Gong / Lowe search over one partition, whose operations are
// history[indices[0]], history[indices[1]], ...
template <Model M, typename Op>
SearchOutcome SearchPartition(const M& model, const std::vector<Op>& history,
                              const std::vector<size_t>& indices,
                              int64_t max_steps, absl::Time deadline) {
  using State = typename M::State;
  struct Frame {
    int32_t call_node;
    State state_before;
  };

  std::vector<std::pair<int64_t, int64_t>> intervals;
  intervals.reserve(indices.size());
  for (size_t index : indices) {
    intervals.emplace_back(history[index].call_time,
                           history[index].return_time);
  }
  EntryList list(intervals);
  absl::flat_hash_set<CacheEntry<State>> cache;
  std::vector<Frame> stack;
  Bitset linearized(indices.size());
  State state = model.Init();
  const bool has_deadline = deadline != absl::InfiniteFuture();

  SearchOutcome outcome;
  bool blocked_recorded = false;
  int32_t node = list.first();
  while (!list.empty()) {
    ++outcome.steps;
    if (max_steps > 0 && outcome.steps > max_steps) {
      outcome.result = CheckResult::kUnknown;
      return outcome;
    }
    if (has_deadline && outcome.steps % 1024 == 1 && absl::Now() >= deadline) {
      outcome.result = CheckResult::kUnknown;
      outcome.deadline_exceeded = true;
      return outcome;
    }
    const size_t op = list.op(node);
    if (list.is_call(node)) {
      const auto& operation = history[indices[op]];
      std::optional<State> next =
          model.Step(state, operation.input,
                     operation.indeterminate() ? nullptr : &operation.output);
      if (next.has_value()) {
        linearized.Set(op);
        if (cache.insert(CacheEntry<State>{linearized, *next}).second) {
          stack.push_back(Frame{node, std::move(state)});
          state = std::move(*next);
          list.Lift(node);
          if (stack.size() > outcome.best_prefix.size()) {
            outcome.best_prefix.clear();
            for (const Frame& frame : stack) {
              outcome.best_prefix.push_back(list.op(frame.call_node));
            }
            blocked_recorded = false;
          }
          node = list.first();
          continue;
        }
        linearized.Clear(op);
      }
      node = list.next(node);
    } else {
      // A return event: this operation must take effect before anything
      // after it, and no pending call could be linearized first. Backtrack.
      if (!blocked_recorded && stack.size() == outcome.best_prefix.size()) {
        outcome.blocked = op;
        blocked_recorded = true;
      }
      if (stack.empty()) {
        outcome.result = CheckResult::kIllegal;
        return outcome;
      }
      Frame frame = std::move(stack.back());
      stack.pop_back();
      state = std::move(frame.state_before);
      linearized.Clear(list.op(frame.call_node));
      list.Unlift(frame.call_node);
      node = list.next(frame.call_node);
    }
  }
  outcome.result = CheckResult::kOk;
  return outcome;
}

// Text for one operation: "#index client c: <description> [call t, return
// t']".
std::string FormatOperationLine(size_t index, int64_t client_id,
                                const std::string& description,
                                int64_t call_time, int64_t return_time);

// Quotes a partition key for messages (C-escaped, truncated if long).
std::string QuotePartition(const std::string& key);

// Returns an empty string if the history can be checked, else a message
// naming the first operation with invalid times (or saying it is too long).
template <typename Op>
std::string ValidateTimes(const std::vector<Op>& history) {
  if (history.size() >= (size_t{1} << 30)) {
    return absl::StrCat("invalid history: ", history.size(),
                        " operations is too many");
  }
  for (size_t i = 0; i < history.size(); ++i) {
    const Op& op = history[i];
    if (op.call_time == kUnknownReturnTime) {
      return absl::StrCat("invalid history: operation #", i,
                          " has call time kUnknownReturnTime");
    }
    if (!op.indeterminate() && op.return_time < op.call_time) {
      return absl::StrCat("invalid history: operation #", i, " returns at ",
                          op.return_time, " before its call at ", op.call_time);
    }
  }
  return "";
}

// The explanation of a failed (kIllegal) or inconclusive (kUnknown) search.
template <Model M, typename Op>
std::string ExplainOutcome(const M& model, const std::vector<Op>& history,
                           const std::string& key,
                           const std::vector<size_t>& indices,
                           const SearchOutcome& outcome,
                           const CheckOptions& options) {
  auto describe = [&](size_t local) {
    const size_t index = indices[local];
    const Op& op = history[index];
    return FormatOperationLine(
        index, op.client_id,
        std::string(model.DescribeOperation(
            op.input, op.indeterminate() ? nullptr : &op.output)),
        op.call_time, op.return_time);
  };
  std::string text;
  if (outcome.result == CheckResult::kIllegal) {
    absl::StrAppend(&text, "not linearizable: partition ", QuotePartition(key),
                    " (", indices.size(), " operations)\n");
  } else if (outcome.deadline_exceeded) {
    absl::StrAppend(&text, "unknown: the timeout of ",
                    absl::FormatDuration(options.timeout),
                    " ran out while checking partition ", QuotePartition(key),
                    " (", indices.size(), " operations)\n");
  } else {
    absl::StrAppend(&text, "unknown: the budget of ", options.max_steps,
                    " steps ran out while checking partition ",
                    QuotePartition(key), " (", indices.size(),
                    " operations)\n");
  }
  constexpr size_t kMaxShown = 20;
  const size_t n = outcome.best_prefix.size();
  absl::StrAppend(&text, "longest linearizable prefix found: ", n, " of ",
                  indices.size(), " operations");
  if (n > kMaxShown)
    absl::StrAppend(&text, " (the last ", kMaxShown, " shown)");
  absl::StrAppend(&text, "\n");
  typename M::State state = model.Init();
  for (size_t i = 0; i < n; ++i) {
    const Op& op = history[indices[outcome.best_prefix[i]]];
    std::optional<typename M::State> next =
        model.Step(state, op.input, op.indeterminate() ? nullptr : &op.output);
    if (next.has_value()) state = std::move(*next);
    if (i + kMaxShown >= n) {
      absl::StrAppend(&text, "  ", i + 1, ". ",
                      describe(outcome.best_prefix[i]), "\n");
    }
  }
  absl::StrAppend(&text, "state after the prefix: ",
                  std::string(model.DescribeState(state)), "\n");
  if (outcome.result == CheckResult::kIllegal && outcome.blocked.has_value()) {
    absl::StrAppend(&text,
                    "no pending operation can take effect next; this one "
                    "could not be linearized before its return:\n  ",
                    describe(*outcome.blocked), "\n");
  }
  return text;
}

}  // namespace internal

// Checks `history` against `model`. Returns kOk when it is linearizable,
// kIllegal when it is not, and kUnknown when the budget in `options` ran out
// or the history is malformed. If `explanation` is not null it is set to a
// human-readable account: for kIllegal, the partition key, the longest
// linearizable prefix found, the state after it and the operation that could
// not be linearized; for kUnknown, why; for kOk, a one-line summary.
// Partitions are checked in key order; the first illegal one is reported.
template <Model M>
CheckResult CheckHistory(
    const M& model,
    const std::vector<Operation<typename M::Input, typename M::Output>>&
        history,
    const CheckOptions& options, std::string* explanation) {
  std::string scratch;
  if (explanation == nullptr) explanation = &scratch;
  explanation->clear();
  if (std::string invalid = internal::ValidateTimes(history);
      !invalid.empty()) {
    *explanation = std::move(invalid);
    return CheckResult::kUnknown;
  }
  std::map<std::string, std::vector<size_t>> partitions;
  for (size_t i = 0; i < history.size(); ++i) {
    partitions[std::string(model.PartitionKey(history[i].input))].push_back(i);
  }
  const absl::Time deadline = options.timeout == absl::InfiniteDuration()
                                  ? absl::InfiniteFuture()
                                  : absl::Now() + options.timeout;
  std::string first_unknown;
  int64_t total_steps = 0;
  for (const auto& [key, indices] : partitions) {
    internal::SearchOutcome outcome = internal::SearchPartition(
        model, history, indices, options.max_steps, deadline);
    total_steps += outcome.steps;
    if (outcome.result == CheckResult::kIllegal) {
      *explanation = internal::ExplainOutcome(model, history, key, indices,
                                              outcome, options);
      return CheckResult::kIllegal;
    }
    if (outcome.result == CheckResult::kUnknown) {
      if (first_unknown.empty()) {
        first_unknown = internal::ExplainOutcome(model, history, key, indices,
                                                 outcome, options);
      }
      // The timeout is global: nothing is left for the other partitions.
      if (outcome.deadline_exceeded) break;
    }
  }
  if (!first_unknown.empty()) {
    *explanation = std::move(first_unknown);
    return CheckResult::kUnknown;
  }
  *explanation = absl::StrCat("linearizable: ", history.size(),
                              " operations in ", partitions.size(),
                              " partitions, ", total_steps, " search steps");
  return CheckResult::kOk;
}

// ---------------------------------------------------------------------------
// The key-value model.

// The operations of our key-value stores.
enum class KvOpType {
  // Reads the key's value (or its absence).
  kGet,
  // Sets the key to a value.
  kPut,
  // Removes the key.
  kDelete,
  // Appends a suffix to the key's value (to "" if absent); returns the new
  // value.
  kAppend,
  // Sets the key to a new value if its value equals the expected one (or it
  // is absent, when nothing is expected); returns whether it did.
  kCompareAndSet,
};

// The input of a key-value operation.
struct KvInput {
  KvOpType type = KvOpType::kGet;
  std::string key;
  // kPut: the value written. kAppend: the suffix. kCompareAndSet: the new
  // value. Unused by kGet and kDelete.
  std::string value;
  // kCompareAndSet only: the value expected; nullopt expects the key to be
  // absent.
  std::optional<std::string> expected;
};

// The output of a key-value operation.
struct KvOutput {
  // kGet: the value read; nullopt when the key is absent. kAppend: the value
  // after the append, or nullopt when the client did not observe it (an
  // append never leaves the key absent). Unused by the others.
  std::optional<std::string> value;
  // kCompareAndSet: whether it set the new value. Unused by the others.
  bool succeeded = false;
};

// One operation on a key-value store.
using KvOperation = Operation<KvInput, KvOutput>;

// The sequential key-value store, partitioned by key. A partition's state is
// the key's value, nullopt when absent (the initial state).
class KvModel {
 public:
  using Input = KvInput;
  using Output = KvOutput;
  using State = std::optional<std::string>;

  // Every key starts absent.
  State Init() const { return std::nullopt; }
  // Operations on different keys are independent.
  std::string PartitionKey(const KvInput& input) const { return input.key; }
  // Applies `input` to `state`; nullopt if `output` (when not null) could not
  // be produced from `state`.
  std::optional<State> Step(const State& state, const KvInput& input,
                            const KvOutput* output) const;
  // For example Get("x") -> "1", Put("x", "1"), CompareAndSet("x", absent,
  // "1") -> true; "?" stands for an unknown output.
  std::string DescribeOperation(const KvInput& input,
                                const KvOutput* output) const;
  // The quoted value, or "absent".
  std::string DescribeState(const State& state) const;
};

// CheckHistory(KvModel(), history, options, explanation).
CheckResult CheckKvHistory(const std::vector<KvOperation>& history,
                           const CheckOptions& options,
                           std::string* explanation);

// Builders for KvOperation. Pass kUnknownReturnTime as return_time for an
// indeterminate operation (its output is then ignored).

// A Get that read `value` (nullopt: the key was absent).
KvOperation KvGet(int64_t client_id, std::string key,
                  std::optional<std::string> value, int64_t call_time,
                  int64_t return_time);
// A Put of `value`.
KvOperation KvPut(int64_t client_id, std::string key, std::string value,
                  int64_t call_time, int64_t return_time);
// A Delete.
KvOperation KvDelete(int64_t client_id, std::string key, int64_t call_time,
                     int64_t return_time);
// An Append of `suffix` that returned `result` (nullopt: not observed).
KvOperation KvAppend(int64_t client_id, std::string key, std::string suffix,
                     std::optional<std::string> result, int64_t call_time,
                     int64_t return_time);
// A CompareAndSet from `expected` (nullopt: absent) to `new_value` that
// reported `succeeded`.
KvOperation KvCompareAndSet(int64_t client_id, std::string key,
                            std::optional<std::string> expected,
                            std::string new_value, bool succeeded,
                            int64_t call_time, int64_t return_time);

}  // namespace raftkv::check
